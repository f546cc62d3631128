# molora: the one entry point.  make demo | make test | make install | make clean
CC      ?= cc
CXX     ?= c++
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Wpedantic -Werror
PREFIX  ?= /usr/local
DESTDIR ?=
B        = build
BLAS     = -lopenblas
LIBS     = $(BLAS) -lm
WRAP     = -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc

# Debian packages each goal needs (checked with dpkg-query, installed with apt-get as root)
PKGS_BUILD = gcc g++ make libopenblas-dev pkg-config
PKGS_TEST  = $(PKGS_BUILD) libcmocka-dev

.PHONY: all demo test deps deps-test install uninstall clean check-compile bench-alpha

all: $(B)/quickstart

# ---- dependencies: install what is missing (root) or print the exact command ----------------
define ensure_pkgs
	@if ! command -v dpkg-query >/dev/null 2>&1; then \
	  echo "note: not a Debian system; make sure these are installed: $(1)"; exit 0; fi; \
	missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing missing Debian packages:$$missing"; \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing || exit 1; \
	  else \
	    echo "missing Debian packages:$$missing"; \
	    echo "run: sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
endef

deps:
	$(call ensure_pkgs,$(PKGS_BUILD))
deps-test:
	$(call ensure_pkgs,$(PKGS_TEST))

# ---- the main example --------------------------------------------------------------------
demo: deps
	@$(MAKE) --no-print-directory $(B)/quickstart
	./$(B)/quickstart

$(B)/quickstart: examples/quickstart.c molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. $< -o $@ $(LIBS)

# ---- tests -------------------------------------------------------------------------------
TESTS = $(B)/test_core $(B)/test_core_noblas $(B)/test_alpha $(B)/test_alpha_noblas

test: deps-test
	@$(MAKE) --no-print-directory $(TESTS) check-compile
	./$(B)/test_core
	./$(B)/test_core_noblas
	./$(B)/test_alpha
	./$(B)/test_alpha_noblas
	./$(B)/check_static
	@$(MAKE) --no-print-directory check-install

$(B)/molora_impl.o: tests/molora_impl.c molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. -c $< -o $@
$(B)/molora_impl_noblas.o: tests/molora_impl.c molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -DMOLORA_NO_BLAS -I. -c $< -o $@

$(B)/test_core: tests/test_core.c $(B)/molora_impl.o molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. tests/test_core.c $(B)/molora_impl.o -o $@ $(WRAP) -lcmocka $(LIBS)
$(B)/test_core_noblas: tests/test_core.c $(B)/molora_impl_noblas.o molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. tests/test_core.c $(B)/molora_impl_noblas.o -o $@ $(WRAP) -lcmocka -lm

$(B)/test_alpha: tests/test_alpha.c $(B)/molora_impl.o molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. tests/test_alpha.c $(B)/molora_impl.o -o $@ -lcmocka $(LIBS)
$(B)/test_alpha_noblas: tests/test_alpha.c $(B)/molora_impl_noblas.o molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -DMOLORA_NO_BLAS -I. tests/test_alpha.c $(B)/molora_impl_noblas.o -o $@ -lcmocka -lm

# the header as C99 and as C++11, and two MOLORA_STATIC units linked together
check-compile: $(B)/check_static
	$(CC) $(WARN) -std=c99 -I. -c tests/compile/check_c99.c -o $(B)/check_c99.o
	$(CC) $(WARN) -std=c99 -DMOLORA_NO_BLAS -I. -c tests/compile/check_c99.c -o $(B)/check_c99_noblas.o
	$(CXX) $(WARN) -std=c++11 -I. -c tests/compile/check_cpp11.cpp -o $(B)/check_cpp11.o
	$(CXX) $(WARN) -std=c++11 -DMOLORA_NO_BLAS -I. -c tests/compile/check_cpp11.cpp -o $(B)/check_cpp11_noblas.o
$(B)/check_static: tests/compile/static_a.c tests/compile/static_b.c molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. tests/compile/static_a.c tests/compile/static_b.c -o $@ $(LIBS)

# make install into a staging directory, then build the example against the installed files
check-install:
	@rm -rf $(B)/stage
	@$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(B)/stage PREFIX=/usr >/dev/null
	$(CC) -std=c99 $$(PKG_CONFIG_SYSROOT_DIR=$(CURDIR)/$(B)/stage PKG_CONFIG_LIBDIR=$(CURDIR)/$(B)/stage/usr/lib/pkgconfig \
	  pkg-config --cflags molora) examples/quickstart.c -o $(B)/stage/quickstart \
	  $$(PKG_CONFIG_LIBDIR=$(CURDIR)/$(B)/stage/usr/lib/pkgconfig pkg-config --libs molora)
	@echo "install: header and molora.pc usable: 1 passed, 0 failed"

# ---- AlphaLoRA spectrum benchmark (minutes; never part of make test) ----------------------
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
bench-alpha: deps
	@$(MAKE) --no-print-directory $(B)/alpha_bench
	PYTHON=$(PYTHON) ./$(B)/alpha_bench $(BENCH_ARGS)

$(B)/alpha_bench: bench/alpha_bench.c molora.h | $(B)
	$(CC) -O2 $(WARN) -std=c99 -D_POSIX_C_SOURCE=200809L -I. $< -o $@ $(LIBS)

# ---- install -----------------------------------------------------------------------------
install:
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 molora.h $(DESTDIR)$(PREFIX)/include/molora.h
	printf 'prefix=%s\nincludedir=$${prefix}/include\n\nName: molora\nDescription: mixture-of-LoRA-experts inference in one C header\nVersion: %s\nCflags: -I$${includedir}\nLibs: -lopenblas -lm\n' \
	  '$(PREFIX)' "$$(sed -n 's/^#define MOLORA_VERSION_STRING "\(.*\)"/\1/p' molora.h)" > $(DESTDIR)$(PREFIX)/lib/pkgconfig/molora.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/molora.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/molora.pc

$(B):
	mkdir -p $@

clean:
	rm -rf $(B)
