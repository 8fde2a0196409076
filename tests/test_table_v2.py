"""The published table's version 2 fields (docs/attach-design.md, 3.2):
perm_gen, base, holders and sessions, as the daemon writes them."""
import os
import subprocess
import sys

import pytest

import shmfs_client as sc
from shmfs_client import IPC_CREAT

KEY = 0x1714


@pytest.fixture
def table(shmfs):
    if not shmfs.table:
        pytest.skip("the daemon publishes no table on this host")
    t = sc.Table(shmfs.table)
    yield t
    t.close()


def test_table_file_is_the_v2_layout(shmfs, table):
    assert table.header()["version"] == 2
    assert os.stat(shmfs.table).st_size == sc.TABLE_SIZE


def test_perm_gen_bumps_on_ipc_set_chmod_chown_only(shmfs, client, table):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    slot = sc.slot_of(shmid)
    e = table.entry(slot)
    g0, seq0 = e["perm_gen"], e["seq"]
    # no holders and no base: nothing counts there yet
    assert (e["base"], e["base_lpid"], e["base_stamp"], e["holders"]) == (0, 0, 0, 0)

    # attach, detach, IPC_STAT, SHM_LOCK change the entry, not perm_gen
    with client.attach(shmid):
        pass
    client.stat(shmid)
    client.lock(shmid)
    client.unlock(shmid)
    e = table.entry(slot)
    assert e["perm_gen"] == g0 and e["seq"] > seq0

    client.set(shmid, os.getuid(), os.getgid(), 0o640)
    e = table.entry(slot)
    assert e["perm_gen"] == g0 + 1 and e["ds"]["mode"] & 0o777 == 0o640
    os.chmod(shmfs.id_path(shmid), 0o600)
    assert table.entry(slot)["perm_gen"] == g0 + 2
    os.chown(shmfs.id_path(shmid), 4242, -1)
    e = table.entry(slot)
    assert e["perm_gen"] == g0 + 3 and e["ds"]["uid"] == 4242

    # a refused change changes nothing
    r = shmfs.as_user(["chmod", "0666", shmfs.id_path(shmid)])
    assert r.returncode != 0
    assert table.entry(slot)["perm_gen"] == g0 + 3

    # the shmid's end clears the entry's v2 fields with the rest
    client.rmid(shmid)
    e = table.entry(slot)
    assert (e["live"], e["perm_gen"], e["base"], e["holders"]) == (0, 0, 0, 0)


CHMOD_LOOP = r"""
import os, sys
path, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    os.chmod(path, 0o640 if i % 2 == 0 else 0o600)
"""


def test_entry_seq_covers_perm_gen_and_mode(shmfs, client, table):
    """A reader that follows the entry's seqlock never sees a perm_gen
    of one change with the mode of another, while chmods run."""
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    slot = sc.slot_of(shmid)
    g0 = table.entry(slot)["perm_gen"]
    n = 400
    writer = subprocess.Popen([sys.executable, "-c", CHMOD_LOOP,
                               shmfs.id_path(shmid), str(n)])
    seen = set()
    try:
        while writer.poll() is None:
            e = table.entry(slot)
            assert e["seq"] % 2 == 0
            k = e["perm_gen"] - g0
            # the k-th chmod (k >= 1) set 0640 when k is odd
            want = 0o600 if k % 2 == 0 else 0o640
            assert e["ds"]["mode"] & 0o777 == want, (k, oct(e["ds"]["mode"]))
            seen.add(k)
    finally:
        writer.wait()
    assert writer.returncode == 0
    e = table.entry(slot)
    assert e["perm_gen"] == g0 + n and e["ds"]["mode"] & 0o777 == 0o600
    assert len(seen) > 1  # the reader did run alongside


def test_sessions_published_while_they_live(shmfs, table):
    c1 = shmfs.client()
    h1 = c1.hello()
    assert table.session(h1["sid"]) == (h1["gen"], os.getpid())
    c2 = shmfs.client()
    h2 = c2.hello()
    assert h2["sid"] != h1["sid"]
    assert table.session(h2["sid"]) == (h2["gen"], os.getpid())
    c1.close()
    assert table.session(h1["sid"]) == (0, 0)
    # the sid is taken again, under a later generation
    c3 = shmfs.client()
    h3 = c3.hello()
    assert h3["sid"] == h1["sid"] and h3["gen"] > h1["gen"]
    assert table.session(h3["sid"]) == (h3["gen"], os.getpid())
    c2.close()
    c3.close()
    assert table.session(h2["sid"]) == (0, 0)
    assert table.session(0) == (0, 0)



FUTEX_OWNER_DIED = 0x40000000


def keeper_word(t):
    """The table's alive word, once its keeper has set it."""
    from conftest import until
    assert until(lambda: t.header()["alive"] != 0, timeout=5)
    return t.header()


def test_keeper_word_is_the_holders_and_marks_its_death(shmfs, client, table):
    """alive holds the TID of the holder (daemon_pid); the kernel writes
    FUTEX_OWNER_DIED there as the holder dies, and from then on the
    library no longer reads the table: its IPC_STAT asks the daemon."""
    from test_tally_counts import Steps
    h = keeper_word(table)
    assert h["daemon_pid"] == shmfs.holder_pid
    assert h["alive"] == h["daemon_pid"]    # the holder has one thread
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    s = Steps(shmfs)
    try:
        s.value("stat", shmid)
        before = shmfs.requests()["ioctl"]
        assert s.value("stat", shmid) == 0
        assert shmfs.requests()["ioctl"] == before      # from the table
        shmfs.kill_holder()
        assert table.header()["alive"] == FUTEX_OWNER_DIED
        assert s.value("stat", shmid) == 0
        assert shmfs.requests()["ioctl"] == before + 1  # asked
    finally:
        s.close()


def test_keeper_word_without_a_holder_is_a_daemon_thread(shmfs_factory):
    import signal
    m = shmfs_factory(["-o", "no_failover"])
    if not m.table:
        pytest.skip("the daemon publishes no table on this host")
    t = sc.Table(m.table)
    try:
        h = keeper_word(t)
        pid = h["daemon_pid"]
        assert pid == m.proc.pid
        with open("/proc/%d/task/%d/comm" % (pid, h["alive"])) as f:
            assert f.read().strip() == "shmfs-alive"
        m.expect_exit = -signal.SIGKILL
        m.proc.kill()
        m.proc.wait(timeout=10)
        assert t.header()["alive"] == FUTEX_OWNER_DIED
    finally:
        t.close()
