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

# OpenBLAS 0.3.21 (Debian 12) detects AVX-512 AMD CPUs (Zen 4/5) as Haswell and runs its AVX2
# kernels at half speed; its own OPENBLAS_CORETYPE setting picks the AVX-512 ones. The demo and the
# benchmark set it when the CPU has AVX-512 and you have not set it (molora itself never does).
OPENBLAS_ENV = $(if $(OPENBLAS_CORETYPE),,$(if $(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo y),OPENBLAS_CORETYPE=SkylakeX))

# Debian packages each goal needs (checked with dpkg-query, installed with apt-get as root)
PKGS_BUILD = gcc g++ make libopenblas-dev pkg-config
PKGS_TEST  = $(PKGS_BUILD) libcmocka-dev python3 python3-numpy clang libclang-rt-14-dev

.PHONY: all demo demo-engine test test-san deps deps-test install uninstall clean check-compile fuzz fixtures bench-alpha

all: $(B)/quickstart $(B)/molora

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
	@$(MAKE) --no-print-directory $(B)/quickstart $(B)/engine
	@$(MAKE) --no-print-directory demo-engine
	@echo "== examples/quickstart.c: one molora layer on random weights"
	$(OPENBLAS_ENV) ./$(B)/quickstart

$(B)/quickstart: examples/quickstart.c molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. $< -o $@ $(LIBS)

# ---- the end-to-end engine (issue 8): a tiny byte-level Llama with trained expert adapters -------
DEMO_MODEL = examples/demo_model
DEMO_DATA  = examples/demo_data/prose.txt examples/demo_data/c.txt examples/demo_data/python.txt
$(B)/engine: examples/engine.c molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. $< -o $@ $(LIBS)
ENGINE = $(OPENBLAS_ENV) ./$(B)/engine $(DEMO_MODEL)/base.safetensors
demo-engine: deps $(B)/engine
	@echo "== held-out text the training never saw, 4096 bytes per domain: $(DEMO_DATA)"
	@echo "   b/B = bits per byte (lower is better); the base alone and with the adapter, side by side"
	@echo
	@echo "== AdaMoLE: 4 experts (rank 8) on q/k/v/o of every layer, gate + threshold network"
	@$(ENGINE) -a $(DEMO_MODEL)/adamole -t -e $(DEMO_DATA)
	@for d in prose c python; do echo; echo "== one plain LoRA (rank 8), trained on $$d only"; \
	  $(ENGINE) -a $(DEMO_MODEL)/lora_$$d -e $(DEMO_DATA) || exit 1; done
	@echo
	@echo "== MoLE: the three LoRAs composed by molora compose, a trained softmax gate per projection"
	@echo "   experts: 0 = the prose LoRA, 1 = the C LoRA, 2 = the Python LoRA"
	@$(ENGINE) -a $(DEMO_MODEL)/mole -t -m -e $(DEMO_DATA)
	@echo
	@echo "== MoLE routing map: per byte, the expert with the largest weight summed over the 16 projections"
	@$(ENGINE) -a $(DEMO_MODEL)/mole -m -r $(DEMO_DATA)
	@echo
	@echo "== MoLA top-2: experts per layer from molora alpha on the base weights (budget 16)"
	@$(ENGINE) -a $(DEMO_MODEL)/mola -e $(DEMO_DATA)
	@echo
	@echo "== samples with the MoLE adapter: 120 bytes per domain, temperature 0.8, fixed seed, KV cache"
	@for p in "This License " "#include <" "def "; do \
	  $(ENGINE) -a $(DEMO_MODEL)/mole -g "$$p" -n 120 || exit 1; echo; done

# ---- tests -------------------------------------------------------------------------------
TESTS = $(B)/test_core $(B)/test_core_noblas $(B)/test_threads $(B)/test_files $(B)/test_files_noblas $(B)/test_bounds $(B)/molora \
        $(B)/test_catalogue $(B)/test_types $(B)/test_types_noblas $(B)/test_npy \
        $(B)/test_alpha $(B)/test_alpha_noblas $(B)/engine

test: deps-test
	@$(MAKE) --no-print-directory $(TESTS) check-compile
	./$(B)/test_core
	MOLORA_PORTABLE=1 ./$(B)/test_core
	./$(B)/test_core_noblas
	./$(B)/test_types
	MOLORA_PORTABLE=1 ./$(B)/test_types
	./$(B)/test_types_noblas
	MOLORA_TEST_SECONDS=1 ./$(B)/test_threads
	./$(B)/test_files
	./$(B)/test_files_noblas
	./$(B)/test_bounds
	sh tests/test_cli.sh $(B)/molora
	sh tests/test_convert.sh $(B)/molora
	./$(B)/test_catalogue $(B)/molora
	PYTHON=$(PYTHON) ./$(B)/test_npy
	rm -rf $(B)/npy_cases && mkdir -p $(B)/npy_cases && ./$(B)/test_npy --dump $(B)/npy_cases && $(PYTHON) tests/npy_numpy_agree.py $(B)/npy_cases
	sh tests/test_alpha_cli.sh $(B)/molora
	sh tests/test_hostile.sh $(B)/molora
	./$(B)/test_alpha
	./$(B)/test_alpha_noblas
	./$(B)/engine $(DEMO_MODEL)/base.safetensors -p $(DEMO_MODEL)/parity.safetensors logits.base
	./$(B)/engine $(DEMO_MODEL)/base.safetensors -a $(DEMO_MODEL)/adamole -p $(DEMO_MODEL)/parity.safetensors logits.adamole
	for a in lora_prose lora_c lora_python mole mola; do \
	  ./$(B)/engine $(DEMO_MODEL)/base.safetensors -a $(DEMO_MODEL)/$$a -p $(DEMO_MODEL)/parity.safetensors logits.$$a || exit 1; done
	sh tests/test_engine.sh $(B)/engine $(DEMO_MODEL)
	./$(B)/check_static
	@$(MAKE) --no-print-directory test-san
	@$(MAKE) --no-print-directory check-install
	@$(MAKE) --no-print-directory $(B)/molora_bench
	./$(B)/molora_bench --smoke

$(B)/molora_impl.o: tests/molora_impl.c molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. -c $< -o $@
$(B)/molora_impl_noblas.o: tests/molora_impl.c molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -DMOLORA_NO_BLAS -I. -c $< -o $@

$(B)/test_core: tests/test_core.c $(B)/molora_impl.o molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. tests/test_core.c $(B)/molora_impl.o -o $@ $(WRAP) -lcmocka $(LIBS)
$(B)/test_core_noblas: tests/test_core.c $(B)/molora_impl_noblas.o molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. tests/test_core.c $(B)/molora_impl_noblas.o -o $@ $(WRAP) -lcmocka -lm

$(B)/test_types: tests/test_types.c $(B)/molora_impl.o molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. tests/test_types.c $(B)/molora_impl.o -o $@ -lcmocka $(LIBS)
$(B)/test_types_noblas: tests/test_types.c $(B)/molora_impl_noblas.o molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. tests/test_types.c $(B)/molora_impl_noblas.o -o $@ -lcmocka -lm

$(B)/test_threads: tests/test_threads.c $(B)/molora_impl.o molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -D_POSIX_C_SOURCE=200809L -I. tests/test_threads.c $(B)/molora_impl.o -o $@ -lcmocka $(LIBS) -lpthread
$(B)/test_files: tests/test_files.c $(B)/molora_impl.o molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. tests/test_files.c $(B)/molora_impl.o -o $@ -lcmocka $(LIBS)
$(B)/test_files_noblas: tests/test_files.c $(B)/molora_impl_noblas.o molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. tests/test_files.c $(B)/molora_impl_noblas.o -o $@ -lcmocka -lm

# the loader's cost against the input's size (compiles the implementation itself: counts VM steps)
$(B)/test_bounds: tests/test_bounds.c molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. tests/test_bounds.c -o $@ -lcmocka -lm

$(B)/test_catalogue: tests/test_catalogue.c $(B)/molora_impl.o molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -D_POSIX_C_SOURCE=200809L -I. tests/test_catalogue.c $(B)/molora_impl.o -o $@ -lcmocka $(LIBS)

$(B)/test_npy: tests/test_npy.c tools/molora_npy.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -D_POSIX_C_SOURCE=200809L -I. tests/test_npy.c -o $@ -lcmocka

# ---- the core and file suites and the command under ASan + UBSan, part of make test ------------
# A write past a buffer or undefined behaviour then fails the run on the spot, not when the
# allocator happens to notice. (make asan / ubsan / tsan rebuild every suite, one tool each.)
SAN_DIR   = $(B)/san
SAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
SAN_BINS  = $(SAN_DIR)/test_core $(SAN_DIR)/test_core_noblas $(SAN_DIR)/test_types $(SAN_DIR)/test_files \
            $(SAN_DIR)/test_bounds $(SAN_DIR)/molora
$(SAN_DIR):
	mkdir -p $@
$(SAN_DIR)/impl.o: tests/molora_impl.c molora.h | $(SAN_DIR)
	clang $(SAN_FLAGS) -std=c99 -I. -c $< -o $@
$(SAN_DIR)/impl_noblas.o: tests/molora_impl.c molora.h | $(SAN_DIR)
	clang $(SAN_FLAGS) -std=c99 -DMOLORA_NO_BLAS -I. -c $< -o $@
$(SAN_DIR)/test_core: tests/test_core.c $(SAN_DIR)/impl.o molora.h
	clang $(SAN_FLAGS) -std=c99 -I. tests/test_core.c $(SAN_DIR)/impl.o -o $@ $(WRAP) -lcmocka $(LIBS)
$(SAN_DIR)/test_core_noblas: tests/test_core.c $(SAN_DIR)/impl_noblas.o molora.h
	clang $(SAN_FLAGS) -std=c99 -I. tests/test_core.c $(SAN_DIR)/impl_noblas.o -o $@ $(WRAP) -lcmocka -lm
$(SAN_DIR)/test_files: tests/test_files.c $(SAN_DIR)/impl.o molora.h
	clang $(SAN_FLAGS) -std=c99 -I. tests/test_files.c $(SAN_DIR)/impl.o -o $@ -lcmocka $(LIBS)
$(SAN_DIR)/test_types: tests/test_types.c $(SAN_DIR)/impl.o molora.h
	clang $(SAN_FLAGS) -std=c99 -I. tests/test_types.c $(SAN_DIR)/impl.o -o $@ -lcmocka $(LIBS)
$(SAN_DIR)/test_bounds: tests/test_bounds.c molora.h | $(SAN_DIR)
	clang $(SAN_FLAGS) -std=c99 -I. tests/test_bounds.c -o $@ -lcmocka -lm
$(SAN_DIR)/molora: tools/molora.c tools/molora_npy.h tools/molora_cli.h molora.h | $(SAN_DIR)
	clang $(SAN_FLAGS) -std=c99 -I. tools/molora.c -o $@ $(LIBS)
test-san: deps-test
	@$(MAKE) --no-print-directory $(SAN_BINS)
	./$(SAN_DIR)/test_core
	./$(SAN_DIR)/test_core_noblas
	./$(SAN_DIR)/test_types
	./$(SAN_DIR)/test_files
	./$(SAN_DIR)/test_bounds
	sh tests/test_cli.sh $(SAN_DIR)/molora

# ---- the molora command ---------------------------------------------------------------------
$(B)/molora: tools/molora.c tools/molora_npy.h tools/molora_cli.h molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. tools/molora.c -o $@ $(LIBS)

# regenerate the committed test fixtures (Python stdlib only)
fixtures:
	python3 tests/fixtures/make_fixtures.py
	python3 tests/fixtures/make_alpha_arch.py

# ---- fuzzing: libFuzzer + ASan + UBSan, each harness for FUZZ_SECONDS -----------------------------
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_FLAGS    = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
$(B)/fuzz_%: tests/fuzz/fuzz_%.c molora.h | $(B)
	$(FUZZ_CC) $(FUZZ_FLAGS) -I. $< -o $@ -lm
$(B)/fuzz_npy: tools/molora_npy.h
$(B)/fuzz_args: tools/molora_cli.h
# harness:seed corpus (tests/fuzz/corpus_*); each runs FUZZ_SECONDS, new inputs go to build/fuzz_corpus_*
FUZZERS = safetensors:safetensors config:json npy:npy args:args adapter:adapter index:index
fuzz: deps-san $(foreach f,$(FUZZERS),$(B)/fuzz_$(firstword $(subst :, ,$(f))))
	@for f in $(FUZZERS); do h=$${f%%:*}; c=$${f#*:}; mkdir -p $(B)/fuzz_corpus_$$c || exit 1; \
	  echo "./$(B)/fuzz_$$h -max_total_time=$(FUZZ_SECONDS) -max_len=8192 $(B)/fuzz_corpus_$$c tests/fuzz/corpus_$$c"; \
	  ./$(B)/fuzz_$$h -max_total_time=$(FUZZ_SECONDS) -max_len=8192 $(B)/fuzz_corpus_$$c tests/fuzz/corpus_$$c || exit 1; done
$(B)/test_alpha: tests/test_alpha.c $(B)/molora_impl.o molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. tests/test_alpha.c $(B)/molora_impl.o -o $@ -lcmocka $(LIBS)
$(B)/test_alpha_noblas: tests/test_alpha.c $(B)/molora_impl_noblas.o molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -DMOLORA_NO_BLAS -I. tests/test_alpha.c $(B)/molora_impl_noblas.o -o $@ -lcmocka -lm

# the header as C99 and as C++11, and two MOLORA_STATIC units linked together
check-compile: $(B)/check_static
	$(CC) $(WARN) -std=c99 -I. -c tests/compile/check_c99.c -o $(B)/check_c99.o
	$(CC) $(WARN) -std=c99 -DMOLORA_NO_BLAS -I. -c tests/compile/check_c99.c -o $(B)/check_c99_noblas.o
	$(CC) $(WARN) -std=c99 -DMOLORA_NO_SIMD -I. -c tests/compile/check_c99.c -o $(B)/check_c99_nosimd.o
	$(CC) $(WARN) -std=c99 -DMOLORA_NO_BLAS -DMOLORA_NO_STDIO -I. -c tests/compile/check_c99.c -o $(B)/check_c99_nostdio.o
	$(CXX) $(WARN) -std=c++11 -I. -c tests/compile/check_cpp11.cpp -o $(B)/check_cpp11.o
	$(CXX) $(WARN) -std=c++11 -DMOLORA_NO_BLAS -I. -c tests/compile/check_cpp11.cpp -o $(B)/check_cpp11_noblas.o
	$(CXX) $(WARN) -std=c++11 -DMOLORA_NO_BLAS -DMOLORA_NO_STDIO -I. -c tests/compile/check_cpp11.cpp -o $(B)/check_cpp11_nostdio.o
	$(CXX) $(WARN) -std=c++11 -fsyntax-only -x c++ tools/molora_npy.h
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

# ---- benchmarks (never part of the timed tests) -------------------------------------------
.PHONY: bench
$(B)/molora_bench: bench/molora_bench.c molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. $< -o $@ $(LIBS) -lpthread
bench: deps
	@$(MAKE) --no-print-directory $(B)/molora_bench
	$(OPENBLAS_ENV) ./$(B)/molora_bench --json $(B)/bench.json
	@if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then \
	  $(OPENBLAS_ENV) /usr/bin/python3 bench/torch_adamole.py $(B)/bench.json; \
	else echo "torch_ms: Debian's python3-torch is not installed (apt-get install -y python3-torch); column skipped"; fi

# ---- sanitizers and valgrind: the whole suite rebuilt under each tool ----------------------
# (TSan runs OpenBLAS with one thread: its worker threads are not instrumented, and their
#  spin-wait hand-over of results shows up as false races)
.PHONY: asan ubsan tsan valgrind san-run deps-san
PKGS_SAN = $(PKGS_TEST) valgrind
deps-san:
	$(call ensure_pkgs,$(PKGS_SAN))
asan: deps-san
	@$(MAKE) --no-print-directory san-run SAN=asan SANFLAGS="-fsanitize=address -fno-omit-frame-pointer"
ubsan: deps-san
	@$(MAKE) --no-print-directory san-run SAN=ubsan SANFLAGS="-fsanitize=undefined -fno-sanitize-recover=all"
tsan: deps-san
	@$(MAKE) --no-print-directory san-run SAN=tsan SANFLAGS="-fsanitize=thread" SANENV="OPENBLAS_NUM_THREADS=1"
san-run:
	@mkdir -p $(B)/$(SAN)
	clang -O1 -g $(SANFLAGS) -std=c99 -I. -c tests/molora_impl.c -o $(B)/$(SAN)/impl.o
	clang -O1 -g $(SANFLAGS) -std=c99 -DMOLORA_NO_BLAS -I. -c tests/molora_impl.c -o $(B)/$(SAN)/impl_noblas.o
	clang -O1 -g $(SANFLAGS) -std=c99 -I. tests/test_core.c $(B)/$(SAN)/impl.o -o $(B)/$(SAN)/test_core $(WRAP) -lcmocka $(LIBS)
	clang -O1 -g $(SANFLAGS) -std=c99 -I. tests/test_core.c $(B)/$(SAN)/impl_noblas.o -o $(B)/$(SAN)/test_core_noblas $(WRAP) -lcmocka -lm
	clang -O1 -g $(SANFLAGS) -std=c99 -D_POSIX_C_SOURCE=200809L -I. tests/test_threads.c $(B)/$(SAN)/impl.o -o $(B)/$(SAN)/test_threads -lcmocka $(LIBS) -lpthread
	clang -O1 -g $(SANFLAGS) -std=c99 -I. tests/test_files.c $(B)/$(SAN)/impl.o -o $(B)/$(SAN)/test_files -lcmocka $(LIBS)
	clang -O1 -g $(SANFLAGS) -std=c99 -I. tests/test_types.c $(B)/$(SAN)/impl.o -o $(B)/$(SAN)/test_types -lcmocka $(LIBS)
	clang -O1 -g $(SANFLAGS) -std=c99 -I. tests/test_types.c $(B)/$(SAN)/impl_noblas.o -o $(B)/$(SAN)/test_types_noblas -lcmocka -lm
	clang -O1 -g $(SANFLAGS) -std=c99 -I. tests/test_bounds.c -o $(B)/$(SAN)/test_bounds -lcmocka -lm
	clang -O1 -g $(SANFLAGS) -std=c99 -I. tools/molora.c -o $(B)/$(SAN)/molora $(LIBS)
	clang -O1 -g $(SANFLAGS) -std=c99 -D_POSIX_C_SOURCE=200809L -I. tests/test_catalogue.c $(B)/$(SAN)/impl.o -o $(B)/$(SAN)/test_catalogue -lcmocka $(LIBS)
	clang -O1 -g $(SANFLAGS) -std=c99 -D_POSIX_C_SOURCE=200809L -I. tests/test_npy.c -o $(B)/$(SAN)/test_npy -lcmocka
	clang -O1 -g $(SANFLAGS) -std=c99 -I. tests/test_alpha.c $(B)/$(SAN)/impl.o -o $(B)/$(SAN)/test_alpha -lcmocka $(LIBS)
	$(SANENV) ./$(B)/$(SAN)/test_core
	$(SANENV) MOLORA_PORTABLE=1 ./$(B)/$(SAN)/test_core
	$(SANENV) ./$(B)/$(SAN)/test_core_noblas
	$(SANENV) MOLORA_TEST_SECONDS=2 ./$(B)/$(SAN)/test_threads
	$(SANENV) ./$(B)/$(SAN)/test_files
	$(SANENV) ./$(B)/$(SAN)/test_types
	$(SANENV) MOLORA_PORTABLE=1 ./$(B)/$(SAN)/test_types
	$(SANENV) ./$(B)/$(SAN)/test_types_noblas
	$(SANENV) ./$(B)/$(SAN)/test_bounds
	$(SANENV) sh tests/test_cli.sh $(B)/$(SAN)/molora
	$(SANENV) ./$(B)/$(SAN)/test_catalogue $(B)/$(SAN)/molora
	$(SANENV) PYTHON=$(PYTHON) ./$(B)/$(SAN)/test_npy
	$(SANENV) sh tests/test_hostile.sh $(B)/$(SAN)/molora
	$(SANENV) ./$(B)/$(SAN)/test_alpha
	$(SANENV) sh tests/test_alpha_cli.sh $(B)/$(SAN)/molora
	clang -O1 -g $(SANFLAGS) -std=c99 -I. examples/engine.c -o $(B)/$(SAN)/engine $(LIBS)
	for a in adamole mole mola; do $(SANENV) ./$(B)/$(SAN)/engine $(DEMO_MODEL)/base.safetensors -a $(DEMO_MODEL)/$$a \
	  -p $(DEMO_MODEL)/parity.safetensors logits.$$a || exit 1; done
	$(SANENV) sh tests/test_engine.sh $(B)/$(SAN)/engine $(DEMO_MODEL)

# memcheck with the portable kernels forced (valgrind 3.19 cannot run AVX-512 code)
valgrind: deps-san
	@mkdir -p $(B)/vg
	$(CC) -O1 -g -std=c99 -I. tests/test_core.c tests/molora_impl.c -o $(B)/vg/test_core $(WRAP) -lcmocka $(LIBS)
	$(CC) -O1 -g -std=c99 -D_POSIX_C_SOURCE=200809L -I. tests/test_threads.c tests/molora_impl.c -o $(B)/vg/test_threads -lcmocka $(LIBS) -lpthread
	MOLORA_PORTABLE=1 valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect ./$(B)/vg/test_core
	MOLORA_PORTABLE=1 MOLORA_TEST_SECONDS=1 valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect ./$(B)/vg/test_threads
	$(CC) -O1 -g -std=c99 -I. tests/test_files.c tests/molora_impl.c -o $(B)/vg/test_files -lcmocka $(LIBS)
	MOLORA_PORTABLE=1 valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect ./$(B)/vg/test_files
