# Thin wrapper around CMake so that README's two commands work on a fresh machine.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
GEN        := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")
FUZZ_SECONDS ?= 30

.PHONY: all deps test-deps build demo check check-fast check-asan check-fuzz check-release install clean
.PHONY: check-faults

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

# The project's own builds treat warnings as errors (a user's build does not).
check-fast: test-deps build
	@cmake -S . -B $(BUILD) -DSMTPC_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

check-asan: test-deps
	@cmake -S . -B $(ASAN_BUILD) $(GEN) -DCMAKE_BUILD_TYPE=Debug -DSMTPC_SANITIZE=ON \
	  -DSMTPC_WERROR=ON -DCMAKE_C_COMPILER=gcc >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS) -LE nosan -E '^fuzz\.'

check-fuzz: test-deps
	@cmake -S . -B $(FUZZ_BUILD) $(GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSMTPC_FUZZ=ON -DSMTPC_WERROR=ON \
	  -DCMAKE_C_COMPILER=clang -DSMTPC_FUZZ_SECONDS=$(FUZZ_SECONDS) >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@cd $(FUZZ_BUILD) && ctest --output-on-failure -R '^fuzz\.'

# Release builds as a packager makes them, with gcc and with clang (-O3,
# _FORTIFY_SOURCE=3): the build only, warnings as errors, so a warning that
# only optimisation reveals is caught here and not in a user's build.
RELEASE_BUILD ?= build-release
check-release: deps
	@for cc in gcc clang; do \
	  echo "== Release build with $$cc"; \
	  cmake -S . -B $(RELEASE_BUILD)-$$cc $(GEN) -DCMAKE_BUILD_TYPE=Release -DSMTPC_WERROR=ON \
	    -DCMAKE_C_COMPILER=$$cc >/dev/null && cmake --build $(RELEASE_BUILD)-$$cc -j $(JOBS) || exit 1; \
	done

# The whole suite: a normal build, the same suite under ASan+UBSan, and the
# fuzz targets for a bounded time. Ends with one summary line.
check: test-deps
	@scripts/check.sh

# Faults on the wire at the issue's volume (20,000 bulk messages over 8
# connections, 2,000 through a pool from 8 threads); `make check` runs the
# same test with fewer. Prints the figures docs/TESTING.md records.
check-faults: test-deps build
	@cd tests/integration && SMTPC_FAULTS_FULL=1 SMTPC_BUILD_DIR="$(abspath $(BUILD))" SMTPC_SOURCE_DIR="$(CURDIR)" \
	  PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -m pytest -q -s -p no:cacheprovider test_wire_faults.py

# make install [PREFIX=/usr] [DESTDIR=/tmp/stage]: as packagers call it.
install: build
	@DESTDIR="$(DESTDIR)" cmake --install $(BUILD) $(if $(PREFIX),--prefix "$(PREFIX)")

clean:
	@rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(RELEASE_BUILD)-gcc $(RELEASE_BUILD)-clang
