"""Attaches counted in tallies (docs/attach-design.md, 4.2, 4.6, 5; steps 3
to 5 of section 11): an attach open of a process that has opened its
tally counts as a ref (the entry's base) and binds a record of that tally,
which the published table lists among the segment's holders; the library
keeps the descriptor, and its later shmat calls map it and count in the
record, its shmdt calls take from there, without a request; every reader
(the library's IPC_STAT from the table, the daemon's IPC_STAT, status,
user.shm.pids, IPC_RMID) sums base and the listed records, clamped."""
import os
import signal
import struct
import subprocess

import pytest

import shmfs_client as sc
from shmfs_client import IPC_CREAT
from test_failover import new_server
from test_lib import build_dir, built, preload_env
from test_table_v2 import table  # noqa: F401 (a fixture)

KEY = 0x7a1f
OWN_MAX = 65535
REC_OFF = 8 + 8 * 16        # head, fork slots
REC_SIZE = 40
U32 = struct.Struct("@I")


class Steps:
    """tests/progs/sysv_steps.c under libshmfs-preload.so: one SysV call per
    line, its answer read back before the next."""

    def __init__(self, m, pre=()):
        self.p = subprocess.Popen(
            list(pre) + [built(build_dir(), "progs", "sysv_steps")],
            env=preload_env(build_dir(), m.root), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, bufsize=1)
        self.pid = self.p.pid

    def __call__(self, *words):
        self.p.stdin.write(" ".join(str(w) for w in words) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline().strip()
        assert line and not line.startswith("FAIL"), (words, line)
        return line

    def value(self, *words):
        return int(self(*words).split()[1])

    def fields(self, *words):
        """"name value name value ..." as a dict of ints."""
        w = self(*words).split()
        return dict((w[i], int(w[i + 1])) for i in range(0, len(w), 2))

    def fails(self, *words):
        """The error of a step that must fail: "FAIL what: error"."""
        self.p.stdin.write(" ".join(str(w) for w in words) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline().strip()
        assert line.startswith("FAIL"), (words, line)
        return line.split(": ", 1)[1]

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(timeout=30)


@pytest.fixture
def steps(shmfs):
    made = []

    def make():
        s = Steps(shmfs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def holders(table, shmid):
    """[(sid, gen, rec)] listed for shmid, and its base."""
    e = table.entry(sc.slot_of(shmid))
    out, idx = [], e["holders"]
    while idx:
        sid, gen, rec, idx = table.holder(idx - 1)
        out.append((sid, gen, rec))
    return out, e["base"]


def own(m, sid, gen, rec):
    with open(m.path(sc.TALLY_DIR, "%d.%d" % (sid, gen)), "rb") as f:
        return U32.unpack(os.pread(f.fileno(), 4, REC_OFF + rec * REC_SIZE))[0]


def pids(m, shmid):
    text = os.getxattr(m.id_path(shmid), "user.shm.pids").decode()
    return dict((int(p), int(n)) for p, n in
                (w.split(":") for w in text.split())) if text else {}


def counts(m, shmid, *stats):
    """nattch as each reader gives it: the daemon's IPC_STAT, status, the
    xattr, and the library's IPC_STAT in each of the processes given."""
    c = sc.Client(m.root)
    try:
        daemon = c.stat(shmid)["nattch"]
    finally:
        c.close()
    status = [d["nattch"] for d in
              map(sc.parse_status_line, sc.read_status(m.root).splitlines()[1:])
              if d["shmid"] == shmid]
    xattr = int(os.getxattr(m.id_path(shmid), "user.shm.nattch"))
    return [daemon] + status + [xattr] + [s.value("stat", shmid)
                                          for s in stats]


def test_attach_counts_in_a_record_the_table_lists(shmfs, table, steps):
    s = steps()
    shmid = s.value("get", KEY)
    assert holders(table, shmid) == ([], 0)
    s("at", shmid)                      # the open: a ref, and the binding
    listed, base = holders(table, shmid)
    assert base == 1 and len(listed) == 1
    sid, gen, rec = listed[0]
    assert table.session(sid) == (gen, s.pid)
    assert own(shmfs, sid, gen, rec) == 0
    s("at", shmid)                      # the kept descriptor: the record
    assert own(shmfs, sid, gen, rec) == 1
    s("at", shmid)
    assert own(shmfs, sid, gen, rec) == 2
    assert holders(table, shmid) == ([(sid, gen, rec)], 1)
    assert counts(shmfs, shmid, s) == [3, 3, 3, 3]
    assert pids(shmfs, shmid) == {s.pid: 3}
    assert shmfs.stats()["attaches"] == 3
    s("dt")
    assert own(shmfs, sid, gen, rec) == 1
    s("dt")
    assert own(shmfs, sid, gen, rec) == 0
    s("dt")                             # the ref goes by request
    # the record stays bound while the session lives
    assert holders(table, shmid) == ([(sid, gen, rec)], 0)
    assert counts(shmfs, shmid, s) == [0, 0, 0, 0]
    s.close()
    assert holders(table, shmid) == ([], 0)


def test_sums_at_each_moment(shmfs, table, steps):
    """After shmat, shmdt, fork, a child's shmdt, a child's exit and a
    SIGKILL, every reader (another process's IPC_STAT included) gives the
    count of attaches that exist at that moment."""
    s, watcher = steps(), steps()
    shmid = s.value("get", KEY)
    s("at", shmid)
    assert counts(shmfs, shmid, s, watcher) == [1] * 5
    s("at", shmid)
    assert counts(shmfs, shmid, s, watcher) == [2] * 5
    s("dt")
    assert counts(shmfs, shmid, s, watcher) == [1] * 5
    s("forkexit")                       # a child that held one and exited
    assert counts(shmfs, shmid, s, watcher) == [1] * 5
    kid = s.value("fork")               # a child that holds what it inherited
    assert counts(shmfs, shmid, s, watcher) == [2] * 5
    assert pids(shmfs, shmid) == {s.pid: 1, kid: 1}
    s("end", kid)                       # its exit
    assert counts(shmfs, shmid, s, watcher) == [1] * 5
    kid = s.value("forkdt")             # a child that detached
    assert counts(shmfs, shmid, s, watcher) == [1] * 5
    s("kill", kid)
    kid = s.value("fork")
    assert counts(shmfs, shmid, s, watcher) == [2] * 5
    s("kill", kid)                      # SIGKILL of a child holding one
    assert counts(shmfs, shmid, s, watcher) == [1] * 5
    s.p.kill()                          # SIGKILL of the tally's process
    s.p.wait(timeout=30)
    assert counts(shmfs, shmid, watcher) == [0] * 4
    assert holders(table, shmid) == ([], 0)


def test_rmid_frees_at_the_last_detach_from_a_record(shmfs, steps):
    s = steps()
    shmid = s.value("get", KEY)
    s("at", shmid)
    s("at", shmid)
    s("rmid", shmid)
    assert os.path.exists(shmfs.id_path(shmid))
    s("dt")
    assert counts(shmfs, shmid, s) == [1, 1, 1, 1]
    s("dt")
    assert not os.path.exists(shmfs.id_path(shmid))


def hostile_client(m, shmid):
    """A client that counts in its tally (opened for writing, as the
    library does), with one attach of shmid: its tally's descriptor, its
    record and its attachment."""
    c = sc.Client(m.root)
    h = c.hello()
    fd = os.open(m.path(sc.TALLY_DIR, "%d.%d" % (h["sid"], h["gen"])),
                 os.O_RDWR)
    a = c.attach(shmid)
    return c, fd, h, a


def test_hostile_records_change_no_other_process_count(shmfs, table, steps):
    s = steps()
    shmid = s.value("get", KEY)
    s("at", shmid)
    c, fd, h, a = hostile_client(shmfs, shmid)
    try:
        listed, _ = holders(table, shmid)
        mine = [r for sid, gen, r in listed if sid == h["sid"]]
        # its attach is the open's: a ref; the record is bound, and 0
        assert len(mine) == 1 and own(shmfs, h["sid"], h["gen"], mine[0]) == 0
        assert counts(shmfs, shmid, s) == [2] * 4
        rec_off = REC_OFF + mine[0] * REC_SIZE
        for v in (0xFFFFFFFF, 0x80000000, OWN_MAX + 1, 7, 0):
            os.pwrite(fd, U32.pack(v), rec_off)
            want = 2 + min(v, OWN_MAX)
            assert counts(shmfs, shmid, s) == [want] * 4
            assert pids(shmfs, shmid).get(s.pid) == 1
        # garbage everywhere else in its tally: the head, the fork slots,
        # records no segment is bound to
        junk = bytes([0xff]) * sc.TALLY_SIZE
        os.pwrite(fd, junk[:REC_OFF], 0)
        for r in range(99):
            if r != mine[0]:
                os.pwrite(fd, junk[:REC_SIZE], REC_OFF + r * REC_SIZE)
        os.pwrite(fd, U32.pack(0), rec_off)
        assert counts(shmfs, shmid, s) == [2] * 4
        assert pids(shmfs, shmid) == {s.pid: 1, os.getpid(): 1}
        # zero in its own record cannot free what another holds
        c.rmid(shmid)
        assert counts(shmfs, shmid, s) == [2] * 4
        os.pwrite(fd, U32.pack(0xFFFFFFFF), rec_off)
        s("dt")
        assert os.path.exists(shmfs.id_path(shmid))  # it says it holds it
        a.unmap()
    finally:
        os.close(fd)
        c.close()
    # its session's end takes its record away: the removed id goes
    assert not os.path.exists(shmfs.id_path(shmid))
    assert sc.Client(shmfs.root).hello()["version"] == sc.PROTO_VERSION


def test_detach_without_record_is_taken_by_the_daemon(shmfs, table):
    """A process that counts in its tally but detaches with a plain
    request (it could not read the table): the daemon takes the attach
    from its record; a second detach finds nothing."""
    c = shmfs.client()
    shmid = c.shmget(KEY, 4096, IPC_CREAT | 0o600)
    c2, fd, h, a = hostile_client(shmfs, shmid)
    try:
        a.detach()
        assert c.stat(shmid)["nattch"] == 0
        assert sc.catch(c2.detach_id, shmid) == "EINVAL"
    finally:
        os.close(fd)
        c2.close()
        c.close()


def test_no_passthrough_counts_in_the_daemon(shmfs_factory):
    """Without passthrough no tally can be opened: the daemon counts (base),
    and every reader agrees."""
    m = shmfs_factory(["-o", "no_passthrough"])
    if not m.table:
        pytest.skip("the daemon publishes no table on this host")
    t = sc.Table(m.table)
    s = Steps(m)
    try:
        shmid = s.value("get", KEY)
        s("at", shmid)
        s("at", shmid)
        assert holders(t, shmid) == ([], 2)
        assert counts(m, shmid, s) == [2] * 4
        kid = s.value("fork")
        assert counts(m, shmid, s) == [4] * 4
        s("kill", kid)
        s("dt")
        assert counts(m, shmid, s) == [1] * 4
    finally:
        s.close()
        t.close()


def test_counts_in_records_survive_a_killed_server(shmfs, table, steps):
    """The records' binding is in the daemon's heap and their counts in
    tallies the holder keeps: a successor lists the same holders, sums
    the same counts, and takes the next shmdt from the same record."""
    shmfs.expect_exit = -signal.SIGKILL
    s, watcher = steps(), steps()
    shmid = s.value("get", KEY)
    s("at", shmid)
    s("at", shmid)
    before = holders(table, shmid)
    old = shmfs.server_pid()
    os.kill(old, signal.SIGKILL)
    new_server(shmfs, old)
    assert holders(table, shmid) == before
    assert counts(shmfs, shmid, s, watcher) == [2] * 5
    s("dt")
    assert counts(shmfs, shmid, s, watcher) == [1] * 5
    s("rmid", shmid)
    s("dt")
    assert not os.path.exists(shmfs.id_path(shmid))


def hello_flags(c):
    buf = sc._ioctl(c.fd, sc.IOC_HELLO, bytearray(sc.HELLO.size))
    return sc.HELLO.unpack(buf)[5]


def test_hello_says_whether_the_tally_can_be_opened(shmfs_factory):
    """SHMFS_HELLO_TALLY with passthrough; without it a client does not
    try the open (which the daemon would refuse with EOPNOTSUPP)."""
    for opts, want in (([], 1), (["-o", "no_passthrough"], 0)):
        m = shmfs_factory(opts)
        c = sc.Client(m.root)
        try:
            assert hello_flags(c) == want
        finally:
            c.close()


def test_a_hostile_record_buys_a_fork_no_more_than_shmseg(shmfs):
    """A fork counts the parent's records for the child: a record
    claiming 2^32 - 1 attaches makes the daemon count at most shmseg,
    and the abort takes them all back."""
    c = shmfs.client()
    shmid = c.shmget(KEY, 4096, IPC_CREAT | 0o600)
    h, fd, hello, a = hostile_client(shmfs, shmid)
    try:
        shmseg = h.info()["shmseg"]
        os.pwrite(fd, U32.pack(0xFFFFFFFF), REC_OFF)
        token, count = h.fork_prepare()
        assert 0 < count <= shmseg
        assert c.stat(shmid)["nattch"] == 1 + OWN_MAX + count
        h.fork_abort(token)
        assert c.stat(shmid)["nattch"] == 1 + OWN_MAX
    finally:
        os.close(fd)
        h.close()
        c.close()


# -- children that never claim -------------------------------------------------

def test_children_that_never_claim_end_in_any_order(shmfs, steps):
    """Children that make no call never claim what their forks counted;
    each one's end takes exactly one count, the youngest's first as well
    as the oldest's (the last fork before a child's birth is its own)."""
    s = steps()
    shmid = s.value("get", KEY)
    s("at", shmid)
    kids = [s.value("fork") for _ in range(6)]
    assert s.value("stat", shmid) == 7
    for i, kid in enumerate(reversed(kids)):
        s("kill", kid)
        assert s.value("stat", shmid) == 6 - i
    s("dt")
    assert s.value("stat", shmid) == 0


def test_a_child_that_only_exits_claims_nothing(shmfs, steps):
    """The claim waits for the child's first request: fork, exit and wait
    of a process holding an attach make one request (the parent's fork
    count) and the close of .ctl at the child's exit."""
    s = steps()
    shmid = s.value("get", KEY)
    s("at", shmid)
    s("forkexit")
    before = shmfs.requests()
    s("forkexit")
    after = shmfs.requests()
    assert after["ioctl"] - before["ioctl"] == 1
    assert after["flush"] - before["flush"] == 1
    assert s.value("stat", shmid) == 1


def test_a_child_that_exits_unclaimed_leaves_nothing_astray(shmfs_factory):
    """A child's close of .ctl at its exit, before any claim, leaves no
    mapping behind: the segment, freed later with only its creator's kept
    descriptor open, goes out of the memfd and out of shmall at once."""
    m = shmfs_factory(["-o", "shmall=1"])
    s = Steps(m)
    try:
        shmid = s.value("get", KEY)
        s("at", shmid)
        s("put", 0x5a)
        s("forkexit")
        s("dt")                         # keeps its descriptor
        s("rmid", shmid)
        assert m.stats()["shmids"] == 0
        assert m.stats()["pages"] == 0
        m.client().shmget(sc.IPC_PRIVATE, 4096, 0o600)
    finally:
        s.close()
