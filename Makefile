# prge: build, install, test and demo entry points.
#   make                  release build into build/ (lib/libprge.so, include/prge.h, bin/prge, lib/pkgconfig/prge.pc)
#   make install PREFIX=  libprge.so, prge.h and prge.pc under PREFIX
#   make prged            just the daemon, build/bin/prged (against an already built build/lib)
#   make test             every suite: Swift, C ABI, C demo, Python, daemon (installs what it needs first)
#   make demo             the main job: the C demo on the reference model (installs what it needs first)
#   make size             size and dependencies of libprge.so
SWIFT   ?= swift
CC      ?= cc
CXX     ?= c++
PREFIX  ?= /usr/local
# SwiftPM's build folder; point it elsewhere to keep experiments apart from the real build.
SCRATCH ?= .build

# The soname follows the ABI version in the header, so the header is the one place to bump it.
ABI     := $(shell sed -n 's/^\#define PRGE_ABI_VERSION \([0-9]*\)$$/\1/p' Include/prge.h)
SONAME  := libprge.so.$(ABI)
RELEASE := $(SCRATCH)/release
MODEL   := models/SmolLM2-135M-Instruct.Q4_1.gguf
SWIFTPM := $(SWIFT) build -c release --scratch-path $(SCRATCH)

.PHONY: all swift prged install test test-swift test-capi test-cli test-demo test-python test-daemon test-interop setup demo size clean
.DELETE_ON_ERROR:

all: swift build/include/prge.h build/lib/pkgconfig/prge.pc
	@$(MAKE) --no-print-directory prged

# SwiftPM decides what is stale, so it always runs (a no-op build takes about a second).
# The library is linked with -static-stdlib (Package.swift): it needs no Swift toolchain at run
# time. It exports exactly the functions declared in prge.h (version script below).
swift: build/libprge.map
	$(SWIFTPM) --product prge -Xlinker -soname=$(SONAME) -Xlinker --version-script=$(abspath build/libprge.map)
	$(SWIFTPM) --product prge-cli
	@mkdir -p build/lib build/bin
	cp -f $(RELEASE)/libprge.so build/lib/$(SONAME)
	ln -sf $(SONAME) build/lib/libprge.so
	cp -f $(RELEASE)/prge-cli build/bin/prge

# Export list = the header's declarations (a line starting with a type, then `prge_name(`), so
# engine symbols and the C kernels' internal prge_* helpers stay local to the library.
# SwiftPM does not know this file is an input: removing the linked library makes it relink.
build/libprge.map: Include/prge.h
	@mkdir -p $(@D)
	{ echo '{ global:'; sed -n 's/^[a-z][^(]*[ *]\(prge_[a-z0-9_]*\)(.*/    \1;/p' $<; echo '  local: *; };'; } > $@
	rm -f $(RELEASE)/libprge.so

build/include/prge.h: Include/prge.h
	@mkdir -p $(@D)
	cp -f $< $@

build/lib/pkgconfig/prge.pc: scripts/prge.pc.in Include/prge.h
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(abspath build)|' -e 's|@VERSION@|$(ABI)|' $< > $@

# The daemon: C11 + json-c, using nothing of the library but prge.h (docs/DAEMON.md). It runs
# from build/bin or PREFIX/bin and finds libprge.so in ../lib through its rpath. Built after the
# library by `all` (it links against it); `make prged` alone relinks it against the library as
# it is, without rebuilding the Swift side.
PRGED_SRC    := $(wildcard Sources/prged/*.c)
PRGED_CFLAGS := -std=c11 -Wall -Wextra -Werror -pedantic -O2 -g -pthread -Ibuild/include \
                $(shell pkg-config --cflags json-c)
PRGED_LIBS   := -Lbuild/lib -lprge -Wl,-rpath,'$$ORIGIN/../lib' $(shell pkg-config --libs json-c) -lm

prged: build/bin/prged

build/bin/prged: $(PRGED_SRC) $(wildcard Sources/prged/*.h) build/include/prge.h build/lib/$(SONAME)
	@mkdir -p $(@D)
	$(CC) $(PRGED_CFLAGS) $(PRGED_SRC) $(PRGED_LIBS) -o $@

# The prge command stays in build/bin: unlike the library it links the Swift runtime dynamically.
install: all
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 -s build/lib/$(SONAME) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libprge.so
	install -m 644 Include/prge.h $(DESTDIR)$(PREFIX)/include/prge.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(ABI)|' scripts/prge.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/prge.pc

setup:
	@scripts/setup.sh

# Runs every suite even when one fails, then fails if any did, naming them.
test: setup
	@$(MAKE) --no-print-directory all
	@failed=""; \
	for s in swift capi cli demo python daemon; do \
	    echo "== $$s tests"; \
	    $(MAKE) --no-print-directory test-$$s || failed="$$failed $$s"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi; \
	echo "all test suites passed"

# Live llama.cpp interoperability (needs `pip install llama-cpp-python`; slow to install, so not
# part of `make test`, whose Swift suite checks the committed fixtures made with it instead).
test-interop:
	PRGE_INTEROP=1 $(SWIFT) test --scratch-path $(SCRATCH) --filter AdapterInteropTests

test-swift:
	$(SWIFT) test --scratch-path $(SCRATCH)

# The C ABI tests (test_capi.c: every function used right and wrong; test_misuse.c: hostile files,
# absurd sizes, misaligned pointers, malformed UTF-8 and JSON, races), each built from the same
# source as strict C11 and as C++17, run with nothing but
# build/lib on the library path; first checks that libprge.so needs no Swift toolchain library.
CAPI_FLAGS := -Wall -Wextra -Werror -pedantic -pthread -Ibuild/include -Lbuild/lib -lprge -lm
test-capi: all
	@if ldd build/lib/$(SONAME) | grep -i swift; then echo "libprge.so depends on Swift toolchain libraries" >&2; exit 1; fi
	@mkdir -p build/tests
	$(CC) -std=c11 Tests/capi/test_capi.c $(CAPI_FLAGS) -o build/tests/test_capi_c
	$(CXX) -x c++ -std=c++17 Tests/capi/test_capi.c $(CAPI_FLAGS) -o build/tests/test_capi_cxx
	$(CC) -std=c11 Tests/capi/test_misuse.c $(CAPI_FLAGS) -o build/tests/test_misuse_c
	$(CXX) -x c++ -std=c++17 Tests/capi/test_misuse.c $(CAPI_FLAGS) -o build/tests/test_misuse_cxx
	env LD_LIBRARY_PATH=$(abspath build/lib) build/tests/test_capi_c $(MODEL)
	env LD_LIBRARY_PATH=$(abspath build/lib) build/tests/test_capi_cxx $(MODEL)
	env LD_LIBRARY_PATH=$(abspath build/lib) build/tests/test_misuse_c $(MODEL)
	env LD_LIBRARY_PATH=$(abspath build/lib) build/tests/test_misuse_cxx $(MODEL)

# The prge command line on the reference model: outputs, JSON fields and exit statuses.
test-cli: all
	Tests/cli/test_cli.sh build/bin/prge $(MODEL)

# The Python binding, installed the way users install it (pip, which also bundles this build's
# libprge.so into the package) into build/python, and tested there on the library just built.
test-python: all
	@if ls bindings/python/tests/test_*.py >/dev/null 2>&1; then \
	    rm -rf build/python && \
	    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --no-deps --target build/python ./bindings/python && \
	    PYTHONPATH=$(abspath build/python) PRGE_LIBRARY=$(abspath build/lib/libprge.so) \
	        python3 -m pytest -q bindings/python/tests; \
	else echo "SKIP python: no tests in bindings/python/tests yet"; fi

# Suites that others add: run when they have tests, say so plainly when they do not yet.
# The daemon suite starts the real build/bin/prged on temporary sockets with the reference model.
test-daemon: all
	PRGED=$(abspath build/bin/prged) PRGE_MODEL=$(abspath $(MODEL)) python3 -m pytest -q Tests/daemon

# The main job: the C demo (examples/demo.c) personalizes the reference model on the bundled
# SST-2 examples (examples/data): dev accuracy before, P-RGE training with a progress line, dev
# accuracy after, the best adapter saved to build/demo-adapter.gguf, then a few sentences
# labelled before and after. Options go in DEMO_ARGS, e.g. make demo DEMO_ARGS="--minutes 1".
DEMO_ARGS ?=
demo: setup
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory -C examples OUT=$(abspath build/bin/prge-demo)
	build/bin/prge-demo --model $(MODEL) --out build/demo-adapter.gguf $(DEMO_ARGS)

# The demo, quickly (well under a minute): built with -Werror, 2 training steps, a 16-example dev
# set; it must exit 0, print its before/after lines and save an adapter. Also checks that
# examples/data is what scripts/make_demo_data.py makes from ../shared/data.
test-demo: all
	@mkdir -p build/tests
	@$(MAKE) --no-print-directory -C examples OUT=$(abspath build/tests/demo)
	python3 scripts/make_demo_data.py --check
	head -n 16 examples/data/dev.jsonl > build/tests/demo-dev.jsonl
	rm -f build/tests/demo-adapter.gguf
	@build/tests/demo --model $(MODEL) --steps 2 --dev build/tests/demo-dev.jsonl \
	    --out build/tests/demo-adapter.gguf > build/tests/demo.out 2>&1; rc=$$?; cat build/tests/demo.out; \
	    [ $$rc -eq 0 ] || { echo "demo exited with $$rc" >&2; exit 1; }
	grep -q '^before: dev accuracy' build/tests/demo.out
	grep -q '^after : dev accuracy' build/tests/demo.out
	test -s build/tests/demo-adapter.gguf

# As built (with debug info) and as `make install` ships it (stripped).
size: all
	@strip -o build/libprge.stripped.so build/lib/$(SONAME)
	@for f in build/lib/$(SONAME) build/libprge.stripped.so; do \
	    stat -c '%s %n' $$f | awk '{ printf "%-28s %9d bytes (%.1f MB)\n", $$2, $$1, $$1 / 1e6 }'; done
	@rm -f build/libprge.stripped.so
	@ldd build/lib/$(SONAME)

clean:
	rm -rf build
