"""The daemon's command line: -V, -h, mount options, bad values (exit 2, one
line on stderr, nothing mounted), -s, -d, clean unmount; and the client's
struct layout against include/shmfs_proto.h."""

import os
import shutil
import subprocess
import tempfile
import time

import pytest

import conftest
import shmfs_client as sc
from shmfs_client import IPC_CREAT, IPC_PRIVATE, catch


def daemon():
    if not os.path.exists(conftest.DAEMON):
        pytest.fail("daemon not built: %s" % conftest.DAEMON)
    return conftest.DAEMON


def run_daemon(args, timeout=10):
    return subprocess.run([daemon()] + args, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_version_option_prints_version():
    for opt in ("-V", "--version"):
        r = run_daemon([opt])
        assert r.returncode == 0, r.stderr
        out = r.stdout + r.stderr
        assert "shmfs version 0.1.0" in out
        assert "FUSE" in out or "fuse" in out


def test_help_option_prints_usage_with_limits():
    for opt in ("-h", "--help"):
        r = run_daemon([opt])
        assert r.returncode == 0, r.stderr
        out = r.stdout + r.stderr
        assert "usage" in out.lower()
        for name in ("shmmax", "shmmin", "shmmni", "shmseg", "shmall", "allow_other"):
            assert name in out, name


@pytest.mark.parametrize("opt,name", [
    ("shmmax=abc", "shmmax"),
    ("shmmax=", "shmmax"),
    ("shmmax=99999999999999999999999", "shmmax"),
    ("shmmax=-5", "shmmax"),
    ("shmmin=1.5", "shmmin"),
    ("shmmni=40000", "shmmni"),
    ("shmmni=32769", "shmmni"),
    ("shmmni=-1", "shmmni"),
    ("shmmni=4x", "shmmni"),
    ("shmseg=x", "shmseg"),
    ("shmall=12k", "shmall"),
    ("shmall=-1", "shmall"),
])
def test_bad_option_value_exits_2_with_one_line_and_mounts_nothing(opt, name):
    mnt = tempfile.mkdtemp(prefix="shmfs-badopt-")
    try:
        t0 = time.monotonic()
        r = run_daemon(["-f", "-o", "allow_other", "-o", opt, mnt])
        assert time.monotonic() - t0 < 5
        assert r.returncode == 2, (r.returncode, r.stderr)
        lines = r.stderr.splitlines()
        assert len(lines) == 1, r.stderr
        assert name in lines[0]
        assert r.stdout == ""
        assert not conftest.ismounted(mnt)
        assert os.listdir(mnt) == []
    finally:
        if conftest.ismounted(mnt):
            subprocess.run(["fusermount3", "-uz", mnt])
        os.rmdir(mnt)


def test_bad_option_value_without_foreground_also_exits_2():
    mnt = tempfile.mkdtemp(prefix="shmfs-badopt-")
    try:
        r = run_daemon(["-o", "shmmni=abc", mnt])
        assert r.returncode == 2
        assert len(r.stderr.splitlines()) == 1
        assert not conftest.ismounted(mnt)
    finally:
        if conftest.ismounted(mnt):
            subprocess.run(["fusermount3", "-uz", mnt])
        os.rmdir(mnt)


def test_missing_mountpoint_fails_without_mounting():
    r = run_daemon(["-f"])
    assert r.returncode != 0
    assert r.stderr.strip()


def test_largest_values_are_accepted(shmfs_factory):
    m = shmfs_factory(["-o", "shmmni=32768,shmmax=18446744073692774399,"
                       "shmall=18446744073692774399,shmseg=32768,shmmin=1"])
    info = m.client().info()
    assert info["shmmni"] == 32768
    assert info["shmmax"] == 18446744073692774399
    assert info["shmall"] == 18446744073692774399
    assert info["shmseg"] == 32768


def test_limits_given_as_separate_o_options(shmfs_factory):
    m = shmfs_factory(["-o", "shmmni=5", "-o", "shmseg=3", "-o", "shmmin=2"])
    info = m.client().info()
    assert (info["shmmni"], info["shmseg"], info["shmmin"]) == (5, 3, 2)


def test_shmseg_defaults_to_shmmni(shmfs_factory):
    m = shmfs_factory(["-o", "shmmni=6"])
    assert m.client().info()["shmseg"] == 6


def test_mount_serves_other_users_with_allow_other(shmfs):
    r = shmfs.as_user(["ls", "-a", shmfs.root])
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split()) >= {".ctl", ".id", "status"}


def test_mount_is_a_fuse_mount_without_default_permissions(shmfs):
    with open("/proc/self/mountinfo") as f:
        rows = [l.split() for l in f
                if conftest.mountinfo_unescape(l.split()[4]) == shmfs.root]
    assert len(rows) == 1
    row = rows[0]
    sep = row.index("-")
    fstype, opts = row[sep + 1], row[sep + 3]
    assert fstype.startswith("fuse")
    assert "allow_other" in opts
    assert "default_permissions" not in opts


def test_single_threaded_mode_works(shmfs_factory):
    m = shmfs_factory(["-s"])
    c = m.client()
    shmid = c.shmget(0x51, 4096, IPC_CREAT | 0o600)
    with c.attach(shmid) as a:
        a.write(0, b"single")
        assert c.stat(shmid)["nattch"] == 1
    with open(m.id_path(shmid), "rb") as f:
        assert f.read(6) == b"single"


def test_debug_mode_works(shmfs_factory):
    m = shmfs_factory(["-d"])
    m.allow_stderr(r".*")  # libfuse's request log
    c = m.client()
    shmid = c.shmget(IPC_PRIVATE, 4096, 0o600)
    assert c.stat(shmid)["segsz"] == 4096


def test_unmount_while_idle_exits_daemon_with_status_0(shmfs_factory):
    m = shmfs_factory()
    m.expect_exit = 0
    c = m.client()
    c.shmget(IPC_PRIVATE, 4096, 0o600)
    c.close()
    r = subprocess.run(["fusermount3", "-u", m.root], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert m.proc.wait(timeout=10) == 0
    assert not conftest.ismounted(m.root)


def test_unmount_with_attached_segment_is_busy_then_lazy_works(shmfs_factory):
    m = shmfs_factory()
    m.expect_exit = 0
    c = m.client()
    shmid = c.shmget(IPC_PRIVATE, 4096, 0o600)
    a = c.attach(shmid)
    a.write(0, b"still")
    r = subprocess.run(["fusermount3", "-u", m.root], capture_output=True, text=True)
    assert r.returncode != 0
    assert m.alive()
    r = subprocess.run(["fusermount3", "-uz", m.root], capture_output=True, text=True)
    assert r.returncode == 0
    # the detached mount still serves the mapping and the session
    assert a.read(0, 5) == b"still"
    assert c.stat(shmid)["nattch"] == 1
    a.detach()
    assert c.stat(shmid)["nattch"] == 0
    c.close()
    assert m.proc.wait(timeout=10) == 0


def test_daemon_killed_without_failover_is_noticed_by_clients(shmfs_factory):
    m = shmfs_factory(["-o", "no_failover"])
    assert os.getxattr(m.root, "user.shmfs.holder_pid") == b"0"
    m.expect_exit = -9
    m.proc.kill()
    m.proc.wait()
    if m.table:  # a killed daemon cannot remove its table; we do
        try:
            os.unlink(m.table)
        except FileNotFoundError:
            pass
    assert catch(os.stat, m.path(".ctl")) == "ENOTCONN"


def test_client_structs_match_the_c_header(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    inc = os.path.join(conftest.REPO, "include")
    src = tmp_path / "layout.c"
    src.write_text(r'''
#include <stdio.h>
#include <stddef.h>
#include "shmfs_proto.h"
#define P(x) printf("%s %lu\n", #x, (unsigned long)(x))
int main(void) {
	P(sizeof(struct shmfs_hello)); P(sizeof(struct shmfs_get));
	P(sizeof(struct shmfs_ds)); P(sizeof(struct shmfs_info));
	P(sizeof(struct shmfs_shm_info)); P(sizeof(struct shmfs_ctl));
	P(sizeof(struct shmfs_fork)); P(sizeof(struct shmfs_access));
	P(offsetof(struct shmfs_ds, segsz)); P(offsetof(struct shmfs_ds, cpid));
	P(offsetof(struct shmfs_ds, nattch)); P(offsetof(struct shmfs_ctl, u));
	P(offsetof(struct shmfs_get, shmid)); P(offsetof(struct shmfs_shm_info, shm_tot));
	P(SHMFS_IOC_HELLO); P(SHMFS_IOC_GET); P(SHMFS_IOC_CTL); P(SHMFS_IOC_FORK);
	P(SHMFS_IOC_FORK_CHILD); P(SHMFS_IOC_FORK_ABORT); P(SHMFS_IOC_ACCESS);
	P(SHMFS_IOC_DETACH); P(sizeof(struct shmfs_detach)); P(SHMFS_IOC_SESSION);
	P(sizeof(struct shmfs_table_entry)); P(offsetof(struct shmfs_table, entries));
	P(offsetof(struct shmfs_table_entry, perm_gen)); P(offsetof(struct shmfs_table_entry, base));
	P(offsetof(struct shmfs_table_entry, base_lpid)); P(offsetof(struct shmfs_table_entry, holders));
	P(offsetof(struct shmfs_table, sessions)); P(offsetof(struct shmfs_table, holders));
	P(sizeof(struct shmfs_table_session)); P(sizeof(struct shmfs_table_holder));
	P(sizeof(struct shmfs_table)); P(SHMFS_TABLE_SESSIONS); P(SHMFS_TABLE_HOLDERS);
	P(offsetof(struct shmfs_hello, sid)); P(offsetof(struct shmfs_hello, gen));
	P(SHMFS_TABLE_MAGIC); P(SHMFS_TABLE_VERSION); P(SHMFS_TABLE_BUCKETS);
	P(SHMFS_ATTACH_FLAGS); P(SHMFS_ID_SHIFT); P(SHMFS_PROTO_VERSION);
	return 0;
}
''')
    exe = tmp_path / "layout"
    subprocess.run([cc, "-D_GNU_SOURCE", "-I", inc, "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    got = dict(l.rsplit(" ", 1) for l in out.splitlines())
    got = {k: int(v) for k, v in got.items()}
    want = {
        "sizeof(struct shmfs_hello)": sc.HELLO.size,
        "sizeof(struct shmfs_get)": sc.GET.size,
        "sizeof(struct shmfs_ds)": sc.DS.size,
        "sizeof(struct shmfs_info)": sc.INFO.size,
        "sizeof(struct shmfs_shm_info)": sc.SHM_INFO_S.size,
        "sizeof(struct shmfs_ctl)": sc.CTL_SIZE,
        "sizeof(struct shmfs_fork)": sc.FORK.size,
        "sizeof(struct shmfs_access)": sc.ACCESS.size,
        "offsetof(struct shmfs_ds, segsz)": 32,
        "offsetof(struct shmfs_ds, cpid)": 64,
        "offsetof(struct shmfs_ds, nattch)": 72,
        "offsetof(struct shmfs_ctl, u)": sc.CTL_HEAD.size,
        "offsetof(struct shmfs_get, shmid)": 16,
        "offsetof(struct shmfs_shm_info, shm_tot)": 8,
        "SHMFS_IOC_HELLO": sc.IOC_HELLO,
        "SHMFS_IOC_GET": sc.IOC_GET,
        "SHMFS_IOC_CTL": sc.IOC_CTL,
        "SHMFS_IOC_FORK": sc.IOC_FORK,
        "SHMFS_IOC_FORK_CHILD": sc.IOC_FORK_CHILD,
        "SHMFS_IOC_FORK_ABORT": sc.IOC_FORK_ABORT,
        "SHMFS_IOC_ACCESS": sc.IOC_ACCESS,
        "SHMFS_IOC_DETACH": sc.IOC_DETACH,
        "SHMFS_IOC_SESSION": sc.IOC_SESSION,
        "sizeof(struct shmfs_detach)": sc.DETACH.size,
        "sizeof(struct shmfs_table_entry)": sc.TABLE_ENTRY_SIZE,
        "offsetof(struct shmfs_table, entries)": sc.TABLE_ENTRIES_OFF,
        "offsetof(struct shmfs_table_entry, perm_gen)": 12,
        "offsetof(struct shmfs_table_entry, base)": sc.TABLE_ENTRY_HEAD.size + sc.DS.size,
        "offsetof(struct shmfs_table_entry, base_lpid)": sc.TABLE_ENTRY_HEAD.size + sc.DS.size + 16,
        "offsetof(struct shmfs_table_entry, holders)": sc.TABLE_ENTRY_SIZE - 4,
        "offsetof(struct shmfs_table, sessions)": sc.TABLE_SESSIONS_OFF,
        "offsetof(struct shmfs_table, holders)": sc.TABLE_HOLDERS_OFF,
        "sizeof(struct shmfs_table_session)": sc.TABLE_SESSION.size,
        "sizeof(struct shmfs_table_holder)": sc.TABLE_HOLDER.size,
        "sizeof(struct shmfs_table)": sc.TABLE_SIZE,
        "SHMFS_TABLE_SESSIONS": sc.TABLE_SESSIONS,
        "SHMFS_TABLE_HOLDERS": sc.TABLE_HOLDERS,
        "offsetof(struct shmfs_hello, sid)": 12,
        "offsetof(struct shmfs_hello, gen)": 16,
        "SHMFS_TABLE_MAGIC": sc.TABLE_MAGIC,
        "SHMFS_TABLE_VERSION": sc.TABLE_VERSION,
        "SHMFS_TABLE_BUCKETS": sc.TABLE_BUCKETS,
        "SHMFS_ATTACH_FLAGS": sc.ATTACH_FLAGS,
        "SHMFS_ID_SHIFT": sc.ID_SHIFT,
        "SHMFS_PROTO_VERSION": sc.PROTO_VERSION,
    }
    assert got == want


def test_two_mounts_are_independent(shmfs_factory):
    m1 = shmfs_factory(["-o", "shmmni=3"])
    m2 = shmfs_factory()
    c1, c2 = m1.client(), m2.client()
    a = c1.shmget(0x77, 4096, IPC_CREAT | 0o600)
    assert catch(c2.shmget, 0x77, 4096, 0) == "ENOENT"
    b = c2.shmget(0x77, 8192, IPC_CREAT | 0o600)
    assert c1.stat(a)["segsz"] == 4096 and c2.stat(b)["segsz"] == 8192
    assert c1.info()["shmmni"] == 3 and c2.info()["shmmni"] != 3
    with c1.attach(a) as x, c2.attach(b) as y:
        x.write(0, b"one")
        y.write(0, b"two")
        assert x.read(0, 3) == b"one" and y.read(0, 3) == b"two"
