# Thin wrapper around CMake so that README's two commands work on a fresh machine.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
GEN        := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")
FUZZ_SECONDS ?= 30

.PHONY: all deps test-deps build demo check check-fast check-asan check-fuzz install clean

all: build

deps:
	@scripts/deps.sh build

test-deps:
	@scripts/deps.sh test

$(BUILD)/CMakeCache.txt:
	@cmake -S . -B $(BUILD) $(GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

build: deps $(BUILD)/CMakeCache.txt
	@cmake --build $(BUILD) -j $(JOBS)

# Sends a demo message through the embedded default: with no server
# configured it lands in the pickup directory ./outbox.
demo: build
	@./$(BUILD)/smtpc send --from demo@example.org --to you@example.org \
	  --subject "Hello from smtpc" --text "This message was written by 'make demo'."

check-fast: test-deps build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

check-asan: test-deps
	@cmake -S . -B $(ASAN_BUILD) $(GEN) -DCMAKE_BUILD_TYPE=Debug -DSMTPC_SANITIZE=ON \
	  -DCMAKE_C_COMPILER=gcc >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS) -LE nosan -E '^fuzz\.'

check-fuzz: test-deps
	@cmake -S . -B $(FUZZ_BUILD) $(GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSMTPC_FUZZ=ON \
	  -DCMAKE_C_COMPILER=clang -DSMTPC_FUZZ_SECONDS=$(FUZZ_SECONDS) >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@cd $(FUZZ_BUILD) && ctest --output-on-failure -R '^fuzz\.'

# The whole suite: a normal build, the same suite under ASan+UBSan, and the
# fuzz targets for a bounded time. Ends with one summary line.
check: test-deps
	@scripts/check.sh

install: build
	@cmake --install $(BUILD)

clean:
	@rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
