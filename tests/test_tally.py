"""Tally files (docs/attach-design.md, 3.1): one sealed memfd per session,
served as .tally/<sid>.<gen> by passthrough; only the session's process
may open it for writing, anyone may read it; nothing changes its size."""
import errno
import mmap
import os
import signal
import struct
import subprocess
import sys

import pytest

import shmfs_client as sc
from shmfs_client import IPC_CREAT, catch

KEY = 0x7a1e
STRANGER = 4242
SETPRIV = ["setpriv", "--reuid=%d" % STRANGER, "--regid=%d" % STRANGER,
           "--clear-groups"]
HEAD = struct.Struct("@II")  # magic, sid


def tally_path(m, h):
    return m.path(sc.TALLY_DIR, "%d.%d" % (h["sid"], h["gen"]))


@pytest.fixture
def mine(shmfs):
    """A client and the path of its session's tally."""
    c = shmfs.client()
    yield c, tally_path(shmfs, c.hello())
    c.close()


def errname(e):
    return errno.errorcode[e.errno]


def test_tally_is_a_sealed_page_named_by_its_session(shmfs, mine):
    c, path = mine
    h = c.hello()
    st = os.stat(path)
    assert st.st_size == sc.TALLY_SIZE and oct(st.st_mode & 0o777) == "0o644"
    fd = os.open(path, os.O_RDWR)
    try:
        assert HEAD.unpack(os.pread(fd, HEAD.size, 0)) == (sc.TALLY_MAGIC, h["sid"])
        assert os.pread(fd, sc.TALLY_SIZE, HEAD.size) == bytes(sc.TALLY_SIZE - HEAD.size)
        # a store through the owner's mapping is what anyone reads
        with mmap.mmap(fd, sc.TALLY_SIZE) as mm:
            mm[64:72] = b"counted!"
        ro = os.open(path, os.O_RDONLY)
        assert os.pread(ro, 8, 64) == b"counted!"
        os.close(ro)
    finally:
        os.close(fd)
    # the directory lists nothing, and other names find nothing
    assert os.listdir(shmfs.path(sc.TALLY_DIR)) == []
    for bad in ("%d.%d" % (h["sid"], h["gen"] + 1), "%d" % h["sid"],
                "0.%d" % h["gen"], "0%d.%d" % (h["sid"], h["gen"]), "x.y"):
        assert catch(os.stat, shmfs.path(sc.TALLY_DIR, bad)) == "ENOENT", bad


def test_only_the_sessions_process_opens_its_tally_for_writing(shmfs, mine):
    c, path = mine
    # another process of the same user, root here
    code = ("import os, sys\n"
            "for flags in (os.O_RDWR, os.O_WRONLY, os.O_RDONLY):\n"
            "    try:\n"
            "        os.close(os.open(sys.argv[1], flags))\n"
            "        print('ok')\n"
            "    except OSError as e:\n"
            "        print(e.errno)\n")
    r = subprocess.run([sys.executable, "-c", code, path],
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == [str(errno.EACCES), str(errno.EACCES), "ok"]
    r = subprocess.run(SETPRIV + [sys.executable, "-c", code, path],
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == [str(errno.EACCES), str(errno.EACCES), "ok"]
    # a read-only open cannot be mapped writable
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as e:
            mmap.mmap(fd, sc.TALLY_SIZE, mmap.MAP_SHARED,
                      mmap.PROT_READ | mmap.PROT_WRITE)
        assert errname(e.value) == "EACCES"
    finally:
        os.close(fd)


def test_nothing_changes_a_tallys_size(shmfs, mine):
    c, path = mine
    fd = os.open(path, os.O_RDWR)
    try:
        for size in (0, sc.TALLY_SIZE + 1, sc.TALLY_SIZE * 4):
            with pytest.raises(OSError) as e:
                os.ftruncate(fd, size)
            assert errname(e.value) in ("EPERM", "EACCES"), size
        with pytest.raises(OSError):
            os.truncate(path, 0)
        with pytest.raises(OSError) as e:
            os.posix_fallocate(fd, 0, sc.TALLY_SIZE * 2)
        assert errname(e.value) in ("EPERM", "ENOTSUP", "EOPNOTSUPP"), e.value
        with pytest.raises(OSError) as e:
            os.pwrite(fd, b"x", sc.TALLY_SIZE)
        assert errname(e.value) == "EPERM"
        assert catch(os.open, path, os.O_RDWR | os.O_TRUNC) == "EPERM"
        with pytest.raises(OSError):
            os.chmod(path, 0o666)
    finally:
        os.close(fd)
    assert os.stat(path).st_size == sc.TALLY_SIZE


def test_hostile_values_in_a_tally_change_nothing_of_others(shmfs, mine):
    c, path = mine
    other = shmfs.client()
    try:
        shmid = other.shmget(KEY, 4096, IPC_CREAT | 0o666)
        a = other.attach(shmid)
        b = c.attach(shmid)
        fd = os.open(path, os.O_RDWR)
        try:
            with mmap.mmap(fd, sc.TALLY_SIZE) as mm:
                for fill in (b"\xff", b"\x7f", b"\x80", b"\x00"):
                    mm[:] = fill * sc.TALLY_SIZE
                    assert other.stat(shmid)["nattch"] == 2
                    assert c.stat(shmid)["nattch"] == 2
                mm[:] = b"\xff" * sc.TALLY_SIZE
        finally:
            os.close(fd)
        b.detach()
        assert other.stat(shmid)["nattch"] == 1
        a.detach()
        assert other.stat(shmid)["nattch"] == 0
        assert len(sc.read_status(shmfs.root).splitlines()) == 2
        other.rmid(shmid)
    finally:
        other.close()
    # the session's end takes its tally's name with it
    h = c.hello()
    c.close()
    assert catch(os.stat, path) == "ENOENT"
    t = sc.Table(shmfs.table)
    try:
        assert t.session(h["sid"]) == (0, 0)
    finally:
        t.close()


def test_a_mapping_outlives_its_session_without_sigbus(shmfs, mine):
    c, path = mine
    fd = os.open(path, os.O_RDONLY)
    mm = mmap.mmap(fd, sc.TALLY_SIZE, mmap.MAP_SHARED, mmap.PROT_READ)
    os.close(fd)
    c.close()
    assert mm[:4] == struct.pack("@I", sc.TALLY_MAGIC)
    mm.close()


def test_without_passthrough_a_tally_cannot_be_opened(shmfs_factory):
    """Nothing serves a tally's bytes on the arena data path yet: its open
    says so, and sessions work as before."""
    m = shmfs_factory(["-o", "no_passthrough"])
    c = m.client()
    path = tally_path(m, c.hello())
    assert os.stat(path).st_size == sc.TALLY_SIZE
    assert catch(os.open, path, os.O_RDONLY) in ("ENOTSUP", "EOPNOTSUPP")
    shmid = c.shmget(KEY, 4096, IPC_CREAT | 0o600)
    with c.attach(shmid):
        assert c.stat(shmid)["nattch"] == 1
    c.close()
