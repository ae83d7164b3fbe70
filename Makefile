# sqc: compiler from .sq network descriptions to integer-training code.
# make demo | make check | make bench | make asan | make deps | make all
.SUFFIXES:
MAKEFLAGS += --no-builtin-rules
.DEFAULT_GOAL := all

BUILD    ?= build
CC       ?= cc
OPT      ?= -O2
SAN      ?=
WARN      = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wformat=2 \
            -Wno-format-nonliteral
CFLAGS_ALL = -std=c17 $(OPT) -g -fPIC -ffp-contract=off -D_POSIX_C_SOURCE=200809L -MMD -MP \
             -I$(BUILD)/gen -Isrc/front $(JSON_CFLAGS) $(SAN) $(CFLAGS)
JSON_CFLAGS = $(shell pkg-config --cflags json-c 2>/dev/null)
JSON_LIBS = $(shell pkg-config --libs json-c 2>/dev/null || echo -ljson-c)
LDLIBS_ALL = -lz $(JSON_LIBS) -lm -pthread $(LDLIBS)
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null || echo -lcheck)
CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)

# Debian packages this project needs to build and test.
DEB_PACKAGES = gcc make flex bison pkg-config check zlib1g-dev libyaml-dev libjson-c-dev llvm-19-dev dataset-fashion-mnist \
               python3 python3-numpy gnuplot-nox gcc-aarch64-linux-gnu qemu-user valgrind

# Objects are rebuilt when the flags change (a stamp file named after their hash).
FLAGS_STAMP := $(BUILD)/.flags-$(shell echo '$(CFLAGS_ALL) $(WARN)' | cksum | cut -d' ' -f1)
$(FLAGS_STAMP):
	@mkdir -p $(@D); rm -f $(BUILD)/.flags-*; touch $@

LIB_SRC  = $(filter-out src/driver/main.c src/driver/emit_so.c,$(wildcard src/*/*.c)) $(wildcard runtime/*.c)
# The LLVM backend is part of the compiler only; model libraries never link LLVM.
LLVM_CONFIG ?= llvm-config-19
BACKEND_SRC = $(wildcard src/backend/llvm/*.c) src/driver/emit_so.c
BACKEND_OBJ = $(BACKEND_SRC:%.c=$(BUILD)/%.o)
LLVM_CFLAGS = $(shell $(LLVM_CONFIG) --includedir 2>/dev/null | sed 's/^/-isystem /')
LLVM_LIBS = $(shell $(LLVM_CONFIG) --ldflags --libs 2>/dev/null)
GEN_SRC  = $(BUILD)/gen/lexer.c $(BUILD)/gen/parser.c $(BUILD)/gen/sq_header.c
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o) $(GEN_SRC:%.c=%.o)
TEST_SRC = $(wildcard tests/unit/test_*.c)
TEST_BIN = $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
DATA_OBJ = $(BUILD)/tools/data/fashion_mnist.o

all: $(BUILD)/sqc $(BUILD)/sqref $(BUILD)/sqtrain $(BUILD)/gradquant $(TEST_BIN)

$(BUILD)/gen/parser.c: src/front/parser.y
	@mkdir -p $(@D)
	bison -Wall -Werror --defines=$(BUILD)/gen/parser.h -o $(BUILD)/gen/parser.c $<
$(BUILD)/gen/parser.h: $(BUILD)/gen/parser.c

# include/sq/sq.h as a C string, so sqc can write it into every generated model header.
$(BUILD)/gen/sq_header.c: include/sq/sq.h
	@mkdir -p $(@D)
	{ echo '/* generated from include/sq/sq.h */'; echo 'const char sq_public_header[] ='; \
	  sed 's/\\/\\\\/g; s/"/\\"/g; s/^/"/; s/$$/\\n"/' $<; echo ';'; } >$@

$(BUILD)/gen/lexer.c: src/front/lexer.l $(BUILD)/gen/parser.h
	@mkdir -p $(@D)
	flex -o $@ $<

# Generated code is compiled without the strict warning set.
$(BUILD)/gen/%.o: $(BUILD)/gen/%.c $(FLAGS_STAMP)
	$(CC) $(CFLAGS_ALL) -Wno-unused-function -c -o $@ $<

$(BUILD)/%.o: %.c $(FLAGS_STAMP) | $(BUILD)/gen/parser.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(WARN) -Werror -c -o $@ $<

$(BUILD)/libsqc.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BACKEND_OBJ): CFLAGS_ALL += $(LLVM_CFLAGS)
$(BUILD)/src/driver/main.o: CFLAGS_ALL += $(LLVM_CFLAGS)

$(BUILD)/sqc: $(BUILD)/src/driver/main.o $(BACKEND_OBJ) $(BUILD)/libsqc.a
	$(CC) $(SAN) -o $@ $^ $(LLVM_LIBS) -lyaml $(LDLIBS_ALL)

$(BUILD)/sqref: $(BUILD)/tools/sqref/main.o $(DATA_OBJ) $(BUILD)/libsqc.a
	$(CC) $(SAN) -o $@ $^ $(LDLIBS_ALL)

SQTRAIN_OBJ = $(patsubst %.c,$(BUILD)/%.o,$(wildcard tools/sqtrain/*.c))
$(BUILD)/sqtrain: $(SQTRAIN_OBJ) $(DATA_OBJ) $(BUILD)/libsqc.a
	$(CC) $(SAN) -o $@ $^ -lyaml -ldl $(LDLIBS_ALL)

$(BUILD)/gradquant: $(BUILD)/bench/gradquant.o $(DATA_OBJ) $(BUILD)/libsqc.a
	$(CC) $(SAN) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/tests/unit/harness.o $(DATA_OBJ) $(BUILD)/libsqc.a
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(CHECK_LIBS) $(LDLIBS_ALL)

$(BUILD)/tests/unit/%.o: tests/unit/%.c $(FLAGS_STAMP) | $(BUILD)/gen/parser.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(CHECK_CFLAGS) $(WARN) -Wno-missing-prototypes -Werror -c -o $@ $<

# ---- installing what is missing (Debian 12; as root, or through sudo) ----
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	else echo "make: all packages present ($(2))"; fi
endef
deps:
	$(call install_missing,$(DEB_PACKAGES),build and tests)

# The peers of `make bench` only.
BENCH_PACKAGES = libdnnl-dev libopenblas-dev python3-torch
bench-deps: deps
	$(call install_missing,$(BENCH_PACKAGES),bench peers)

# ---- tests ----
check: deps
	$(MAKE) all
	BUILD=$(BUILD) sh tests/run.sh
	$(MAKE) asan
	$(MAKE) valgrind

# valgrind cannot run AVX-512 code, so it runs what has none: the unit suites (the reference
# executor, built for the baseline ISA), sqc itself, and an app on a reference-target library.
valgrind: all
	BUILD=$(BUILD) bash tests/valgrind.sh

asan: deps
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" all
	BUILD=build-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  SQ_TEST_CFLAGS="-fsanitize=address,undefined" SQ_CROSS_RUN=0 sh tests/run.sh

# ---- the demo: compile examples/mlp.sq at 4 bits and train the library on Fashion-MNIST ----
demo: deps
	$(MAKE) $(BUILD)/sqc $(BUILD)/sqtrain
	$(BUILD)/sqc examples/mlp.sq --bits 4 -o $(BUILD)/mlp.so
	$(BUILD)/sqtrain $(BUILD)/mlp.so --epochs 3 --threads 2 --csv $(BUILD)/mlp.csv

# ---- measurements (minutes; not part of check) ----
gradquant: deps
	$(MAKE) $(BUILD)/gradquant
	$(BUILD)/gradquant .

# bench/run.sh: sqc's GEMMs against the int8 ceiling, oneDNN and OpenBLAS; training against
# PyTorch; memory; L1 against L2 layers. Minutes; prints everything docs/results.md records.
bench: bench-deps
	$(MAKE) all
	@mkdir -p $(BUILD)/bench
	$(CC) -std=c17 -O2 -Wall -Wextra -D_POSIX_C_SOURCE=200809L -o $(BUILD)/bench/clock bench/clock.c
	$(CC) -std=c17 -O2 -Wall -Wextra -D_POSIX_C_SOURCE=200809L -o $(BUILD)/bench/peak bench/peak.c
	$(CC) -std=c17 -O2 -D_POSIX_C_SOURCE=200809L -o $(BUILD)/bench/peers bench/peers.c -ldnnl -lopenblas
	$(CC) -std=c17 -O2 -D_POSIX_C_SOURCE=200809L -o $(BUILD)/bench/train bench/train.c -ldl
	sh bench/run.sh $(BUILD)

clean:
	rm -rf build build-asan

.PHONY: all deps bench-deps check asan valgrind demo gradquant bench clean
-include $(shell find $(BUILD) build-asan -name '*.d' 2>/dev/null)
