# lipsync: real-time lip-sync serving. One binary (build/lipsync), one library archive, tests,
# benches, generated models and a demo avatar.
#
#   make run        install what is missing, build, generate models + demo avatar, start the server
#   make test       the same, then every test (C unit tests, integration tests, Python clients)
#   make test SANITIZE=1   the same under ASan + UBSan (separate build tree)
#   ORT_ROOT=/opt/onnxruntime make   use another ONNX Runtime install (include/ + lib/)
#
# Sources are found by wildcard: a new file under src/<module>/ or tests/test_*.c needs no edit here.

.DEFAULT_GOAL := all
SHELL := /bin/bash

CC       ?= cc
SANITIZE ?= 0
ORT_ROOT ?= third_party/onnxruntime
MODELS   ?= models
AVATARS  ?= avatars
PY       := /usr/bin/python3
VERSION  := 0.1.0

ifeq ($(SANITIZE),1)
BUILD    ?= build/asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT      := -O1
else
BUILD    ?= build
SANFLAGS :=
OPT      := -O2
endif

PKGS := grpc gpr libprotobuf-c libjpeg spng zlib libavformat libavcodec libswscale \
        libswresample libavutil kissfft-float yaml-0.1 libcjson libmicrohttpd

ORT_INC := $(ORT_ROOT)/include
ORT_LIB := $(abspath $(ORT_ROOT)/lib)

GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

# Computed once per make run (:=): pkg-config is not re-run for every compile.
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CPPFLAGS := $(CPPFLAGS) -D_GNU_SOURCE -DLIP_VERSION=\"$(VERSION)\" -DLIP_GIT_REV=\"$(GIT_REV)\" \
            -Isrc -I$(BUILD)/gen -isystem $(ORT_INC) $(PKG_CFLAGS)
CFLAGS   := $(CFLAGS) -std=c11 $(OPT) -g -Wall -Wextra -Werror -Wno-unused-parameter -Wvla \
            -fno-strict-aliasing -pthread $(SANFLAGS)
LDFLAGS  := $(LDFLAGS) -pthread $(SANFLAGS) -L$(ORT_LIB) -Wl,-rpath,$(ORT_LIB)
LDLIBS   := $(LDLIBS) -lonnxruntime $(PKG_LIBS) -lm

# ---- sources ---------------------------------------------------------------------------------
PROTOS   := $(wildcard proto/*.proto)
GEN_C    := $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
GEN_H    := $(GEN_C:.c=.h)
LIB_SRC  := $(filter-out src/cli/%,$(wildcard src/*/*.c))
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
BENCH_SRC:= $(wildcard bench/*.c)

LIB_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(GEN_C:.c=.o)
CLI_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(CLI_SRC))
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
LIB      := $(BUILD)/liblipsync.a
BIN      := $(BUILD)/lipsync

.PHONY: all deps models avatar test unit check run bench clean distclean fuzz print-%
# Generated protobuf-c sources are real outputs, never intermediates to delete.
.SECONDARY: $(GEN_C) $(GEN_H)

all: $(BIN) $(TESTS)

deps:
	@bash mk/deps.sh

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/gen
	protoc-c -Iproto --c_out=$(BUILD)/gen $<

$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c
	@echo "  CC  $<"
	@$(CC) $(CPPFLAGS) $(filter-out -Werror,$(CFLAGS)) -c -o $@ $<

$(BUILD)/obj/%.o: %.c | $(GEN_H)
	@mkdir -p $(dir $@)
	@echo "  CC  $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	@echo "  LD  $@"
	@$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIB)
	@mkdir -p $(dir $@)
	@echo "  LD  $@"
	@$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---- generated models and the demo avatar -----------------------------------------------------
MODEL_FILES := $(MODELS)/unet328.onnx $(MODELS)/audio_encoder.onnx $(MODELS)/unet_tiny.onnx \
               $(MODELS)/audio_encoder_tiny.onnx $(MODELS)/unet_demo.onnx

$(MODELS)/.stamp: tools/gen_models.py tools/lipsync_models.py
	@mkdir -p $(MODELS)
	$(PY) tools/gen_models.py --out $(MODELS)
	@touch $@

models: $(MODELS)/.stamp

$(AVATARS)/demo/.stamp: tools/gen_avatar.py $(MODELS)/.stamp
	$(PY) tools/gen_avatar.py --out $(AVATARS)/demo --unet $(MODELS)/unet_demo.onnx
	@touch $@

avatar: $(AVATARS)/demo/.stamp

# ---- tests, run, bench -------------------------------------------------------------------------
# `make test` = deps + build + models + avatar + every test; the runner prints "N passed, N failed".
test: deps
	@$(MAKE) --no-print-directory all models avatar
	@BUILD=$(BUILD) MODELS=$(MODELS) AVATARS=$(AVATARS) bash tests/run.sh

unit: all models
	@BUILD=$(BUILD) MODELS=$(MODELS) AVATARS=$(AVATARS) TESTS_ONLY=unit bash tests/run.sh

PORT ?= 50053
run: deps
	@$(MAKE) --no-print-directory all models avatar
	@bash mk/run.sh $(BIN) $(MODELS) $(AVATARS) $(PORT)

bench: all models avatar
	$(BIN) bench model --model $(MODELS)/unet328.onnx

clean:
	rm -rf build

distclean: clean
	rm -rf third_party $(MODELS) $(AVATARS)

print-%:
	@echo '$*=$($*)'

# ---- fuzzing (not part of `make test`) ---------------------------------------------------------
# `make fuzz`: the libFuzzer harnesses fuzz/fuzz_<target>.c, built with clang against the library
# sources compiled again into build/fuzz/ with -fsanitize=fuzzer-no-link,address,undefined, each
# run for FUZZ_SECONDS (default 60) from its seed corpus fuzz/corpus/<target>/ by fuzz/run.sh.
# New inputs go to build/fuzz/corpus/<target>/, crash reproducers to fuzz/crashes/<target>/.
#   make fuzz FUZZ_TARGETS="npy wav" FUZZ_SECONDS=10     some targets, briefly
#   make fuzz FUZZ_SECONDS=0                             build only
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR     := build/fuzz
FUZZ_CFLAGS  := -std=c11 -O1 -g -pthread -fno-strict-aliasing -Wno-unused-parameter \
                -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_ALL     := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_LIB     := $(FUZZ_DIR)/liblipsync_fuzz.a
# Only the modules the harnesses reach are rebuilt (faster, and a module being edited elsewhere
# does not block fuzzing the others); a harness for another module adds it here.
FUZZ_MODULES ?= core audio avatar image config engine metrics auth
FUZZ_LIB_SRC := $(filter $(patsubst %,src/%/%,$(FUZZ_MODULES)),$(LIB_SRC))
FUZZ_LIB_OBJ := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(FUZZ_LIB_SRC)) \
                $(patsubst $(BUILD)/gen/%.c,$(FUZZ_DIR)/obj/gen/%.o,$(GEN_C))

$(FUZZ_DIR)/obj/src/%.o: src/%.c | $(GEN_H)
	@mkdir -p $(dir $@)
	@echo "  FUZZCC $<"
	@$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_DIR)/obj/gen/%.o: $(BUILD)/gen/%.c | $(GEN_H)
	@mkdir -p $(dir $@)
	@echo "  FUZZCC $<"
	@$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

# The request messages to fuzz, listed from the generated headers (fuzz/fuzz_proto.c reads it).
# Order-only on the headers: the main build deletes them as intermediates, which must not force a
# rebuild here; the .proto files are the real inputs.
$(FUZZ_DIR)/proto_requests.h: $(PROTOS) | $(GEN_H)
	@mkdir -p $(dir $@)
	@grep -ho 'ProtobufCMessageDescriptor [a-z0-9_]*_request__descriptor' $(GEN_H) | sort -u | \
	    sed -E 's/.* (.*)/X(\1)/' > $@

$(FUZZ_DIR)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(FUZZ_LIB) $(FUZZ_DIR)/proto_requests.h
	@echo "  FUZZLD $@"
	@$(FUZZ_CC) $(CPPFLAGS) -I$(FUZZ_DIR) -Ifuzz $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< \
	    $(FUZZ_LIB) -L$(ORT_LIB) -Wl,-rpath,$(ORT_LIB) $(LDLIBS)

fuzz: $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_TARGETS))
	@FUZZ_DIR=$(FUZZ_DIR) FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh $(FUZZ_TARGETS)

-include $(shell find $(FUZZ_DIR)/obj -name '*.d' 2>/dev/null)

# ---- install -----------------------------------------------------------------------------------
# `make install PREFIX=/usr/local DESTDIR=`: PREFIX/bin/lipsync (relinked with the run path
# $ORIGIN/../lib/lipsync, so the build tree is not needed), the ONNX Runtime libraries in
# PREFIX/lib/lipsync, the systemd unit in SYSTEMD_UNITDIR (its paths rewritten to PREFIX), the
# example config in PREFIX/share/lipsync/, docs/*.md in PREFIX/share/doc/lipsync/ and, if none is there yet, SYSCONFDIR/lipsync/lipsync.yaml.
PREFIX          ?= /usr/local
DESTDIR         ?=
SYSCONFDIR      ?= /etc
SYSTEMD_UNITDIR ?= $(PREFIX)/lib/systemd/system

install: $(BIN)
	@echo "  LD  $(BUILD)/lipsync.install (run path \$$ORIGIN/../lib/lipsync)"
	@$(CC) -pthread $(SANFLAGS) -L$(ORT_LIB) -Wl,-rpath,'$$ORIGIN/../lib/lipsync' \
	    -o $(BUILD)/lipsync.install $(CLI_OBJ) $(LIB) $(LDLIBS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/lipsync \
	    $(DESTDIR)$(PREFIX)/share/lipsync $(DESTDIR)$(SYSTEMD_UNITDIR) $(DESTDIR)$(SYSCONFDIR)/lipsync
	install -m 0755 $(BUILD)/lipsync.install $(DESTDIR)$(PREFIX)/bin/lipsync
	cp -P $(ORT_LIB)/libonnxruntime*.so* $(DESTDIR)$(PREFIX)/lib/lipsync/
	chmod 0644 $(DESTDIR)$(PREFIX)/lib/lipsync/*.so
	sed -e 's|/usr/local|$(PREFIX)|g' -e 's|/etc/lipsync|$(SYSCONFDIR)/lipsync|g' \
	    deploy/lipsync.service > $(DESTDIR)$(SYSTEMD_UNITDIR)/lipsync.service
	chmod 0644 $(DESTDIR)$(SYSTEMD_UNITDIR)/lipsync.service
	install -m 0644 deploy/lipsync.yaml $(DESTDIR)$(PREFIX)/share/lipsync/lipsync.yaml.example
	install -d $(DESTDIR)$(PREFIX)/share/doc/lipsync
	install -m 0644 docs/*.md $(DESTDIR)$(PREFIX)/share/doc/lipsync/
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/lipsync/lipsync.yaml ]; then \
	    echo "  keeping existing $(DESTDIR)$(SYSCONFDIR)/lipsync/lipsync.yaml"; \
	else install -m 0644 deploy/lipsync.yaml $(DESTDIR)$(SYSCONFDIR)/lipsync/lipsync.yaml; fi

.PHONY: fuzz install
