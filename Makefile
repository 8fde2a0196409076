# shmfs: System V shared memory as a FUSE file system.
#   make run     install what is missing, build, mount at $(MNT)
#   make check   install what is missing, build, run every test
VERSION := 0.1.0
SOVERSION := 1

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR := $(PREFIX)/bin
LIBDIR := $(PREFIX)/lib
INCDIR := $(PREFIX)/include
MANDIR := $(PREFIX)/share/man
PCDIR := $(LIBDIR)/pkgconfig
# The preload library has no SONAME (no program links it): Debian keeps it
# out of the linker's path, in $(LIBDIR)/shmfs (debian/rules).
PRELOADDIR := $(LIBDIR)
MNT ?= /shm
PYTHON := /usr/bin/python3
PYTEST_ARGS ?=

CC ?= gcc
B := build
WARN := -Wall -Wextra -Werror
CFLAGS ?= -O2 -g
SAN ?=
# CPPFLAGS and LDFLAGS as the environment gives them (dpkg-buildflags'
# hardening in debian/rules).
ALL_CFLAGS = $(WARN) $(CPPFLAGS) $(CFLAGS) $(SAN) -std=gnu11 -D_GNU_SOURCE -Iinclude \
	-DSHMFS_VERSION='"$(VERSION)"'
FUSE_CFLAGS = $(shell pkg-config --cflags fuse3 2>/dev/null)
FUSE_LIBS = $(shell pkg-config --libs fuse3 2>/dev/null)

DAEMON_SRC := src/shmfs_main.c src/ops.c src/dir.c src/xattr.c src/ctl.c \
	src/ofile.c src/notify.c src/seg.c src/attach.c src/forkkids.c src/tally.c src/tallyfs.c \
	src/segmem.c \
	src/status.c src/perm.c src/sysinfo.c \
	src/pubtab.c src/alive.c src/names.c src/passthrough.c src/uring.c \
	src/reaper.c \
	src/holder.c src/holder_msg.c src/holder_client.c src/holder_upgrade.c \
	src/takeover.c src/table_tx.c src/files.c src/pheap.c \
	src/pheap_alloc.c src/pheap_reply.c src/killpoint.c
CORE_SRC := src/seg.c src/attach.c src/forkkids.c src/tally.c src/segmem.c src/status.c src/perm.c \
	src/table_tx.c src/files.c src/pheap.c src/pheap_alloc.c \
	src/pheap_reply.c src/killpoint.c src/names.c
LIB_SRC := lib/conn.c lib/table.c lib/tally.c lib/fastpath.c lib/attachments.c lib/fork.c lib/shm.c
PRELOAD_SRC := $(LIB_SRC) lib/preload.c
# the library compiles ipcperm (src/perm.c) into itself; it exports the
# four calls alone (the preload library its interposers too)
LIB_DEPS = $(wildcard lib/*.h include/*.h) src/perm.c src/perm.h
LIB_CFLAGS = $(ALL_CFLAGS) -fvisibility=hidden

DAEMON := $(B)/shmfs
LIBSO := $(B)/libshmfs.so.$(SOVERSION)
LIBA := $(B)/libshmfs.a
PRELOAD := $(B)/libshmfs-preload.so
UNIT_NAMES := test_table test_attach test_segmem test_perm test_pheap
UNIT := $(addprefix $(B)/,$(UNIT_NAMES))

.PHONY: all deps run stop check unit pytest install uninstall clean bench
INSTALLED := $(DAEMON) $(LIBSO) $(B)/libshmfs.so $(LIBA) $(PRELOAD) \
	$(B)/shmfs.pc
.PHONY: installed
all: $(INSTALLED) $(B)/shmfs-uninstalled.pc $(UNIT) progs
installed: $(INSTALLED)

$(B):
	mkdir -p $(B)/obj $(B)/pic

$(DAEMON): $(DAEMON_SRC) $(wildcard src/*.h include/*.h) | $(B)
	$(CC) $(ALL_CFLAGS) $(FUSE_CFLAGS) $(LDFLAGS) -o $@ $(DAEMON_SRC) \
		$(FUSE_LIBS) -lpthread

$(LIBSO): $(LIB_SRC) $(LIB_DEPS) | $(B)
	$(CC) $(LIB_CFLAGS) $(LDFLAGS) -fPIC -shared -Wl,-soname,libshmfs.so.$(SOVERSION) \
		-Wl,--version-script=lib/libshmfs.map -o $@ $(LIB_SRC) -lpthread
$(B)/libshmfs.so: $(LIBSO)
	ln -sf libshmfs.so.$(SOVERSION) $@
# One object whose hidden names are made local: a program linked with the
# archive sees the four calls and nothing of ours to clash with.
$(LIBA): $(LIB_SRC) $(LIB_DEPS) | $(B)
	rm -f $(B)/obj/lib-*.o
	for f in $(LIB_SRC); do \
		$(CC) $(LIB_CFLAGS) -c -o $(B)/obj/lib-$$(basename $$f .c).o $$f || \
		exit 1; done
	ld -r -o $(B)/obj/libshmfs.o $(B)/obj/lib-*.o
	objcopy --localize-hidden $(B)/obj/libshmfs.o
	rm -f $@ && ar rcs $@ $(B)/obj/libshmfs.o
$(PRELOAD): $(PRELOAD_SRC) $(LIB_DEPS) | $(B)
	$(CC) $(LIB_CFLAGS) $(LDFLAGS) -fPIC -shared -DSHMFS_PRELOAD -o $@ $(PRELOAD_SRC) \
		-ldl -lpthread

$(B)/test_%: tests/unit/test_%.c $(CORE_SRC) $(wildcard src/*.h tests/unit/*.h) | $(B)
	$(CC) $(ALL_CFLAGS) -Isrc -o $@ $< $(CORE_SRC) -lpthread

# Made every time: PREFIX may differ between `make` and `make install`.
.PHONY: FORCE
FORCE:
$(B)/shmfs.pc: shmfs.pc.in FORCE | $(B)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
		-e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCDIR@|$(INCDIR)|g' $< >$@

# `PKG_CONFIG_PATH=build pkg-config shmfs` before make install: pkg-config
# takes NAME-uninstalled.pc first, which names this build (with an rpath,
# so that a program built with it runs as it is) and this checkout's header.
$(B)/shmfs-uninstalled.pc: shmfs.pc.in FORCE | $(B)
	sed -e 's|@PREFIX@|$(abspath .)|g' -e 's|@VERSION@|$(VERSION)|g' \
		-e 's|@LIBDIR@|$(abspath $(B))|g' -e 's|@INCDIR@|$(abspath include)|g' \
		-e 's|^Libs: .*|& -Wl,-rpath,$${libdir}|' $< >$@

# Test and example programs: every tests/progs/*.c and examples/*.c.
PROGS := $(patsubst tests/progs/%.c,$(B)/progs/%,$(wildcard tests/progs/*.c)) \
	$(patsubst examples/%.c,$(B)/progs/%,$(wildcard examples/*.c))
# The daemon as a binary of another table format: an upgrade to it must be
# refused (tests/test_failover.py).
PROGS += $(B)/progs/shmfs_other_format
$(B)/progs/shmfs_other_format: $(DAEMON_SRC) $(wildcard src/*.h include/*.h) | $(B)
	@mkdir -p $(B)/progs
	$(CC) $(ALL_CFLAGS) -DSHMFS_TEST_OTHER_FORMAT $(FUSE_CFLAGS) $(LDFLAGS) \
		-o $@ $(DAEMON_SRC) $(FUSE_LIBS) -lpthread
.PHONY: progs
progs: $(PROGS)
$(B)/progs/%: tests/progs/%.c | $(B)
	@mkdir -p $(B)/progs
	$(CC) $(ALL_CFLAGS) -o $@ $< -lpthread
# The takeover experiment is a FUSE server built on src/takeover.c.
$(B)/progs/fuse_takeover_demo: tests/progs/fuse_takeover_demo.c src/takeover.c \
		src/takeover.h | $(B)
	@mkdir -p $(B)/progs
	$(CC) $(ALL_CFLAGS) $(FUSE_CFLAGS) -Isrc $(LDFLAGS) -o $@ $< src/takeover.c \
		$(FUSE_LIBS) -lpthread
$(B)/progs/%: examples/%.c $(LIBSO) $(B)/libshmfs.so | $(B)
	@mkdir -p $(B)/progs
	$(CC) $(ALL_CFLAGS) -o $@ $< -L$(B) -lshmfs -Wl,-rpath,$(abspath $(B))

deps:
	@sh scripts/deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/run.sh "$(MNT)"

stop:
	@sh scripts/stop.sh "$(MNT)"

# Fragments in mk/ add targets and append to CHECK_EXTRA (run by check).
CHECK_EXTRA :=
include $(wildcard mk/*.mk)

# Every stage runs, also after a failure; scripts/check.sh ends with the
# verdict line "check: N passed, M failed" and fails unless M is 0.
check: deps
	@$(MAKE) --no-print-directory all
	@MAKE='$(MAKE)' PYTHON='$(PYTHON)' sh scripts/check.sh unit pytest \
		$(CHECK_EXTRA)

unit: $(UNIT)
	@for t in $(UNIT); do echo "== $$t"; $$t || exit 1; done

pytest: all
	$(PYTHON) -m pytest -p no:cacheprovider -q $(PYTEST_ARGS) tests

# Benchmarks against the kernel's SysV shm (see bench/README.md).
BENCH_ARGS ?=
bench: deps
	@$(MAKE) --no-print-directory all
	$(PYTHON) bench/run.py $(BENCH_ARGS)

# mount -t fuse.shmfs and fstab: mount(8) runs /sbin/mount.fuse.shmfs if
# there is one, else /sbin/mount.fuse, with PATH removed; libfuse 3's
# mount.fuse3 then starts `shmfs` through /bin/sh, whose default PATH
# (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin) finds
# BINDIR for PREFIX /usr/local or /usr.  The helper link makes fuse.shmfs
# use libfuse 3's helper also where mount.fuse is missing or libfuse 2's.
# MOUNT_HELPER_DIR= (empty) installs no helper.
MOUNT_HELPER_DIR ?= /sbin
MOUNT_FUSE3 ?= /sbin/mount.fuse3
MOUNT_HELPER := mount.fuse.shmfs

install: $(INSTALLED)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) \
		$(DESTDIR)$(PCDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 \
		$(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(PRELOADDIR)
	install -m 755 $(DAEMON) $(DESTDIR)$(BINDIR)/shmfs
	install -m 755 $(LIBSO) $(DESTDIR)$(LIBDIR)/libshmfs.so.$(SOVERSION)
	ln -sf libshmfs.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libshmfs.so
	install -m 644 $(LIBA) $(DESTDIR)$(LIBDIR)/libshmfs.a
	install -m 755 $(PRELOAD) $(DESTDIR)$(PRELOADDIR)/libshmfs-preload.so
	install -m 644 include/shmfs.h $(DESTDIR)$(INCDIR)/shmfs.h
	install -m 644 $(B)/shmfs.pc $(DESTDIR)$(PCDIR)/shmfs.pc
	install -m 644 shmfs.1 $(DESTDIR)$(MANDIR)/man1/shmfs.1
	install -m 644 libshmfs.3 $(DESTDIR)$(MANDIR)/man3/libshmfs.3
	install -m 644 shmfs.7 $(DESTDIR)$(MANDIR)/man7/shmfs.7
	if [ -n "$(MOUNT_HELPER_DIR)" ]; then \
		install -d $(DESTDIR)$(MOUNT_HELPER_DIR) && \
		ln -sf $(MOUNT_FUSE3) $(DESTDIR)$(MOUNT_HELPER_DIR)/$(MOUNT_HELPER); \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/shmfs $(DESTDIR)$(LIBDIR)/libshmfs.so.$(SOVERSION) \
		$(DESTDIR)$(LIBDIR)/libshmfs.so $(DESTDIR)$(LIBDIR)/libshmfs.a \
		$(DESTDIR)$(PRELOADDIR)/libshmfs-preload.so $(DESTDIR)$(INCDIR)/shmfs.h \
		$(DESTDIR)$(PCDIR)/shmfs.pc $(DESTDIR)$(MANDIR)/man1/shmfs.1 \
		$(DESTDIR)$(MANDIR)/man3/libshmfs.3 $(DESTDIR)$(MANDIR)/man7/shmfs.7
	if [ -n "$(MOUNT_HELPER_DIR)" ]; then \
		rm -f $(DESTDIR)$(MOUNT_HELPER_DIR)/$(MOUNT_HELPER); fi

clean:
	rm -rf $(B)
