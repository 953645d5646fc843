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

# build/ is configured with its tests (GoogleTest, mandoc's lint of the man
# pages), so even `make` and `make demo` need the test packages on a fresh
# machine; the demo's namespace farm needs iproute2 and nftables from them too.
# The stamp is the generated Makefile, which CMake writes only when the
# configure step succeeded, so a failed configure is retried by the next make.
$(BUILD)/Makefile:
	@scripts/deps.sh test
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory build
	@scripts/run-tests.sh $(BUILD) $(CTEST_ARGS)

demo:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory build
	@scripts/demo.sh $(BUILD)

$(ASAN)/Makefile:
	@scripts/deps.sh test
	cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DCM_SANITIZE=ON

asan: $(ASAN)/Makefile
	cmake --build $(ASAN) -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		scripts/run-tests.sh $(ASAN) $(CTEST_ARGS)

$(FUZZ)/Makefile:
	@scripts/deps.sh test
	CXX=clang++ cmake -S . -B $(FUZZ) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCM_FUZZ=ON -DCM_TESTS=OFF

fuzz: $(FUZZ)/Makefile
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
