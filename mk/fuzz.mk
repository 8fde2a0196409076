# Fuzzing of the path parsers and the control requests (tests/fuzz/).
#   make fuzz            libFuzzer (clang), FUZZ_SECONDS per target (60)
#   make fuzz-regress    replay every input of tests/fuzz/corpus/ with a
#                        gcc-built driver; part of make check, needs no clang
#   make fuzz-coverage   line coverage of src/ reached by the corpus
# A crash found by make fuzz lands in build/fuzz/artifacts/TARGET/; copy it
# into tests/fuzz/corpus/TARGET/ so that make check replays it from then on.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := names ctl
FUZZ_CC ?= clang
FUZZ_DIR := $(B)/fuzz
FUZZ_CFLAGS := -g -O1 -std=gnu11 -D_GNU_SOURCE -Iinclude -Isrc
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_SRC_names := src/names.c
FUZZ_SRC_ctl := src/seg.c src/attach.c src/forkkids.c src/tally.c src/segmem.c src/status.c src/perm.c \
	src/table_tx.c src/files.c src/pheap.c src/pheap_alloc.c \
	src/pheap_reply.c src/killpoint.c src/names.c
FUZZ_LEN_names := 300
FUZZ_LEN_ctl := 4096
# Bugs of src/ not fixed yet, by name (see tolerated() in fuzz_ctl.c):
# make fuzz looks past them; their known-* inputs replay as expected
# failures until the fix, then lose the prefix.
FUZZ_TOLERATE ?=
# Debian packages that give clang its libFuzzer and sanitizer runtimes, and
# llvm-profdata/llvm-cov for fuzz-coverage; installed only for these targets.
FUZZ_PKGS := clang libclang-rt-dev llvm
# gcc's sanitizers for the replay driver, when this gcc has them.
REPLAY_SAN = $(shell printf 'int main(void){return 0;}' | \
	$(CC) $(FUZZ_SAN) -x c - -o /dev/null 2>/dev/null && echo '$(FUZZ_SAN)')

.PHONY: fuzz fuzz-deps fuzz-regress fuzz-coverage

fuzz-deps:
	@probe='int LLVMFuzzerTestOneInput(const char *d, unsigned long n)'; \
	probe="$$probe { (void)d; (void)n; return 0; }"; \
	if echo "$$probe" | $(FUZZ_CC) -fsanitize=fuzzer,address,undefined \
		-x c - -o /dev/null 2>/dev/null && command -v llvm-profdata \
		>/dev/null && command -v llvm-cov >/dev/null; then exit 0; fi; \
	missing=""; for p in $(FUZZ_PKGS); do \
		dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | \
			grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then \
		echo "fuzz: $(FUZZ_CC) cannot build a libFuzzer target" >&2; \
		exit 1; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "fuzz: missing packages:$$missing (run as root, or" \
			"install them)" >&2; exit 1; fi; \
	echo "fuzz: installing$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends \
		$$missing </dev/null

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard src/*.c src/*.h include/*.h tests/fuzz/*.h) | $(B)
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $< \
		$(FUZZ_SRC_$*) -lpthread

$(FUZZ_DIR)/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(wildcard src/*.c src/*.h include/*.h tests/fuzz/*.h) | $(B)
	@mkdir -p $(FUZZ_DIR)
	$(CC) $(WARN) $(FUZZ_CFLAGS) $(REPLAY_SAN) -o $@ $< tests/fuzz/replay.c \
		$(FUZZ_SRC_$*) -lpthread

# Each target runs on a working corpus in build/ seeded from tests/, so
# that what the fuzzer finds never lands in the repository by itself.
define FUZZ_RUN
	@mkdir -p $(FUZZ_DIR)/corpus/$(1) $(FUZZ_DIR)/artifacts/$(1)
	@echo "== fuzz_$(1) for $(FUZZ_SECONDS) s"
	@SHMFS_FUZZ_TOLERATE="$(FUZZ_TOLERATE)" $(FUZZ_DIR)/fuzz_$(1) \
		-max_total_time=$(FUZZ_SECONDS) -timeout=10 \
		-max_len=$(FUZZ_LEN_$(1)) -print_final_stats=1 \
		$(if $(wildcard tests/fuzz/$(1).dict),-dict=tests/fuzz/$(1).dict) \
		-artifact_prefix=$(FUZZ_DIR)/artifacts/$(1)/ \
		$(FUZZ_DIR)/corpus/$(1) tests/fuzz/corpus/$(1) \
		2>$(FUZZ_DIR)/fuzz_$(1).log; rc=$$?; \
	grep -aE '^#[0-9]+[[:space:]]+(DONE|pulse)' $(FUZZ_DIR)/fuzz_$(1).log | tail -n 1; \
	grep -aE '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
		$(FUZZ_DIR)/fuzz_$(1).log; \
	if [ $$rc != 0 ]; then \
		grep -a -m1 -A3 'fuzz_$(1):\|ERROR: \|runtime error' \
			$(FUZZ_DIR)/fuzz_$(1).log; \
		echo "fuzz_$(1) FAILED: see $(FUZZ_DIR)/fuzz_$(1).log; copy the" \
			"input from $(FUZZ_DIR)/artifacts/$(1)/ into" \
			"tests/fuzz/corpus/$(1)/ to keep it as a regression test"; \
		exit 1; fi

endef

define FUZZ_COV
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fprofile-instr-generate -fcoverage-mapping \
		-o $(FUZZ_DIR)/cov/replay_$(1) tests/fuzz/fuzz_$(1).c \
		tests/fuzz/replay.c $(FUZZ_SRC_$(1)) -lpthread
	@rm -f $(FUZZ_DIR)/cov/$(1)-*.profraw
	@SHMFS_FUZZ_TOLERATE="$(FUZZ_TOLERATE)" \
		LLVM_PROFILE_FILE=$(FUZZ_DIR)/cov/$(1)-%p.profraw \
		$(FUZZ_DIR)/cov/replay_$(1) tests/fuzz/corpus/$(1) \
		$(wildcard $(FUZZ_DIR)/corpus/$(1)) >/dev/null
	@llvm-profdata merge -o $(FUZZ_DIR)/cov/$(1).profdata \
		$(FUZZ_DIR)/cov/$(1)-*.profraw
	@echo "== coverage of src/ by the $(1) corpus"
	@llvm-cov report $(FUZZ_DIR)/cov/replay_$(1) \
		-instr-profile=$(FUZZ_DIR)/cov/$(1).profdata $(FUZZ_SRC_$(1))

endef

fuzz: fuzz-deps
	@$(MAKE) --no-print-directory \
		$(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_TARGETS))
	$(foreach t,$(FUZZ_TARGETS),$(call FUZZ_RUN,$(t)))

fuzz-regress: $(patsubst %,$(FUZZ_DIR)/replay_%,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
		printf '== fuzz corpus %s: ' $$t; \
		$(FUZZ_DIR)/replay_$$t tests/fuzz/corpus/$$t || exit 1; \
	done

fuzz-coverage: fuzz-deps
	@mkdir -p $(FUZZ_DIR)/cov
	$(foreach t,$(FUZZ_TARGETS),$(call FUZZ_COV,$(t)))

CHECK_EXTRA += fuzz-regress
