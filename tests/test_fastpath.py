"""shmat and shmdt without a request (docs/attach-design.md 4.2, 4.3, 4.7,
4.8; steps 4, 5 and 8 of section 11): after the first shmat of a segment
in a mode, which opens .id/<shmid> and is checked by the daemon, the
library keeps the descriptor; later shmat calls map it and count in the
process's tally, shmdt calls take from there.  What must stay true: the
counts, times and lpid every reader gives, the permission check after a
chmod, chown or IPC_SET, the free of a removed segment at its last
detach, and a program that closes every descriptor."""
import os
import time

import pytest

import shmfs_client as sc
from conftest import sysv_now
from test_tally_counts import (KEY, Steps, counts, holders,  # noqa: F401
                               hostile_client, own, steps)
from test_table_v2 import table  # noqa: F401 (a fixture)

# requests that an attach or a detach would make
CROSSING = ("lookup", "open", "release", "ioctl", "getattr", "flush")


def crossing(m):
    r = m.requests()
    return dict((k, r.get(k, 0)) for k in CROSSING)


def test_attach_and_detach_after_the_first_make_no_request(shmfs, steps):
    s = steps()
    shmid = s.value("get", KEY)
    s("at", shmid)
    s("dt")
    before = crossing(shmfs)
    for _ in range(50):
        s("at", shmid)
        s("at", shmid)
        assert s.value("stat", shmid) == 2
        s("dt")
        s("dt")
    assert crossing(shmfs) == before
    assert counts(shmfs, shmid, s) == [0] * 4


def test_read_only_and_read_write_keep_a_descriptor_each(shmfs, steps):
    s = steps()
    shmid = s.value("get", KEY)
    s("at", shmid)
    s("atro", shmid)
    before = crossing(shmfs)
    s("atro", shmid)
    s("at", shmid)
    assert crossing(shmfs) == before
    assert counts(shmfs, shmid, s) == [4] * 4
    for _ in range(4):
        s("dt")
    assert counts(shmfs, shmid, s) == [0] * 4


def test_a_mode_change_makes_the_daemon_check_again(shmfs_factory):
    """uid 1000 attaches read-write; root's chmod to 0444 moves perm_gen,
    so its next read-write shmat is checked by the daemon, and refused,
    as on the kernel; read-only still works.  chown and IPC_SET the same."""
    m = shmfs_factory([])
    c = sc.Client(m.root)
    s = Steps(m, ["setpriv", "--reuid=1000", "--regid=1000",
                  "--clear-groups"])
    try:
        shmid = c.shmget(KEY, 4096, sc.IPC_CREAT | 0o666)
        s("at", shmid)
        s("dt")
        s("at", shmid)                  # from the kept descriptor
        os.chmod(m.id_path(shmid), 0o444)
        assert s.fails("at", shmid) == os.strerror(13)
        s("atro", shmid)
        os.chmod(m.id_path(shmid), 0o666)
        s("at", shmid)
        os.chown(m.id_path(shmid), 0, 0)  # same owner: still a change
        s("at", shmid)
        c.set(shmid, 0, 0, 0o404)
        assert s.fails("at", shmid) == os.strerror(13)
        assert counts(m, shmid, s) == [4] * 4
        for _ in range(4):
            s("dt")
        assert counts(m, shmid, s) == [0] * 4
    finally:
        s.close()
        c.close()


@pytest.mark.parametrize("order", ["rmid-first", "detach-first"])
def test_a_removed_segment_goes_at_its_last_detach(shmfs, steps, order):
    s = steps()
    shmid = s.value("get", KEY)
    s("at", shmid)                      # a ref
    s("at", shmid)                      # counted in the record
    if order == "detach-first":
        s("dt")                         # from the record, no request
        s("rmid", shmid)
        assert counts(shmfs, shmid, s) == [1] * 4
    else:
        s("rmid", shmid)
        s("dt")                         # from the record: SHM_DEST settles
        assert os.path.exists(shmfs.id_path(shmid))
        assert counts(shmfs, shmid, s) == [1] * 4
    s("dt")
    assert not os.path.exists(shmfs.id_path(shmid))


def test_the_last_detach_from_a_record_frees_a_removed_segment(shmfs, steps):
    """The ref goes first, the record's attach last: shmdt finds SHM_DEST
    and the daemon frees the id before shmdt returns."""
    s, t = steps(), steps()
    shmid = s.value("get", KEY)
    s("at", shmid)
    t("at", shmid)
    t("at", shmid)                      # t: a ref and a record's attach
    t("rmid", shmid)
    s("dt")
    # t's stack: newest (the record's) first, so free at its ref's detach
    t("dt")
    assert os.path.exists(shmfs.id_path(shmid))
    t("dt")
    assert not os.path.exists(shmfs.id_path(shmid))


def test_times_and_lpid_of_calls_made_without_a_request(shmfs, steps):
    s, t = steps(), steps()
    shmid = s.value("get", KEY)
    s("at", shmid)
    t("at", shmid)                      # the daemon's lpid: t
    t0 = sysv_now()
    s("at", shmid)                      # s's record
    for view in (s, t):
        f = view.fields("full", shmid)
        assert f["lpid"] == s.pid and f["nattch"] == 3
        assert t0 <= f["atime"] <= sysv_now()
    assert sc.Client(shmfs.root).stat(shmid)["lpid"] == s.pid
    assert int(os.getxattr(shmfs.id_path(shmid), "user.shm.lpid")) == s.pid
    time.sleep(1.1)
    t1 = sysv_now()
    s("dt")                             # from the record
    for view in (s, t):
        f = view.fields("full", shmid)
        assert f["lpid"] == s.pid and f["nattch"] == 2
        assert t1 <= f["dtime"] <= sysv_now()
    t("dt")                             # a request: the daemon's own
    assert t.fields("full", shmid)["lpid"] == t.pid
    s("at", shmid)
    assert t.fields("full", shmid)["lpid"] == s.pid
    # the session's end keeps what its calls did
    s.close()
    f = t.fields("full", shmid)
    assert f["lpid"] == s.pid and f["nattch"] == 0


def test_a_program_that_closes_every_descriptor(shmfs, steps):
    """The kept descriptors go with the control node: the session ends
    (its records with it), and the next shmat opens again."""
    s = steps()
    shmid = s.value("get", KEY)
    s("at", shmid)
    s("at", shmid)
    s("closeall")
    # the session's end took the ref and the record's attach
    assert counts(shmfs, shmid, s) == [0] * 4
    s("at", shmid)
    s("at", shmid)
    assert counts(shmfs, shmid, s) == [2] * 4
    s("dt")
    s("dt")
    assert counts(shmfs, shmid, s) == [0] * 4


def test_a_kept_descriptor_holds_no_memory_once_its_segment_is_freed(
        shmfs_factory):
    """What libshmfs keeps after a detach, and any process may keep as
    well: an attach descriptor, with its session still running.  A writer
    exits attached, and someone else removes the segment, which is freed
    at once (nattch 0): its pages go with it, out of the memfd behind the
    kept descriptor, and out of shmall, as on the kernel.  The kept
    descriptor reads zeros after, the writer's bytes before."""
    m = shmfs_factory(["-o", "shmall=1"])
    keeper = m.client()
    shmid = keeper.shmget(KEY, 4096, sc.IPC_CREAT | 0o600)
    fd = os.open(m.id_path(shmid), os.O_RDWR | sc.ATTACH_FLAGS)
    try:
        keeper.detach_id(shmid)         # the open's attach ends; fd stays
        writer = Steps(m)
        try:
            writer("at", shmid)
            writer("put", 0x5a)
        finally:
            writer.close()              # exits attached
        assert os.pread(fd, 4096, 0) == b"\x5a" * 4096
        remover = Steps(m)
        try:
            remover("rmid", shmid)
        finally:
            remover.close()
        assert m.stats()["shmids"] == 0
        assert keeper.shm_info()["shm_tot"] == 0
        assert os.pread(fd, 4096, 0) == bytes(4096)
        keeper.shmget(sc.IPC_PRIVATE, 4096, 0o600)
    finally:
        os.close(fd)


def test_a_mapping_left_by_a_close_all_keeps_a_freed_segment(shmfs_factory):
    """A program that closed every descriptor still maps what it had
    attached, though its session (and with it its count) is over; the
    kernel's passthrough holds that mapping on the memfd, out of the
    daemon's sight.  Another process keeps an attach descriptor, and the
    segment is removed and freed: the program's bytes stay, counted
    against shmall while the kept descriptor is open."""
    m = shmfs_factory([])
    p, q = Steps(m), Steps(m)
    try:
        shmid = p.value("get", KEY)
        p("at", shmid)
        p("put", 0x5a)
        p("closeall")
        q("at", shmid)
        q("dt")                         # q keeps its descriptor
        c = m.client()
        c.rmid(shmid)
        assert m.stats()["shmids"] == 0
        assert p.value("peek") == 0x5a
        assert m.stats()["pages"] == 1
        q.close()
        assert m.stats_when(pages=0)["pages"] == 0
        assert p.value("peek") == 0x5a
    finally:
        p.close()
        q.close()


def test_attach_and_detach_racing_ipc_rmid(shmfs):
    """tests/progs/sysv_rmid_race.c: a child's shmat/shmdt loop (from the
    kept descriptor) against the parent's IPC_RMID at a random moment,
    100 rounds: each removed segment is gone once its last attach ends,
    and a shmat fails only with EINVAL once it is freed.  The same
    program on the kernel, in an IPC namespace of its own, as the
    reference.  A race, so a net with holes: a 1 ms gap put on purpose
    between the daemon's sum at IPC_RMID and its publication of SHM_DEST
    failed it in one run of two."""
    import subprocess
    from test_lib import build_dir, built, preload_env
    prog = built(build_dir(), "progs", "sysv_rmid_race")
    kernel = subprocess.run(["unshare", "--ipc", prog, "100"],
                            capture_output=True, text=True, timeout=300)
    assert kernel.stdout == "ok 100\n", kernel.stdout + kernel.stderr
    r = subprocess.run([prog, "100"], env=preload_env(build_dir(), shmfs.root),
                       capture_output=True, text=True, timeout=300)
    assert r.stdout == "ok 100\n", r.stdout + r.stderr
    assert shmfs.stats()["shmids"] == 0


def test_random_bytes_in_a_tally_move_only_its_own_counts(shmfs, steps):
    """Random stores all over a process's tally (its head, the fork slot
    area, its records): the daemon keeps answering, a segment the process holds no
    record of keeps its count, the one it holds moves within what its
    own record (and slots, were they read) can claim, and its session's
    end takes it all back."""
    import random
    rng = random.Random(14)
    s = steps()
    mine = s.value("get", KEY)
    other = s.value("get", KEY + 1)
    s("at", mine)
    s("at", other)
    c, fd, h, a = hostile_client(shmfs, mine)
    top = 2 + (1 + 8) * 0xFFFF
    try:
        for i in range(400):
            off = rng.randrange(4096)
            n = min(rng.choice((1, 2, 4, 8)), 4096 - off)
            os.pwrite(fd, bytes(rng.getrandbits(8) for _ in range(n)), off)
            if i % 40 == 39:
                assert counts(shmfs, other, s) == [1] * 4
                got = counts(shmfs, mine, s)
                assert len(set(got)) == 1 and 2 <= got[0] <= top, got
        with sc.Client(shmfs.root) as other_client:
            assert other_client.hello()["version"] == sc.PROTO_VERSION
    finally:
        a.unmap()
        os.close(fd)
        c.close()
    assert counts(shmfs, mine, s) == [1] * 4
    assert counts(shmfs, other, s) == [1] * 4
