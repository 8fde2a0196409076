"""A server that dies or is replaced while it serves: its holder starts a
successor that adopts the table, the kernel resends what the dead server
read, and no client notices (shmfs(1), FAILOVER).

Kills at exact points come from the daemon's own fault injection
(SHMFS_TEST_KILLPOINTS=1 in its environment; root arms a point through the
root's user.shmfs.killpoint xattr, and the next request to reach it
SIGKILLs the server there)."""

import errno
import mmap
import os
import signal
import subprocess
import sys
import time

import pytest

import shmfs_client as sc
import stress
from conftest import DATA_PATHS, skip_under_valgrind, until
from shmfs_client import IPC_CREAT, IPC_EXCL, IPC_PRIVATE, catch
from test_faults import Hold
from test_lib import built

KEY = 0x7a11
PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def killable(shmfs_factory, monkeypatch):
    """A mount whose servers can be armed to die at a named point."""
    monkeypatch.setenv("SHMFS_TEST_KILLPOINTS", "1")

    def make(opts=()):
        m = shmfs_factory(list(opts))
        m.expect_exit = -signal.SIGKILL
        return m
    return make


def arm(m, point):
    os.setxattr(m.root, "user.shmfs.killpoint", point.encode())


def new_server(m, old, timeout=10.0):
    """The pid serving once it is not old (a successor took over)."""
    got = [old]

    def changed():
        try:
            got[0] = m.server_pid()
        except OSError:
            return False
        return got[0] != old
    assert until(changed, timeout), "server %d was not replaced" % old
    return got[0]


def keys_in_status(root, key):
    return [line for line in stress.status(root) if line["key"] == key]


@pytest.mark.parametrize("data_path", sorted(DATA_PATHS))
def test_killed_server_leaves_every_segment_count_and_byte(
        shmfs_factory, data_path):
    """SIGKILL of the server with segments of every kind (a key, a private
    one, one changed by IPC_SET, one removed while attached, one locked)
    and a client attached: the successor serves the same table, the
    attached client's pages and its detach, and the next calls."""
    m = shmfs_factory(DATA_PATHS[data_path])
    m.expect_exit = -signal.SIGKILL
    c = m.client()
    keyed = c.shmget(KEY, 3 * PAGE, IPC_CREAT | 0o640)
    private = c.shmget(IPC_PRIVATE, PAGE, 0o600)
    c.set(keyed, 1000, 1000, 0o604)
    locked = c.shmget(KEY + 1, PAGE, IPC_CREAT | 0o600)
    c.lock(locked)
    h = Hold(m)
    try:
        hid = int(h.cmd("create %d" % (4 * PAGE)).split()[1])
        assert h.cmd("touch 4") == "ok"
        c.rmid(hid)  # attached: SHM_DEST until the detach
        with c.attach(keyed) as a:
            a.write(100, b"kept across servers")
        before = {s: c.stat(s) for s in (keyed, private, locked, hid)}
        status = stress.status(m.root)
        holder, old = m.holder_pid, m.server_pid()
        m.proc.kill()
        m.proc.wait(timeout=10)
        new = new_server(m, old)
        assert new != old and m.holder_pid == holder
        assert os.getxattr(m.root, "user.shmfs.holder_pid") == \
            str(holder).encode()
        after = {s: c.stat(s) for s in before}
        assert after == before
        assert stress.status(m.root) == status
        assert c.shmget(KEY, 0, 0) == keyed
        with c.attach(keyed) as a:
            assert a.read(100, 19) == b"kept across servers"
        assert h.cmd("check 4") == "ok"  # the attached client's bytes
        assert h.cmd("stat") == "nattch 1"
        assert h.cmd("dt").startswith("dt 0 ")
        assert catch(c.stat, hid) == "EINVAL"  # freed at its last detach
        c.unlock(locked)
        for s in (keyed, private, locked):
            c.rmid(s)
        assert stress.status(m.root) == []
        st = m.stats_when(attaches=0, shmids=0)
        assert (st["shmids"], st["attaches"], st["pages"]) == (0, 0, 0)
    finally:
        h.quit()


@pytest.mark.parametrize("point", ["read", "create", "commit", "reply"])
def test_create_killed_at_each_point_is_answered_once(killable, point):
    """shmget(IPC_CREAT | IPC_EXCL) whose server dies after reading it and
    before applying it, inside the create, after it and before the
    commit, or after the commit and before the
    reply: the caller gets one shmid (no EEXIST from a resend that found
    its own segment), and the key has exactly one segment."""
    m = killable()
    c = m.client()
    old = m.server_pid()
    arm(m, point)
    shmid = c.shmget(KEY, PAGE, IPC_CREAT | IPC_EXCL | 0o600)
    assert new_server(m, old) != old
    assert [s["shmid"] for s in keys_in_status(m.root, KEY)] == [shmid]
    assert c.stat(shmid)["segsz"] == PAGE
    assert c.shmget(KEY, 0, 0) == shmid
    assert m.stats()["shmids"] == 1


@pytest.mark.parametrize("point", ["read", "rmid", "commit", "reply"])
def test_rmid_killed_at_each_point_is_answered_once(killable, point):
    """IPC_RMID whose server dies inside it, before its commit or before
    its reply: the caller gets 0 (not EINVAL from a resend that found the
    shmid gone), and the segment is gone exactly once."""
    m = killable()
    c = m.client()
    shmid = c.shmget(KEY, PAGE, IPC_CREAT | 0o600)
    other = c.shmget(KEY + 1, PAGE, IPC_CREAT | 0o600)
    old = m.server_pid()
    arm(m, point)
    c.rmid(shmid)
    assert new_server(m, old) != old
    assert catch(c.stat, shmid) == "EINVAL"
    assert catch(c.rmid, shmid) == "EINVAL"
    assert c.stat(other)["nattch"] == 0
    assert [s["shmid"] for s in stress.status(m.root)] == [other]


@pytest.mark.parametrize("point", ["fork", "commit", "reply"])
def test_fork_count_killed_at_each_point_counts_the_child_once(
        killable, point):
    """The fork protocol's count, its server killed inside it or around
    its commit: the caller gets a token, and nattch counts the child that
    is to come once (2, not 3)."""
    m = killable()
    c = m.client()
    shmid = c.shmget(KEY, PAGE, IPC_CREAT | 0o600)
    a = c.attach(shmid)
    old = m.server_pid()
    arm(m, point)
    token, count = c.fork_prepare()
    assert new_server(m, old) != old
    assert token and count == 1
    assert c.stat(shmid)["nattch"] == 2
    c.fork_abort(token)
    assert c.stat(shmid)["nattch"] == 1
    a.detach()
    assert c.stat(shmid)["nattch"] == 0


@pytest.mark.parametrize("point", ["claim", "commit", "reply"])
def test_fork_claim_killed_at_each_point_is_the_childs_once(killable, point):
    """The child's claim, its server killed inside it or around its
    commit: the claim succeeds (not ESRCH from a resend that found the
    fork claimed), nattch stays 2 while the child lives, and the child's
    exit ends its attach."""
    m = killable()
    c = m.client()
    shmid = c.shmget(KEY, PAGE, IPC_CREAT | 0o600)
    a = c.attach(shmid)
    token, _ = c.fork_prepare()
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    old = m.server_pid()
    arm(m, point)
    pid = os.fork()
    if pid == 0:  # the child claims through the inherited .ctl
        try:
            c.fork_child(token)
            os.write(w, b"ok")
        except OSError as e:
            os.write(w, errno.errorcode[e.errno].encode())
        os.read(go_r, 1)
        os._exit(0)
    try:
        assert os.read(r, 16) == b"ok"
        assert new_server(m, old) != old
        assert c.stat(shmid)["nattch"] == 2
    finally:
        os.write(go_w, b"x")
        os.waitpid(pid, 0)
    assert until(lambda: c.stat(shmid)["nattch"] == 1)
    a.detach()
    assert c.stat(shmid)["nattch"] == 0
    for fd in (r, w, go_r, go_w):
        os.close(fd)


def test_session_close_killed_detaches_once(killable):
    """A process exits with an attach while its server dies inside the
    close of its session: the successor ends the session (nattch 0), and
    the segment removed meanwhile is freed."""
    m = killable()
    c = m.client()
    h = Hold(m)
    hid = int(h.cmd("create %d" % PAGE).split()[1])
    c.rmid(hid)
    assert c.stat(hid)["nattch"] == 1
    old = m.server_pid()
    arm(m, "close")
    h.kill()
    assert new_server(m, old) != old
    assert until(lambda: catch(c.stat, hid) == "EINVAL")
    st = m.stats_when(attaches=0, processes=1)
    assert (st["attaches"], st["shmids"]) == (0, 0)


def test_upgrade_replaces_the_server_and_no_client_notices(shmfs):
    """shmfs --upgrade MOUNTPOINT: the binary it runs from serves the
    live mount; an attached client, its bytes and nattch, the table and
    the calls all go on; the holder stays."""
    shmfs.expect_exit = 0  # the first server exits once it handed over
    c = shmfs.client()
    shmid = c.shmget(KEY, PAGE, IPC_CREAT | 0o600)
    h = Hold(shmfs)
    try:
        hid = int(h.cmd("create %d" % (2 * PAGE)).split()[1])
        assert h.cmd("touch 2") == "ok"
        old = shmfs.server_pid()
        status = stress.status(shmfs.root)
        r = subprocess.run([built(shmfs.build, "shmfs"), "--upgrade",
                            shmfs.root], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        new = shmfs.server_pid()
        assert new != old
        assert r.stdout.startswith("shmfs: %s is served by pid %d (paused "
                                   % (shmfs.root, new)), r.stdout
        assert stress.status(shmfs.root) == status
        assert h.cmd("check 2") == "ok"
        assert h.cmd("stat") == "nattch 1"
        assert c.shmget(KEY, 0, 0) == shmid
        assert h.cmd("dt").startswith("dt 0 ")
        assert catch(c.stat, hid) == "EIDRM" or catch(c.stat, hid) is None
    finally:
        h.quit()
    # the first server exited 0 after handing over
    assert shmfs.proc.wait(timeout=10) == 0


def test_upgrade_whose_old_server_dies_in_the_handover_completes(killable):
    """The old server killed after it stopped serving and before it is
    gone: the upgrade goes on and the new binary serves."""
    m = killable()
    c = m.client()
    shmid = c.shmget(KEY, PAGE, IPC_CREAT | 0o600)
    old = m.server_pid()
    arm(m, "handover")
    r = subprocess.run([built(m.build, "shmfs"), "--upgrade", m.root],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert m.server_pid() != old
    assert c.shmget(KEY, 0, 0) == shmid


def test_upgrade_to_another_table_format_is_refused(shmfs):
    """A binary whose table format differs refuses with a message naming
    both formats, and the running server goes on, untouched."""
    other = built(shmfs.build, "progs", "shmfs_other_format")
    c = shmfs.client()
    shmid = c.shmget(KEY, PAGE, IPC_CREAT | 0o600)
    old = shmfs.server_pid()
    r = subprocess.run([other, "--upgrade", shmfs.root], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert "its table is of format" in r.stderr and \
        "the running server (pid %d) goes on" % old in r.stderr, r.stderr
    assert shmfs.server_pid() == old
    assert c.shmget(KEY, 0, 0) == shmid


def test_upgrade_by_a_stranger_is_refused(shmfs):
    r = subprocess.run(
        ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
         built(shmfs.build, "shmfs"), "--upgrade", shmfs.root],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "only root may upgrade" in r.stderr, r.stderr


def test_servers_that_keep_dying_end_the_mount_and_nothing_hangs(killable):
    """A request that kills every server it reaches: after five servers in
    a row die within half a second of their start, the holder ends the
    connection, the caller gets an error instead of waiting for ever, and
    the holder says why.  (The first server, which served longer, does not
    count.)"""
    m = killable()
    m.allow_stderr(r"shmfs-holder: servers keep dying")
    c = m.client()
    holder = m.holder_pid
    errs = []
    for i in range(10):
        try:
            arm(m, "create")
        except OSError as e:
            errs.append(e.errno)
            break
        try:
            c.shmget(KEY + i, PAGE, IPC_CREAT | 0o600)
        except OSError as e:
            errs.append(e.errno)
            break
    assert errs and errs[0] in (errno.ENOTCONN, errno.ECONNABORTED), errs
    assert until(lambda: not os.path.exists("/proc/%d" % holder) or
                 open("/proc/%d/stat" % holder).read().split(") ")[1][0]
                 in "ZX")
    assert "servers keep dying" in m.stderr_text()
    assert catch(os.stat, m.path("status")) in ("ENOTCONN", "ECONNABORTED")
    try:
        c.close()  # its FLUSH: nobody answers on an ended connection
    except OSError as e:
        assert e.errno == errno.ENOTCONN


def test_killed_server_with_a_thread_stuck_dropping_a_name(shmfs_factory):
    """The server killed while its thread that drops .id names waits for
    the directory lock a client's lookup holds (test_faults.py makes the
    race certain with ptrace): the successor answers the resent lookup
    (ENOENT, the right answer), which lets the stuck thread and the dead
    server go."""
    from conftest import ThreadStopper, threads_of
    from test_faults import _kernel_stack
    m = shmfs_factory()
    pid = m.proc.pid
    skip_under_valgrind(pid)
    tracer = ThreadStopper()
    c = m.client()
    gone = c.shmget(IPC_PRIVATE, PAGE, 0o600)
    os.stat(m.id_path(gone))
    inval = [t for t, n in threads_of(pid).items() if n == "shmfs-inval"]
    assert len(inval) == 1
    lookup = subprocess.Popen(
        [sys.executable, "-c", "import os,sys\nsys.stdin.readline()\n"
         "try: os.stat(sys.argv[1])\nexcept OSError as e: print(e.errno)",
         os.path.join(m.root, ".id", "2147483000")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        tracer.stop(inval[0])
        c.rmid(gone)
        for tid in threads_of(pid):
            if tid not in tracer.traced:
                tracer.stop(tid)
        lookup.stdin.write("go\n")
        lookup.stdin.flush()
        assert until(lambda: "request_wait_answer" in
                     _kernel_stack(lookup.pid, lookup.pid))
        tracer.let_go(inval[0])
        assert until(lambda: "fuse_reverse_inval_entry" in
                     _kernel_stack(pid, inval[0]))
        m.expect_exit = -signal.SIGKILL
        m.proc.kill()
        tracer.reap(pid)
        out = lookup.communicate(timeout=20)[0]
        assert out.strip() == str(errno.ENOENT), out
        m.proc.wait(timeout=20)
        assert c.shmget(IPC_PRIVATE, PAGE, 0o600) >= 0
    finally:
        tracer.release()
        lookup.kill()
        lookup.wait()


@pytest.mark.parametrize("point", ["commit", "reply"])
def test_without_resend_a_dead_servers_request_fails_and_nothing_hangs(
        killable, monkeypatch, point):
    """On a kernel that cannot resend (before Linux 6.9; made here with
    SHMFS_TEST_NO_RESEND=1), workers read through cloned descriptors the
    holder does not keep: the request the dead server had read fails with
    ECONNABORTED instead of waiting for ever, its change stands only if it
    had committed, and the successor serves every later call."""
    monkeypatch.setenv("SHMFS_TEST_NO_RESEND", "1")
    m = killable()
    c = m.client()
    old = m.server_pid()
    arm(m, point)
    assert catch(c.shmget, KEY, PAGE, IPC_CREAT | IPC_EXCL | 0o600) == \
        "ECONNABORTED"
    assert new_server(m, old) != old
    found = catch(c.shmget, KEY, 0, 0)
    if point == "commit":  # rolled back
        assert found == "ENOENT"
    else:  # committed: the segment is there
        assert found is None
    assert c.shmget(KEY + 1, PAGE, IPC_CREAT | 0o600) >= 0


LIB_CLIENT = r"""
import ctypes, os, sys
lib = ctypes.CDLL(sys.argv[1], use_errno=True)
shmid = lib.shmfs_shmget(int(sys.argv[2]), 4096, 0o1600)
print(shmid, flush=True)
for line in sys.stdin:
    print(all(lib.shmfs_shmget(int(sys.argv[2]), 0, 0) == shmid
              for _ in range(100)), flush=True)
"""


def test_successors_publish_the_table_clients_read_without_asking(shmfs):
    """shmget of an existing key is read from the published table, no
    request sent: from the first server's table, and after a kill and an
    upgrade from the same file, made again by each successor."""
    shmfs.expect_exit = -signal.SIGKILL
    p = subprocess.Popen(
        [sys.executable, "-c", LIB_CLIENT,
         os.path.join(shmfs.build, "libshmfs.so"), str(KEY)],
        env=dict(os.environ, SHMFS_ROOT=shmfs.root), text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert int(p.stdout.readline()) >= 0

        def ioctls_for_100_shmgets():
            before = shmfs.requests()["ioctl"]
            p.stdin.write("go\n")
            p.stdin.flush()
            assert p.stdout.readline().strip() == "True"
            return shmfs.requests()["ioctl"] - before
        assert ioctls_for_100_shmgets() == 0
        old = shmfs.server_pid()
        os.kill(old, signal.SIGKILL)
        new_server(shmfs, old)
        assert ioctls_for_100_shmgets() == 0
        subprocess.run([built(shmfs.build, "shmfs"), "--upgrade",
                        shmfs.root], check=True, capture_output=True,
                       timeout=60)
        assert ioctls_for_100_shmgets() == 0
    finally:
        p.stdin.close()
        p.wait(timeout=20)


def switches(pid):
    """The voluntary context switches of pid's threads, summed."""
    n = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    n += int(line.split()[1])
    return n


def test_the_holder_sleeps_through_requests(shmfs, client):
    """The holder wakes at its ticks (every 50 ms) and at the server's
    word, not at each request: the kernel wakes every poller of /dev/fuse
    as it queues a request, and a holder polling it was one more switch,
    a wake-up of the other CPU, per call.  4,000 IPC_SETs, however long
    they take, leave it at most its ticks' switches (two per tick, and
    some slack)."""
    shmid = client.shmget(IPC_PRIVATE, 4096, 0o600)
    n = 4000
    before, t0 = switches(shmfs.holder_pid), time.monotonic()
    for _ in range(n):
        client.set(shmid, 0, 0, 0o600)
    woke = switches(shmfs.holder_pid) - before
    ticks = (time.monotonic() - t0) / 0.05
    assert woke <= 2 * ticks + 20, (woke, ticks)
    assert 2 * ticks + 20 < n / 2, "too slow to tell: %d ticks" % ticks


def test_single_thread_without_resend_has_no_holder(shmfs_factory,
                                                     monkeypatch):
    """-s reads every request through the one descriptor the holder would
    keep: on a kernel that cannot resend, a dead server's request would
    wait for ever, so the daemon says so and runs without a holder (its
    reaper only), rather than leave a caller hanging."""
    monkeypatch.setenv("SHMFS_TEST_NO_RESEND", "1")
    m = shmfs_factory(["-s"])
    m.allow_stderr(r"no failover: -s on a kernel without")
    assert m.holder_pid == 0
    assert "no failover: -s on a kernel without FUSE_NOTIFY_RESEND" in \
        m.stderr_text()
    c = m.client()
    assert c.shmget(KEY, PAGE, IPC_CREAT | 0o600) >= 0


STRANGER_SET = r"""
import errno, os, sys
try:
    os.setxattr(sys.argv[1], "user.shmfs.killpoint", b"commit")
    print("armed")
except OSError as e:
    print(errno.errorcode[e.errno])
"""


@pytest.mark.parametrize("enabled", [False, True])
def test_a_stranger_cannot_arm_a_kill_point(shmfs_factory, monkeypatch,
                                            enabled):
    """The fault injection is root's, and only with the daemon started
    with SHMFS_TEST_KILLPOINTS=1: a stranger's setxattr is refused either
    way (ENOTSUP without it, as any user.shmfs.* name; EPERM with it), and
    the server's next change does not kill it.  Without the variable root
    is refused too."""
    from conftest import run_as_user
    if enabled:
        monkeypatch.setenv("SHMFS_TEST_KILLPOINTS", "1")
    m = shmfs_factory()
    r = run_as_user([sys.executable, "-c", STRANGER_SET, m.root], uid=4242,
                    gid=4242)
    assert r.stdout.strip() == ("EPERM" if enabled else "ENOTSUP"), r
    if not enabled:
        assert catch(arm, m, "commit") == "ENOTSUP"
    old = m.server_pid()
    c = m.client()
    assert c.shmget(KEY, PAGE, IPC_CREAT | 0o600) >= 0
    assert m.server_pid() == old


def tally_fds(pid):
    """Descriptors of pid that are tally memfds."""
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if "memfd:shmfs-tally" in os.readlink("/proc/%d/fd/%s" % (pid, fd)):
                out.append(int(fd))
        except OSError:
            pass
    return out


def test_a_tally_survives_a_killed_server(shmfs):
    """The holder keeps each session's tally memfd as it keeps segment
    memfds: after a SIGKILL of the server, the successor has it again, the
    session's tally keeps its bytes and its name, and its end lets it go
    everywhere."""
    shmfs.expect_exit = -signal.SIGKILL
    c = shmfs.client()
    h = c.hello()
    path = shmfs.path(sc.TALLY_DIR, "%d.%d" % (h["sid"], h["gen"]))
    holder, old = shmfs.holder_pid, shmfs.server_pid()
    assert len(tally_fds(old)) == 1
    # the holder is told of a descriptor by a message it reads later
    assert until(lambda: len(tally_fds(holder)) == 1)
    fd = os.open(path, os.O_RDWR)
    mm = mmap.mmap(fd, sc.TALLY_SIZE)
    os.close(fd)
    try:
        mm[100:112] = b"before death"
        os.kill(old, signal.SIGKILL)
        new = new_server(shmfs, old)
        assert shmfs.holder_pid == holder
        assert len(tally_fds(holder)) == 1 and len(tally_fds(new)) == 1
        assert c.hello()["sid"] == h["sid"] and c.hello()["gen"] == h["gen"]
        mm[112:122] = b" and after"
        fd = os.open(path, os.O_RDONLY)
        try:
            assert os.pread(fd, 22, 100) == b"before death and after"
        finally:
            os.close(fd)
        c.close()
        assert catch(os.stat, path) == "ENOENT"
        assert until(lambda: not tally_fds(holder) and not tally_fds(new))
    finally:
        mm.close()
