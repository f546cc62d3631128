# molora: the one entry point.  make demo | make test | make install | make clean   (make help lists every target)
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
POSIX    = -D_POSIX_C_SOURCE=200809L
JOBS    ?= 2
PYTHON  ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)

# OpenBLAS 0.3.21 (Debian 12) detected an earlier session's AMD Zen 4 VM as Haswell and ran its
# AVX2 kernels at half speed (a later one, which shows AVX512_BF16, as Cooperlake); its own
# OPENBLAS_CORETYPE setting picks the AVX-512 ones. The demo sets
# it when the CPU has AVX-512 and you have not set it (molora itself never does); the benchmark
# sets it only when OpenBLAS misdetects the core (see AVX512_CORES below).
HAS_AVX512   = $(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo y)
OPENBLAS_ENV = $(if $(OPENBLAS_CORETYPE),,$(if $(HAS_AVX512),OPENBLAS_CORETYPE=SkylakeX))

# Debian packages each goal needs (checked with dpkg-query, installed with apt-get as root)
PKGS_BUILD = gcc g++ make libopenblas-dev pkg-config
PKGS_TEST  = $(PKGS_BUILD) libcmocka-dev python3 python3-numpy clang libclang-rt-14-dev
PKGS_SAN   = $(PKGS_TEST) valgrind

.PHONY: all help deps deps-test deps-san demo demo-engine demo-mixtures test test-san asan ubsan tsan valgrind fuzz \
        bench bench-alpha fixtures install uninstall check-install check-compile clean

all: $(B)/quickstart $(B)/molora

help:
	@echo "make                 build build/quickstart and build/molora (the command)"
	@echo "make demo            install what is missing, run the engine demo, then the quickstart"
	@echo "make demo-engine     the engine demo alone: the trained tiny Llama with its adapters"
	@echo "make demo-mixtures   Arrow and X-LoRA against every single LoRA on the mixed held-out text"
	@echo "make test            install what is missing, build and run every test (TEST_RUNS), test-san too"
	@echo "make test-san        the quick subset of TEST_RUNS under ASan+UBSan (part of make test)"
	@echo "make asan            every test run under ASan+UBSan (build/san)"
	@echo "make ubsan           the same runs and build as make asan (one ASan+UBSan build serves both)"
	@echo "make tsan            every test run under TSan (build/tsan), OpenBLAS at one thread"
	@echo "make valgrind        the C suites under memcheck, portable kernels (build/vg)"
	@echo "make fuzz            each libFuzzer harness for FUZZ_SECONDS (default 60)"
	@echo "make bench           the benchmark (bench/molora_bench.c) into build/bench.json; minutes"
	@echo "make bench-alpha     the AlphaLoRA spectrum benchmark; minutes"
	@echo "make fixtures        regenerate the committed test fixtures (Python stdlib only)"
	@echo "make install         install molora.h and molora.pc (PREFIX=/usr/local, DESTDIR=)"
	@echo "make uninstall       remove what make install installed"
	@echo "make check-install   install into build/stage and build the quickstart against it"
	@echo "make check-compile   the header as C99 and C++11 under every configuration macro"
	@echo "make deps            install the Debian packages the build needs (deps-test, deps-san: tests)"
	@echo "make clean           remove build/"
	@echo "make help            this list"

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
deps-san:
	$(call ensure_pkgs,$(PKGS_SAN))

# ---- the main example --------------------------------------------------------------------
demo: deps
	@$(MAKE) --no-print-directory $(B)/quickstart $(B)/engine
	@$(MAKE) --no-print-directory demo-engine
	@echo "== examples/quickstart.c: one molora layer on random weights, checked against the formula"
	./$(B)/quickstart

$(B)/quickstart: examples/quickstart.c molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. $< -o $@ $(LIBS)

# ---- the end-to-end engine (issue 8): a tiny byte-level Llama with trained expert adapters -----
DEMO_MODEL = examples/demo_model
DEMO_DATA  = examples/demo_data/prose.txt examples/demo_data/c.txt examples/demo_data/python.txt
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
	@$(MAKE) --no-print-directory demo-mixtures
	@echo
	@echo "== samples with the MoLE adapter: 120 bytes per domain, temperature 0.8, fixed seed, KV cache"
	@for p in "This License " "#include <" "def "; do \
	  $(ENGINE) -a $(DEMO_MODEL)/mole -g "$$p" -n 120 || exit 1; echo; done

# ---- issue 15: PEFT's mixtures of the three domain LoRAs on text that mixes the domains ----------
DEMO_MIXED = examples/demo_data/mixed_select.txt examples/demo_data/mixed_report.txt
DEMO_MIX_ROWS = lora_prose lora_c lora_python mole arrow adamole mole_output
# one row: the "+experts" column of engine -e, per file (the base column with no adapter)
demo_row = awk -v name="$(1)" 'BEGIN { printf "  %-14s", name } $$1 ~ /\.txt$$/ { printf " %12.4f", $$$(2) } \
             END { printf "\n" }'
demo-mixtures: deps $(B)/engine
	@echo "== mixtures of the three LoRAs on two held-out texts that mix the domains (prose, then C, then"
	@echo "   Python, 1365 bytes each): every setting was chosen on mixed_select.txt; mixed_report.txt played"
	@echo "   no part in any choice. Arrow: $(DEMO_MODEL)/arrow, composed with no training; X-LoRA:"
	@echo "   $(DEMO_MODEL)/xlora, PEFT's layout, both passes (the scaling pass is the base model)"
	@printf "  %-14s" "b/B (C engine)"; for f in $(DEMO_DATA) $(DEMO_MIXED); do \
	  printf " %12s" $$(basename $$f .txt); done; echo
	@$(ENGINE) -e $(DEMO_DATA) $(DEMO_MIXED) | $(call demo_row,base,3)
	@for a in $(DEMO_MIX_ROWS); do \
	  $(ENGINE) -a $(DEMO_MODEL)/$$a -e $(DEMO_DATA) $(DEMO_MIXED) | $(call demo_row,$$a,5) || exit 1; done
	@$(ENGINE) -x $(DEMO_MODEL)/xlora -e $(DEMO_DATA) $(DEMO_MIXED) | $(call demo_row,xlora,5)
	@$(ENGINE) -x $(DEMO_MODEL)/xlora_layerwise -e $(DEMO_DATA) $(DEMO_MIXED) | $(call demo_row,xlora_lw,5)
	@echo "   the demo's mixture is xlora; mole_output (the MoLE paper's output gate) and xlora_lw (xlora_layerwise,"
	@echo "   PEFT's layer-wise scalings) are attempts at the pure-domain goal that miss it (train_demo.py --mix-try)"
	@echo
	@echo "== X-LoRA routing map of mixed_report.txt, every byte: the expert with the largest weight summed"
	@echo "   over the 16 projections (0 = prose, 1 = C, 2 = Python), in the -e windows of 128 bytes"
	@$(ENGINE) -x $(DEMO_MODEL)/xlora -R examples/demo_data/mixed_report.txt
	@echo
	@echo "== X-LoRA generation: both passes per byte, two KV caches, against the base alone"
	@$(ENGINE) -x $(DEMO_MODEL)/xlora -g "/* Copy " -n 120

# ---- the suites' builds: the same pattern rules in every build directory ------------------------
# Each build directory has its compiler and flags: $(B) the plain build, $(B)/san ASan+UBSan (make
# test-san, asan and ubsan share it), $(B)/tsan TSan, $(B)/vg for valgrind (no sanitizer).
TEST_H   = molora.h $(wildcard tests/*.h)
CLI_H    = molora.h tools/molora_npy.h tools/molora_cli.h
SAN_DIRS = $(B)/san $(B)/tsan $(B)/vg
CC_$(B)        = $(CC)
FLAGS_$(B)     = $(CFLAGS) $(WARN) -std=c99 -I.
CC_$(B)/san    = clang
# the SIMD kernels are built without UBSan's checks there (MOLORA_KERNELS_NO_UBSAN: ASan still checks
# their every load and store; the portable kernels and all other code keep UBSan): instrumenting
# their unrolled intrinsics took the library's build from 1 to 4 minutes
FLAGS_$(B)/san = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -std=c99 -I. \
                 -DMOLORA_KERNELS_NO_UBSAN
CC_$(B)/tsan   = clang
FLAGS_$(B)/tsan = -O1 -g -fsanitize=thread -std=c99 -I.
CC_$(B)/vg     = $(CC)
FLAGS_$(B)/vg  = -O1 -g -std=c99 -I.
# what single suites add: test_core replaces malloc to count allocations; two need POSIX and threads
SUITE_FLAGS_threads   = $(POSIX)
SUITE_FLAGS_catalogue = $(POSIX)
SUITE_LINK_core       = $(WRAP)
SUITE_LINK_xlora      = $(WRAP)
SUITE_FLAGS_xlora     = $(POSIX)
SUITE_LINK_threads    = -lpthread
SUITE_LINK_bf16       = $(WRAP)

# build_rules DIR: the library compiled once (with and without BLAS), each tests/test_X.c linked to
# it as DIR/test_X and DIR/test_X_noblas, the command and the engine
define build_rules
$(1):
	mkdir -p $$@
$(1)/impl.o: tests/molora_impl.c molora.h | $(1)
	$$(CC_$(1)) $$(FLAGS_$(1)) -c $$< -o $$@
$(1)/impl_noblas.o: tests/molora_impl.c molora.h | $(1)
	$$(CC_$(1)) $$(FLAGS_$(1)) -DMOLORA_NO_BLAS -c $$< -o $$@
$(1)/test_%: tests/test_%.c $(1)/impl.o $(TEST_H)
	$$(CC_$(1)) $$(FLAGS_$(1)) $$(SUITE_FLAGS_$$*) $$< $(1)/impl.o -o $$@ $$(SUITE_LINK_$$*) -lcmocka $(LIBS)
$(1)/test_%_noblas: tests/test_%.c $(1)/impl_noblas.o $(TEST_H)
	$$(CC_$(1)) $$(FLAGS_$(1)) -DMOLORA_NO_BLAS $$< $(1)/impl_noblas.o -o $$@ $$(SUITE_LINK_$$*) -lcmocka -lm
# the loader's cost against the input's size: compiles the implementation itself (counts VM steps);
# it never runs a kernel, so MOLORA_NO_SIMD spares the sanitizer builds the AVX-512 kernels' compile
$(1)/test_bounds: tests/test_bounds.c $(TEST_H) | $(1)
	$$(CC_$(1)) $$(FLAGS_$(1)) -DMOLORA_NO_SIMD $$< -o $$@ -lcmocka -lm
$(1)/test_npy: tests/test_npy.c tools/molora_npy.h $(TEST_H) | $(1)
	$$(CC_$(1)) $$(FLAGS_$(1)) $(POSIX) $$< -o $$@ -lcmocka
$(1)/molora: tools/molora.c $(CLI_H) | $(1)
	$$(CC_$(1)) $$(FLAGS_$(1)) $$< -o $$@ $(LIBS)
$(1)/engine: examples/engine.c molora.h | $(1)
	$$(CC_$(1)) $$(FLAGS_$(1)) $$< -o $$@ $(LIBS)
endef
$(foreach d,$(B) $(SAN_DIRS),$(eval $(call build_rules,$(d))))

# ---- the one list of test runs: make test, test-san, asan, ubsan, tsan and valgrind all use it ----
# run_NAME DIR WRAP: one run of a suite built in DIR; WRAP (valgrind) goes in front of a suite binary
TEST_RUNS = core core_portable core_noblas types types_portable types_noblas threads files files_noblas \
            bounds cli convert catalogue npy npy_numpy alpha_cli hostile alpha alpha_noblas parity engine \
            arrow arrow_noblas \
            xlora xlora_noblas xlora_cli \
            bf16 bf16_portable bf16_noblas
THREAD_SECONDS = 1
ENGINE_ADAPTERS = adamole lora_prose lora_c lora_python mole mola mole_output
PARITY = $(DEMO_MODEL)/parity.safetensors
run_core           = $(2) ./$(1)/test_core
run_core_portable  = MOLORA_PORTABLE=1 $(2) ./$(1)/test_core
run_core_noblas    = $(2) ./$(1)/test_core_noblas
run_types          = $(2) ./$(1)/test_types
run_types_portable = MOLORA_PORTABLE=1 $(2) ./$(1)/test_types
run_types_noblas   = $(2) ./$(1)/test_types_noblas
run_threads        = MOLORA_TEST_SECONDS=$(THREAD_SECONDS) $(2) ./$(1)/test_threads
run_files          = $(2) ./$(1)/test_files
run_files_noblas   = $(2) ./$(1)/test_files_noblas
run_xlora          = $(2) ./$(1)/test_xlora
run_xlora_noblas   = $(2) ./$(1)/test_xlora_noblas
run_bounds         = $(2) ./$(1)/test_bounds
run_cli            = sh tests/test_cli.sh $(1)/molora
run_xlora_cli      = sh tests/test_xlora_cli.sh $(1)/molora
run_convert        = sh tests/test_convert.sh $(1)/molora
run_catalogue      = $(2) ./$(1)/test_catalogue $(1)/molora
run_npy            = PYTHON=$(PYTHON) $(2) ./$(1)/test_npy
run_npy_numpy      = rm -rf $(1)/npy_cases && mkdir -p $(1)/npy_cases && \
                     $(2) ./$(1)/test_npy --dump $(1)/npy_cases && $(PYTHON) tests/npy_numpy_agree.py $(1)/npy_cases
run_alpha_cli      = sh tests/test_alpha_cli.sh $(1)/molora
run_hostile        = sh tests/test_hostile.sh $(1)/molora
run_alpha          = $(2) ./$(1)/test_alpha
run_alpha_noblas   = $(2) ./$(1)/test_alpha_noblas
run_arrow          = $(2) ./$(1)/test_arrow
run_arrow_noblas   = $(2) ./$(1)/test_arrow_noblas
run_parity         = $(2) ./$(1)/engine $(DEMO_MODEL)/base.safetensors -p $(PARITY) logits.base && \
                     for a in $(ENGINE_ADAPTERS); do $(2) ./$(1)/engine $(DEMO_MODEL)/base.safetensors \
                       -a $(DEMO_MODEL)/$$a -p $(PARITY) logits.$$a || exit 1; done
run_engine         = sh tests/test_engine.sh $(1)/engine $(DEMO_MODEL)
run_bf16           = $(2) ./$(1)/test_bf16
run_bf16_portable  = MOLORA_PORTABLE=1 $(2) ./$(1)/test_bf16
run_bf16_noblas    = $(2) ./$(1)/test_bf16_noblas
# what each run needs built
bins_core = test_core
bins_core_portable = test_core
bins_core_noblas = test_core_noblas
bins_types = test_types
bins_types_portable = test_types
bins_types_noblas = test_types_noblas
bins_threads = test_threads
bins_files = test_files
bins_files_noblas = test_files_noblas
bins_xlora = test_xlora
bins_xlora_noblas = test_xlora_noblas
bins_bounds = test_bounds
bins_cli = molora
bins_xlora_cli = molora
bins_convert = molora
bins_catalogue = test_catalogue molora
bins_npy = test_npy
bins_npy_numpy = test_npy
bins_alpha_cli = molora
bins_hostile = molora
bins_alpha = test_alpha
bins_alpha_noblas = test_alpha_noblas
bins_arrow = test_arrow
bins_arrow_noblas = test_arrow_noblas
bins_parity = engine
bins_engine = engine molora
bins_bf16 = test_bf16
bins_bf16_portable = test_bf16
bins_bf16_noblas = test_bf16_noblas

define newline


endef
# test_bins DIR RUNS: what RUNS need built in DIR;  test_runs DIR WRAP RUNS: one recipe line per run
test_bins = $(sort $(addprefix $(1)/,$(foreach r,$(2),$(bins_$(r)))))
test_runs = $(foreach r,$(3),$(call run_$(r),$(1),$(2))$(newline))

# the runs under a tool: build what they need (JOBS at a time), then run them in list order
# (tool_check DIR WRAP RUNS)
define tool_check
	@$(MAKE) --no-print-directory -j$(JOBS) $(call test_bins,$(1),$(3))
	$(call test_runs,$(1),$(2),$(3))
endef

test: deps-test
	@$(MAKE) --no-print-directory -j$(JOBS) $(call test_bins,$(B),$(TEST_RUNS)) $(B)/check_static check-compile
	$(call test_runs,$(B),,$(TEST_RUNS))
	./$(B)/check_static
	@$(MAKE) --no-print-directory test-san
	@$(MAKE) --no-print-directory check-install
	@$(MAKE) --no-print-directory $(B)/molora_bench $(B)/route_loop
	./$(B)/molora_bench --smoke
	./$(B)/route_loop route 64 4 topk 20 5 1 && ./$(B)/route_loop layer 64 4 20 3

# ---- sanitizers and valgrind: the runs of TEST_RUNS rebuilt under each tool -------------------
# A write past a buffer or undefined behaviour then fails the run on the spot, not when the
# allocator happens to notice. The sanitizers slow the suites, so the thread test runs longer.
# test-san, inside make test: the core and file suites and the command (the quick part of the list)
SAN_QUICK = core core_noblas types files bounds cli \
            xlora xlora_cli bf16
test-san: deps-test
	$(call tool_check,$(B)/san,,$(SAN_QUICK))
test-san asan ubsan tsan: THREAD_SECONDS = 2
# one ASan+UBSan build serves both: the two sanitizers combine, and one build and run costs half
asan ubsan: deps-san
	$(call tool_check,$(B)/san,,$(TEST_RUNS))
# TSan runs OpenBLAS at one thread: its worker threads are not instrumented, and their spin-wait
# hand-over of results shows up as false races
tsan: export OPENBLAS_NUM_THREADS = 1
tsan: deps-san
	$(call tool_check,$(B)/tsan,,$(TEST_RUNS))
# memcheck with the portable kernels forced: valgrind 3.19 cannot run AVX-512 code, so the
# MOLORA_PORTABLE runs would repeat the plain ones. The shell suites, the parity and engine runs
# start the command or the engine hundreds of times, each start costly under valgrind's JIT, and
# run under ASan+UBSan and TSan instead; valgrind covers the C suites. Their MOLORA_NO_BLAS twins
# and test_bounds (cost against input size: large inputs, slow under valgrind) also run under
# ASan+UBSan and TSan only, which keeps .ci/run inside its 30 minutes; so does test_threads,
# whose 900 parallel_for cases valgrind runs one thread at a time (more than 5 minutes).
VG_SKIP  = core_portable types_portable cli convert alpha_cli hostile parity engine npy_numpy \
           core_noblas types_noblas files_noblas alpha_noblas bounds \
           xlora_cli xlora_noblas threads bf16_portable bf16_noblas
VALGRIND = valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect
valgrind: export MOLORA_PORTABLE = 1
valgrind: deps-san
	$(call tool_check,$(B)/vg,$(VALGRIND),$(filter-out $(VG_SKIP),$(TEST_RUNS)))

# ---- fixtures ----------------------------------------------------------------------------------
# regenerate the committed test fixtures (Python stdlib only)
fixtures:
	python3 tests/fixtures/make_fixtures.py
	python3 tests/fixtures/make_alpha_arch.py

# ---- fuzzing: libFuzzer + ASan + UBSan, each harness for FUZZ_SECONDS -----------------------------
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
# The harnesses fuzz the readers; what they run past a reader (init, a forward) takes the portable
# kernels: MOLORA_NO_SIMD leaves the AVX-512 ones out, whose ASan+UBSan compile took about 3 minutes
# per harness. make asan still runs every SIMD kernel sanitized.
FUZZ_FLAGS    = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -DMOLORA_NO_SIMD
$(B)/fuzz_%: tests/fuzz/fuzz_%.c molora.h | $(B)
	$(FUZZ_CC) $(FUZZ_FLAGS) -I. $< -o $@ -lm
$(B)/fuzz_npy: tools/molora_npy.h
$(B)/fuzz_args: tools/molora_cli.h
# harness:seed corpus (tests/fuzz/corpus_*); each runs FUZZ_SECONDS, new inputs go to build/fuzz_corpus_*;
# the harnesses build and run JOBS at a time (each build is an ASan+UBSan compile of the header
# without its SIMD kernels; each run takes one core), tests/fuzz/run.sh printing each one's log as it ends
FUZZERS = safetensors:safetensors config:json npy:npy args:args adapter:adapter index:index xlora:xlora
fuzz: deps-san
	@$(MAKE) --no-print-directory -j$(JOBS) $(foreach f,$(FUZZERS),$(B)/fuzz_$(firstword $(subst :, ,$(f))))
	@sh tests/fuzz/run.sh $(B) $(FUZZ_SECONDS) $(JOBS) $(FUZZERS)

# the header as C99 and as C++11 under each configuration macro, alone and together, and two
# MOLORA_STATIC units linked together
CHECKS_C99   = plain noblas nosimd nostdio nofiles noalpha nofiles_noalpha
CHECKS_CPP11 = plain noblas nostdio nofiles noalpha nofiles_noalpha
CHECK_plain           =
CHECK_noblas          = -DMOLORA_NO_BLAS
CHECK_nosimd          = -DMOLORA_NO_SIMD
CHECK_nostdio         = -DMOLORA_NO_BLAS -DMOLORA_NO_STDIO
CHECK_nofiles         = -DMOLORA_NO_FILES
CHECK_noalpha         = -DMOLORA_NO_ALPHA
CHECK_nofiles_noalpha = -DMOLORA_NO_FILES -DMOLORA_NO_ALPHA
$(B)/check/c99_%.o: tests/compile/check_c99.c molora.h | $(B)/check
	$(CC) $(WARN) -std=c99 $(CHECK_$*) -I. -c $< -o $@
$(B)/check/cpp11_%.o: tests/compile/check_cpp11.cpp molora.h | $(B)/check
	$(CXX) $(WARN) -std=c++11 $(CHECK_$*) -I. -c $< -o $@
$(B)/check:
	mkdir -p $@
check-compile: $(B)/check_static $(CHECKS_C99:%=$(B)/check/c99_%.o) $(CHECKS_CPP11:%=$(B)/check/cpp11_%.o)
	$(CXX) $(WARN) -std=c++11 -fsyntax-only -x c++ tools/molora_npy.h
$(B)/check_static: tests/compile/static_a.c tests/compile/static_b.c molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. tests/compile/static_a.c tests/compile/static_b.c -o $@ $(LIBS)

# make install into a staging directory, then build the example against the installed files
STAGE_PC = PKG_CONFIG_LIBDIR=$(CURDIR)/$(B)/stage/usr/lib/pkgconfig
check-install:
	@rm -rf $(B)/stage
	@$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(B)/stage PREFIX=/usr >/dev/null
	$(CC) -std=c99 $$(PKG_CONFIG_SYSROOT_DIR=$(CURDIR)/$(B)/stage $(STAGE_PC) pkg-config --cflags molora) \
	  examples/quickstart.c -o $(B)/stage/quickstart $$($(STAGE_PC) pkg-config --libs molora)
	@echo "install: header and molora.pc usable: 1 passed, 0 failed"

# ---- install -----------------------------------------------------------------------------
PC_TEXT = prefix=%s\nincludedir=$${prefix}/include\n\nName: molora\n\
Description: mixture-of-LoRA-experts inference in one C header\nVersion: %s\nCflags: -I$${includedir}\n\
Libs: -lopenblas -lm\n
install:
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 molora.h $(DESTDIR)$(PREFIX)/include/molora.h
	printf '$(PC_TEXT)' '$(PREFIX)' "$$(sed -n 's/^#define MOLORA_VERSION_STRING "\(.*\)"/\1/p' molora.h)" \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/molora.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/molora.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/molora.pc

clean:
	rm -rf $(B)

# ---- benchmarks (minutes; never part of the timed tests) --------------------------------------
$(B)/molora_bench: bench/molora_bench.c molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. $< -o $@ $(LIBS) -lpthread
# one layer's calls in a loop, with the caches warm or flushed between calls (see its head)
$(B)/route_loop: bench/route_loop.c molora.h | $(B)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -I. $< -o $@ $(LIBS)
# OpenBLAS 0.3.21 does not know every AVX-512 CPU: it ran an AMD Zen 4 VM as Haswell (AVX2) and the
# Intel Xeon of family 6 model 207 as Prescott (SSE3), and its baselines would then measure a slow
# kernel. An OPENBLAS_CORETYPE set in the environment does the same: an AMD Zen 5 VM came with
# OPENBLAS_CORETYPE=Haswell set, under which sgemm at S1 T = 512 took 164 ms against SkylakeX's 86.
# The bench asks OpenBLAS which core it runs (molora_bench --corename, the detected one or the one
# set) and, when the CPU has AVX-512 and that core is none of OpenBLAS's AVX-512 ones, runs with
# OPENBLAS_CORETYPE=SkylakeX and says so: its baselines are OpenBLAS's fastest kernels here.
AVX512_CORES = SkylakeX Cooperlake SapphireRapids
bench: deps
	@$(MAKE) --no-print-directory $(B)/molora_bench
	@uptime
	@env=""; if [ -n "$(HAS_AVX512)" ]; then \
	  core=$$(./$(B)/molora_bench --corename); case " $(AVX512_CORES) " in *" $$core "*) ;; \
	  *) env="OPENBLAS_CORETYPE=SkylakeX"; echo "OpenBLAS runs this AVX-512 CPU as $$core: $$env";; esac; fi; \
	echo "$$env ./$(B)/molora_bench --json $(B)/bench.json"; \
	env $$env ./$(B)/molora_bench --json $(B)/bench.json || exit 1; \
	if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then \
	  env $$env /usr/bin/python3 bench/torch_adamole.py $(B)/bench.json; \
	else echo "torch_ms: Debian's python3-torch is not installed (apt-get install -y python3-torch); column skipped"; fi

# the AlphaLoRA spectrum benchmark
bench-alpha: deps
	@$(MAKE) --no-print-directory $(B)/alpha_bench
	PYTHON=$(PYTHON) ./$(B)/alpha_bench $(BENCH_ARGS)
$(B)/alpha_bench: bench/alpha_bench.c molora.h | $(B)
	$(CC) -O2 $(WARN) -std=c99 $(POSIX) -I. $< -o $@ $(LIBS)
