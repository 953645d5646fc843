# The front door. CMake does the work; these targets are the ones to remember.
#
#   make            build everything (build/)
#   make test       install dependencies, build, run every test suite
#   make demo       install dependencies, build, publish the sample site to a farm of 12 servers
#   make asan       every test under AddressSanitizer + UBSan (build-asan/)
#   make fuzz       run each libFuzzer target for FUZZ_SECONDS (build-fuzz/)
#   make bench      the benchmarks under bench/ (prints ratios against the peers)
#   make install    PREFIX=/usr/local DESTDIR=  programs and man pages
#   make deps       install the Debian packages (as root) or list what is missing

PREFIX ?= /usr/local
DESTDIR ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 60
CTEST_ARGS ?=

BUILD := build
ASAN := build-asan
FUZZ := build-fuzz

.PHONY: all build deps test demo asan fuzz bench install clean format

all: build

deps:
	@scripts/deps.sh all

$(BUILD)/CMakeCache.txt:
	@scripts/deps.sh build
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory build
	@scripts/run-tests.sh $(BUILD) $(CTEST_ARGS)

demo:
	@scripts/deps.sh build
	@$(MAKE) --no-print-directory build
	@scripts/demo.sh $(BUILD)

$(ASAN)/CMakeCache.txt:
	@scripts/deps.sh test
	cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DCM_SANITIZE=ON

asan: $(ASAN)/CMakeCache.txt
	cmake --build $(ASAN) -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		scripts/run-tests.sh $(ASAN) $(CTEST_ARGS)

$(FUZZ)/CMakeCache.txt:
	@scripts/deps.sh test
	CXX=clang++ cmake -S . -B $(FUZZ) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCM_FUZZ=ON -DCM_TESTS=OFF

fuzz: $(FUZZ)/CMakeCache.txt
	cmake --build $(FUZZ) -j $(JOBS)
	@scripts/run-fuzz.sh $(FUZZ) $(FUZZ_SECONDS)

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory build
	@for b in bench/*.sh; do echo "== $$b"; CM_BIN=$(CURDIR)/$(BUILD) $$b || exit 1; done

install: build
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ)
