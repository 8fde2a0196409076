"""Where a segment's memory lives (shmfs.1, DATA PATHS): a sealed memfd of
its own that the kernel serves directly (FUSE passthrough), or a range of
the daemon's arena served through the page cache (-o no_passthrough)."""

import os
import sys
import textwrap

import pytest

import shmfs_client as sc
import stress
from conftest import DATA_PATHS, kill_daemon_under
from shmfs_client import IPC_CREAT, IPC_PRIVATE

PAGE = sc.PAGE_SIZE
MIB = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))


def requests(m):
    text = os.getxattr(m.root, "user.shmfs.requests").decode()
    return dict((k, int(v)) for k, v in
                (line.split() for line in text.splitlines() if line.strip()))


def rss_kb(pid, field="RssAnon:"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def daemon_data_kb(pid):
    """What of the daemon's resident memory could hold segment data: its
    anonymous memory and the shared memory (memfds) it has mapped.  Under
    valgrind or ASan (stress.instrumented) anonymous memory also holds
    their shadow memory and translations, which grew 9 MiB in a
    check-valgrind run where the daemon received no byte of data: there,
    the memfd pages alone."""
    shmem = rss_kb(pid, "RssShmem:")
    return shmem if stress.instrumented(pid) else shmem + rss_kb(pid)


def test_memory_lives_where_the_data_path_says(shmfs_each_path):
    m = shmfs_each_path
    c = m.client()
    shmid = c.shmget(IPC_PRIVATE, 3 * PAGE, 0o600)
    with c.attach(shmid) as a:
        a.write(0, b"x" * (2 * PAGE))
    st = m.stats()
    if m.data_path == "passthrough":
        assert (st["passthrough"], st["arena"]) == (1, 0), st
    else:
        assert (st["passthrough"], st["arena"]) == (0, 1), st
    assert st["memory"] == 2 * PAGE, st
    assert st["unmeasured"] == 0
    c.rmid(shmid)
    # the detached mapping's file goes at its RELEASE, asynchronous
    st = m.stats_when(handles=0, passthrough=0, arena=0, memory=0)
    assert (st["passthrough"], st["arena"], st["memory"]) == (0, 0, 0), st


def test_passthrough_holds_the_data_once_and_the_daemon_sees_none(shmfs):
    """Stores, write-back and cat never reach the daemon: the kernel serves
    them from the segment's memfd, and the daemon's own memory does not
    grow with the data."""
    size = 16 * MIB
    c = shmfs.client()
    shmid = c.shmget(0xDA7B, size, IPC_CREAT | 0o600)
    rss0 = daemon_data_kb(shmfs.proc.pid)
    before = requests(shmfs)
    pattern = bytes(range(256)) * (size // 256)
    with c.attach(shmid) as a:
        a.write(0, pattern)
    with open(shmfs.id_path(shmid), "rb") as f:
        assert f.read() == pattern
    with open(shmfs.id_path(shmid), "r+b") as f:
        f.seek(MIB)
        f.write(b"written")
    with c.attach(shmid, rdonly=True) as a:
        assert a.read(MIB, 7) == b"written"
    after = requests(shmfs)
    assert after.get("read", 0) == before.get("read", 0)
    assert after.get("write", 0) == before.get("write", 0)
    assert shmfs.stats()["memory"] == size
    assert daemon_data_kb(shmfs.proc.pid) - rss0 < 4096, \
        "daemon grew with the data"


@pytest.mark.parametrize("data_path", ["passthrough", "arena"])
def test_bytes_past_segsz_in_the_last_page(shmfs_factory, data_path):
    """The kernel keeps stores past shm_segsz in the last page (its shm file
    is that size, the page whole); so does passthrough.  The arena's page
    cache writes back only up to shm_segsz (a known difference)."""
    m = shmfs_factory(DATA_PATHS[data_path])
    c = m.client()
    shmid = c.shmget(IPC_PRIVATE, 100, 0o600)
    with c.attach(shmid) as a:
        a.write(95, b"0123456789")
    with c.attach(shmid) as a:
        kept = a.read(95, 10)
    with open(m.id_path(shmid), "rb") as f:
        assert f.read()[95:] == b"01234"
    if data_path == "passthrough":
        assert kept == b"0123456789"
    else:
        assert kept == b"01234" + bytes(5)


CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, %(here)r)
    import shmfs_client as sc
    a = sc.attach(%(root)r, %(shmid)d)
    a.write(0, b"first page")
    print("attached", flush=True)
    sys.stdin.readline()          # the daemon is killed meanwhile
    pages = %(pages)d
    for i in range(pages):        # every page, most never touched before
        a.write(i * %(page)d + 16, i.to_bytes(4, "little"))
    assert a.read(0, 10) == b"first page"
    assert all(int.from_bytes(a.read(i * %(page)d + 16, 4), "little") == i
               for i in range(pages))
    print("ok", flush=True)
""")


def test_passthrough_mapping_outlives_the_daemon(shmfs_factory):
    """Killed daemon: an attached process keeps all of its segment, pages
    never touched before included (the mapping holds the memfd)."""
    m = shmfs_factory()
    c = m.client()
    pages = 256
    shmid = c.shmget(IPC_PRIVATE, pages * PAGE, 0o600)
    with c.attach(shmid):  # its memory is made at the first open
        pass
    assert m.stats()["passthrough"] == 1
    c.close()
    code = CHILD % {"here": HERE, "root": m.root, "shmid": shmid,
                    "pages": pages, "page": PAGE}
    rc, out, err = kill_daemon_under(m, [sys.executable, "-c", code],
                                     "attached\n")
    assert rc == 0, err
    assert out == "ok\n"
