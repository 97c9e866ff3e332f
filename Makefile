# Thin wrapper around CMake so that README's two commands work on a fresh machine.
BUILD      ?= build
ASAN_BUILD ?= build-asan
ALLOC_BUILD ?= build-alloc
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
GEN        := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")
FUZZ_SECONDS ?= 30

.PHONY: all deps test-deps build demo check check-fast check-asan check-alloc check-fuzz check-release check-valgrind check-crash check-faults install clean

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

# With allocation-failure injection built in (idle unless a test asks):
# the quick allocation-failure tests (ctest label "alloc") run here.
check-asan: test-deps
	@cmake -S . -B $(ASAN_BUILD) $(GEN) -DCMAKE_BUILD_TYPE=Debug -DSMTPC_SANITIZE=ON \
	  -DSMTPC_ALLOC_FAIL=ON -DSMTPC_WERROR=ON -DCMAKE_C_COMPILER=gcc >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS) -LE nosan -E '^fuzz\.'

# Every allocation point of every scenario fails once (tests/integration/
# test_alloc.py; docs/HACKING.md), under ASan/LSan. Counts: $(ALLOC_BUILD)/alloc-counts.txt.
check-alloc: test-deps
	@cmake -S . -B $(ALLOC_BUILD) $(GEN) -DCMAKE_BUILD_TYPE=Debug -DSMTPC_SANITIZE=ON \
	  -DSMTPC_ALLOC_FAIL=ON -DSMTPC_WERROR=ON -DCMAKE_C_COMPILER=gcc >/dev/null
	@cmake --build $(ALLOC_BUILD) -j $(JOBS)
	@rm -f $(ALLOC_BUILD)/alloc-counts.txt
	@cd $(ALLOC_BUILD) && SMTPC_ALLOC_FULL=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -L alloc
	@cat $(ALLOC_BUILD)/alloc-counts.txt

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

# The CLI's integration tests with every smtpc they run under valgrind
# memcheck (slow: not part of make check; docs/TESTING.md). Fails on any
# error: exit 99 of a run, or a non-empty log in $(BUILD)/valgrind/.
VALGRIND_TESTS ?= cli|cli_queue|queue_check|cli_pickup|cli_attach|cli_config|cli_smtp|cli_report|cli_hostile|cli_rcpt_allowfails|bulk_cli
VG_LOGS = $(abspath $(BUILD))/valgrind
check-valgrind: test-deps build
	@rm -rf $(VG_LOGS) && mkdir -p $(VG_LOGS)
	@cd $(BUILD) && SMTPC_TEST_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full --log-file=$(VG_LOGS)/%p.log" \
	  ctest --output-on-failure -j $(JOBS) -R '^py\.test_($(VALGRIND_TESTS))$$'
	@n=$$(ls $(VG_LOGS) | wc -l); if find $(VG_LOGS) -name '*.log' -size +0 | grep -q .; then \
	  find $(VG_LOGS) -name '*.log' -size +0 -exec cat {} +; echo "valgrind: errors in $$n runs of smtpc"; exit 1; \
	else echo "valgrind: $$n runs of smtpc, no errors"; fi

# The long crash tests: kill -9 of queue flush (1,000 messages, 200+ kills)
# and the power-cut simulation over every write/rename/fsync point.
check-crash: test-deps build
	@rm -f $(BUILD)/crash-figures.txt
	@cd $(BUILD) && SMTPC_CRASH_FULL=1 ctest --output-on-failure -R '^py\.test_outbox_(crash|powercut)$$'
	@cat $(BUILD)/crash-figures.txt

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
	@rm -rf $(BUILD) $(ASAN_BUILD) $(ALLOC_BUILD) $(FUZZ_BUILD) $(RELEASE_BUILD)-gcc $(RELEASE_BUILD)-clang
