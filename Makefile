# prge: build, install, test and demo entry points.
#   make                  release build into build/ (lib/libprge.so, include/prge.h, bin/prge, lib/pkgconfig/prge.pc)
#   make install PREFIX=  libprge.so, prge.h and prge.pc under PREFIX
#   make test             every suite: Swift, C ABI, Python, daemon (installs what it needs first)
#   make demo             the main job on the reference model (installs what it needs first)
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

.PHONY: all swift install test test-swift test-capi test-python test-daemon setup demo size clean
.DELETE_ON_ERROR:

all: swift build/include/prge.h build/lib/pkgconfig/prge.pc

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
	for s in swift capi python daemon; do \
	    echo "== $$s tests"; \
	    $(MAKE) --no-print-directory test-$$s || failed="$$failed $$s"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi; \
	echo "all test suites passed"

test-swift:
	$(SWIFT) test --scratch-path $(SCRATCH)

# The C ABI test, built from the same source as strict C11 and as C++17, run with nothing but
# build/lib on the library path; first checks that libprge.so needs no Swift toolchain library.
CAPI_FLAGS := -Wall -Wextra -Werror -pedantic -pthread -Ibuild/include -Lbuild/lib -lprge
test-capi: all
	@if ldd build/lib/$(SONAME) | grep -i swift; then echo "libprge.so depends on Swift toolchain libraries" >&2; exit 1; fi
	@mkdir -p build/tests
	$(CC) -std=c11 Tests/capi/test_capi.c $(CAPI_FLAGS) -o build/tests/test_capi_c
	$(CXX) -x c++ -std=c++17 Tests/capi/test_capi.c $(CAPI_FLAGS) -o build/tests/test_capi_cxx
	env LD_LIBRARY_PATH=$(abspath build/lib) build/tests/test_capi_c $(MODEL)
	env LD_LIBRARY_PATH=$(abspath build/lib) build/tests/test_capi_cxx $(MODEL)

# Suites that others add: run when they have tests, say so plainly when they do not yet.
test-python: all
	@if ls bindings/python/tests/test_*.py >/dev/null 2>&1; then \
	    PRGE_LIBRARY=$(abspath build/lib/libprge.so) python3 -m pytest -q bindings/python/tests; \
	else echo "SKIP python: no tests in bindings/python/tests yet"; fi

test-daemon: all
	@if ls Tests/daemon/test_*.py >/dev/null 2>&1; then \
	    PRGE_LIBRARY=$(abspath build/lib/libprge.so) python3 -m pytest -q Tests/daemon; \
	else echo "SKIP daemon: no tests in Tests/daemon yet"; fi

# The main job. Until the C demo in examples/ exists: generation and perplexity with the CLI.
demo: setup
	@$(MAKE) --no-print-directory all
	build/bin/prge generate --model $(MODEL) -n 24 "The capital of France is"
	build/bin/prge perplexity --model $(MODEL) --ctx 128 scripts/demo.txt

# As built (with debug info) and as `make install` ships it (stripped).
size: all
	@strip -o build/libprge.stripped.so build/lib/$(SONAME)
	@for f in build/lib/$(SONAME) build/libprge.stripped.so; do \
	    stat -c '%s %n' $$f | awk '{ printf "%-28s %9d bytes (%.1f MB)\n", $$2, $$1, $$1 / 1e6 }'; done
	@rm -f build/libprge.stripped.so
	@ldd build/lib/$(SONAME)

clean:
	rm -rf build
