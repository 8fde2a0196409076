"""What a stranger (uid 4242, in none of root's groups) can get out of the
daemon's views of root's segments (issue 11, findings 4, 9, 10, 11, 12):
the status file, the published table, the xattrs, truncate(2), and the
library's trust in its environment and in the table it maps.

Each test attacks root's segments from the stranger's side and asserts the
structural property the fix gives, never a time.
"""

import ctypes
import errno
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

import pytest

import shmfs_client as sc
from conftest import BUILD, run_as_user
from shmfs_client import IPC_CREAT

STRANGER = 4242
KEY = 0x0BADF00D


def as_stranger(argv, **kw):
    return run_as_user(argv, uid=STRANGER, gid=STRANGER, **kw)


def stranger_py(code, *args, **kw):
    """Run Python code as the stranger; its stdout, stripped."""
    r = as_stranger([sys.executable, "-c", code] + [str(a) for a in args],
                    **kw)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


# -- finding 9: the published table forgets a freed segment -------------------

def test_freed_segment_leaves_nothing_in_the_published_table(shmfs, client):
    assert shmfs.table, "the daemon publishes no table"
    assert os.stat(shmfs.table).st_mode & 0o004  # anyone may read it
    t = sc.Table(shmfs.table)
    try:
        for attached in (False, True):
            shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
            slot = sc.slot_of(shmid)
            a = client.attach(shmid)
            if not attached:
                a.detach()
            e = t.entry(slot)
            assert e["live"] == 1 and e["ds"]["shmid"] == shmid
            assert e["ds"]["cpid"] == os.getpid() and e["ds"]["atime"]
            client.rmid(shmid)
            if attached:
                assert t.entry(slot)["live"] == 1  # SHM_DEST, still there
                a.detach()
            e = t.entry(slot)
            assert e["live"] == 0 and e["key_next"] == 0
            assert e["ds"] == dict.fromkeys(sc.DS_FIELDS, 0), e["ds"]
            # what a stranger reads of the file is the same
            raw = stranger_py(
                "import os, sys\n"
                "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
                "print(os.pread(fd, int(sys.argv[2]), int(sys.argv[3])).hex())",
                shmfs.table, sc.TABLE_ENTRY_SIZE,
                sc.TABLE_ENTRIES_OFF + slot * sc.TABLE_ENTRY_SIZE)
            assert bytes.fromhex(raw)[4:] == bytes(sc.TABLE_ENTRY_SIZE - 4)
    finally:
        t.close()


# -- finding 10: who may read which xattr -------------------------------------

def test_stranger_reads_no_pids_and_no_daemon_counters(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o644)  # anyone may read
    theirs = client.shmget(KEY + 1, 4096, IPC_CREAT | 0o600)
    client.set(theirs, STRANGER, STRANGER, 0o600)  # the stranger owns it
    a = client.attach(shmid)
    b = client.attach(theirs)
    seg, own = shmfs.id_path(shmid), shmfs.id_path(theirs)
    me = "%d:1" % os.getpid()
    res, r = shmfs.script(
        ["getxattr", shmfs.root, "user.shmfs.stats"],
        ["getxattr", shmfs.root, "user.shmfs.requests"],
        ["getxattr", seg, "user.shm.pids"],
        ["getxattr", seg, "user.shm.cpid"],
        ["getxattr", seg, "user.shm.nattch"],
        ["getxattr", own, "user.shm.pids"],
        uid=STRANGER)
    assert res == ["EACCES", "EACCES", "EACCES", str(os.getpid()), "1", me], \
        r.stderr
    # nor are those names listed to the stranger
    listed = stranger_py(
        "import os, sys\n"
        "for p in sys.argv[1:]: print('L', *sorted(os.listxattr(p)))",
        shmfs.root, seg, own).splitlines()
    listed = [line[2:] for line in listed]
    assert listed[0] == ""
    assert "user.shm.pids" not in listed[1].split()
    assert "user.shm.cpid" in listed[1].split()
    assert "user.shm.pids" in listed[2].split()
    assert "user.shm.pids" in os.listxattr(seg)
    assert "user.shmfs.stats" in os.listxattr(shmfs.root)
    # root reads everything
    assert os.getxattr(seg, "user.shm.pids").decode() == me
    assert b"shmids 2\n" in os.getxattr(shmfs.root, "user.shmfs.stats")
    assert os.getxattr(shmfs.root, "user.shmfs.requests").startswith(b"lookup ")
    # the creator stays an owner after giving the segment away
    made, _ = shmfs.script(["get", KEY + 2, 4096, "1600"], uid=STRANGER)
    client.set(made[0], 0, 0, 0o600)
    with client.attach(made[0]):
        res, _ = shmfs.script(
            ["getxattr", shmfs.id_path(made[0]), "user.shm.pids"],
            uid=STRANGER)
    assert res == [me]
    a.detach()
    b.detach()


# -- finding 11: truncate checks permission first -----------------------------

TRUNCATE = r"""
import os, sys, errno
try:
    os.truncate(sys.argv[1], int(sys.argv[2]))
    print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])
"""


def test_truncate_to_own_size_needs_write_permission(shmfs, client):
    size = 4097
    segs = {mode: client.shmget(KEY + mode, size, IPC_CREAT | mode)
            for mode in (0o600, 0o644, 0o666)}
    before = {m: client.stat(s) for m, s in segs.items()}

    def trunc(mode, n):
        return stranger_py(TRUNCATE, shmfs.seg_path(KEY + mode, segs[mode]), n)

    assert trunc(0o600, size) == "EACCES"
    assert trunc(0o644, size) == "EACCES"
    assert trunc(0o666, size) == "OK"
    # other sizes: EPERM, whoever asks (a segment never changes size)
    assert trunc(0o600, 0) == "EPERM"
    assert trunc(0o666, size + 1) == "EPERM"
    os.truncate(shmfs.seg_path(KEY + 0o600, segs[0o600]), size)  # root may
    assert {m: client.stat(s) for m, s in segs.items()} == before

