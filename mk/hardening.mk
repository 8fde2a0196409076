# Hardening (issue 5): the load test, and the whole test suite under the
# sanitizers and under valgrind.
#
#   make stress              16 processes for 60 s on a fresh daemon, then
#                            the invariants (tests/stress.py); options with
#                            STRESS_ARGS="-n 32 -t 300 -s SEED"
#   make stress-failover     the same with the serving process SIGKILLed
#                            every 2 s and upgraded every 10 s
#   make check-asan          daemon, libraries, unit tests and programs
#                            built with ASan+UBSan into $(ASAN_B); the unit
#                            tests and the whole pytest suite run on them;
#                            any sanitizer report, daemon's or client's,
#                            fails it
#   make check-valgrind      the whole pytest suite with the daemon under
#                            valgrind memcheck: no error, no definite leak
#
# `make check` runs a short stress (STRESS_SHORT_ARGS) after pytest.

STRESS_ARGS ?=
STRESS_SHORT_ARGS ?= -n 6 -t 10
FAILOVER_ARGS ?= --kill-every 2 --upgrade-every 10
FAILOVER_SHORT_ARGS ?= -n 6 -t 10 --kill-every 2 --upgrade-every 5
ASAN_B ?= build-asan
VG_B ?= build-valgrind
ASAN_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer
# Logs go where every user can reach them: tests run programs (and a
# daemon) as uid 1000, and a checkout may sit in a directory only root
# can enter (CI's clone); the name follows the build directory.
LOGS_TAG = $(shell printf '%s' '$(abspath .)' | cksum | cut -d' ' -f1)
ASAN_LOGS = /tmp/shmfs-sanitizer-logs.$(LOGS_TAG)
VG_LOGS = /tmp/shmfs-valgrind-logs.$(LOGS_TAG)

.PHONY: stress stress-short stress-failover stress-failover-short \
	check-asan check-valgrind

stress: deps
	@$(MAKE) --no-print-directory all
	$(PYTHON) tests/stress.py --build $(abspath $(B)) $(STRESS_ARGS)

stress-short: all
	$(PYTHON) tests/stress.py --build $(abspath $(B)) $(STRESS_SHORT_ARGS)

stress-failover: deps
	@$(MAKE) --no-print-directory all
	$(PYTHON) tests/stress.py --build $(abspath $(B)) $(FAILOVER_ARGS) \
		$(STRESS_ARGS)

stress-failover-short: all
	$(PYTHON) tests/stress.py --build $(abspath $(B)) $(FAILOVER_SHORT_ARGS)

CHECK_EXTRA += stress-short stress-failover-short

# Reports go to files (one per process, named after the program), not to
# stderr, so that a client's report is seen as surely as the daemon's:
# the target fails if any file is there at the end.  The preload library
# is built with ASan too: a program that is not instrumented must load
# the ASan runtime first (tests/test_lib.py's preload_env and
# tests/stress.py put it in LD_PRELOAD before the library);
# verify_asan_link_order=0 lets an instrumented program, which links the
# runtime itself, take LD_PRELOAD=libshmfs-preload.so as it is.  Tests
# provoke SIGSEGV (a store through SHM_RDONLY) and SIGBUS (a page of a dead
# daemon) on purpose and check that the process dies of that signal, so
# ASan leaves those two signals alone (handle_segv=0, handle_sigbus=0): a
# real crash still fails its test, as a crash rather than a report.
# fast_unwind_on_malloc=0: a report's stacks go on through glibc and
# libfuse, built without frame pointers (a leak once came with glibc's
# frames alone, and could not be placed).
ASAN_ENV = ASAN_OPTIONS=log_path=$(ASAN_LOGS)/asan:log_exe_name=1:detect_leaks=1:verify_asan_link_order=0:handle_segv=0:handle_sigbus=0:exitcode=99:fast_unwind_on_malloc=0 \
	UBSAN_OPTIONS=log_path=$(ASAN_LOGS)/ubsan:log_exe_name=1:print_stacktrace=1:halt_on_error=1

check-asan: deps
	@$(MAKE) --no-print-directory B=$(ASAN_B) SAN="$(ASAN_SAN)" CFLAGS="-O1 -g" \
		all
	@rm -rf $(ASAN_LOGS) && mkdir -p $(ASAN_LOGS) && chmod 1777 $(ASAN_LOGS)
	@start=$$(date +%s); status=0; \
	for t in $(addprefix $(ASAN_B)/,$(UNIT_NAMES)); do \
		echo "== $$t"; $(ASAN_ENV) $$t >/dev/null || status=1; done; \
	$(ASAN_ENV) SHMFS_DAEMON_LOGS=$(ASAN_LOGS) \
		SHMFS_BUILD=$(abspath $(ASAN_B)) $(PYTHON) -m pytest \
		-p no:cacheprovider -q $(PYTEST_ARGS) tests || status=1; \
	reports=$$(find $(ASAN_LOGS) -type f -size +0); \
	if [ -n "$$reports" ]; then status=1; \
		echo "check-asan: sanitizer reports in $(ASAN_LOGS):"; \
		for f in $$reports; do echo "==== $$f"; head -n 80 "$$f"; done; \
	else echo "check-asan: no sanitizer report"; fi; \
	echo "check-asan: $$(( $$(date +%s) - start )) s"; exit $$status

# $(VG_B) is a copy of $(B) whose `shmfs` runs the real daemon under
# valgrind: the shmfs.real beside it (conftest.py's copy readable by uid
# 1000), or, once installed without it (test_install.py), the one in
# $(VG_B); conftest.py takes the daemon from SHMFS_BUILD.  Each daemon
# writes its log to a file of its own (stderr stays the daemon's, which
# conftest.py checks); the target fails on any log whose error summary is
# not 0 (a definite leak is an error here).  A daemon that a test kills
# writes no summary: those are counted, not judged.
VG_OPTS = --tool=memcheck --error-exitcode=99 --leak-check=full \
	--px-default=allregs-at-mem-access \
	--errors-for-leak-kinds=definite --show-leak-kinds=definite \
	--num-callers=30 --child-silent-after-fork=yes \
	--log-file=$(VG_LOGS)/vg.%p

check-valgrind: deps
	@command -v valgrind >/dev/null 2>&1 || { \
		echo "shmfs: installing valgrind"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends valgrind </dev/null; }
	@$(MAKE) --no-print-directory all
	@rm -rf $(VG_B) && mkdir -p $(VG_B) && cp -a $(B)/. $(VG_B)/ && \
		mv $(VG_B)/shmfs $(VG_B)/shmfs.real && \
		rm -rf $(VG_LOGS) && mkdir -p $(VG_LOGS) && chmod 1777 $(VG_LOGS) && \
		printf '#!/bin/sh\nreal="$${0%%/*}/shmfs.real"\n[ -x "$$real" ] || real="%s"\nexec valgrind %s "$$real" "$$@"\n' \
			'$(abspath $(VG_B))/shmfs.real' '$(VG_OPTS)' \
			>$(VG_B)/shmfs && chmod 755 $(VG_B)/shmfs
	@start=$$(date +%s); status=0; \
	SHMFS_DAEMON_LOGS=$(VG_LOGS) \
		SHMFS_BUILD=$(abspath $(VG_B)) $(PYTHON) -m pytest -p no:cacheprovider \
		-q $(PYTEST_ARGS) tests || status=1; \
	n=0; killed=0; for f in $(VG_LOGS)/vg.*; do [ -e "$$f" ] || continue; \
		n=$$((n + 1)); \
		if grep -q "ERROR SUMMARY: 0 errors" "$$f"; then :; \
		elif grep -q "ERROR SUMMARY" "$$f"; then status=1; \
			echo "==== $$f"; cat "$$f"; \
		else killed=$$((killed + 1)); fi; done; \
	echo "check-valgrind: $$n daemons under memcheck, $$killed killed" \
		"by their test (no summary); every other: 0 errors, 0 definite leaks" \
		"$$( [ $$status = 0 ] || echo '(NOT: see above)')"; \
	echo "check-valgrind: $$(( $$(date +%s) - start )) s"; exit $$status
