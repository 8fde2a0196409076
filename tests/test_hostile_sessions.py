"""A stranger against root's segments: the steps of the protocol between
processes (fork tokens, descriptors passed between processes, sessions),
resource limits the daemon reads, and what one caller can make the daemon
hold or wait on (issue 11).

The stranger is uid 4242 with no groups, run through setpriv; root's
segments are 0600 unless a test says otherwise.  Each test pins a finding
that the daemon before the fix got wrong.
"""

import os
import resource
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

import shmfs_client as sc
import stress
from stress import vm_kb
from conftest import (CLIENT, ThreadStopper, skip_under_valgrind, threads_of,
                      until)
from shmfs_client import IPC_PRIVATE, catch
from test_tally_counts import Steps

STRANGER = 4242
SHM_NORESERVE = 0o10000
PAGE = sc.PAGE_SIZE


def stranger_argv(root, code, *args):
    """argv that runs code (Python, with sc = shmfs_client, root and args
    at hand) as the stranger."""
    prog = ("import os, sys\nsys.path.insert(0, %r)\n"
            "import shmfs_client as sc\nroot = sys.argv[1]\n"
            "args = sys.argv[2:]\n" % os.path.dirname(CLIENT) +
            textwrap.dedent(code))
    return ["setpriv", "--reuid=%d" % STRANGER, "--regid=%d" % STRANGER,
            "--clear-groups", sys.executable, "-c", prog, root] + \
        [str(a) for a in args]


def as_stranger(root, code, *args, **kw):
    kw.setdefault("timeout", 120)
    r = subprocess.run(stranger_argv(root, code, *args), capture_output=True,
                       text=True, **kw)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


# -- fork tokens ---------------------------------------------------------------

def test_stranger_with_the_token_cannot_claim_roots_fork(shmfs, client):
    """Only the forked child claims a fork: a stranger who knows (or
    guesses around) root's token gets ESRCH, and root's counts, lpid and
    memory stay as they were."""
    shmid = client.shmget(IPC_PRIVATE, PAGE, 0o600)
    mine = client.shmget(IPC_PRIVATE, PAGE, 0o666)
    a = client.attach(shmid)
    # started before the fork: a child of ours born after it, closing
    # the descriptors it inherited, would pass for the fork's child
    p = subprocess.Popen(stranger_argv(shmfs.root, """
        c = sc.Client(root)
        a = c.attach(int(args[0]))
        own = c.fork_prepare()[0]
        c.fork_abort(own)
        print("ready", flush=True)
        token = int(sys.stdin.readline())
        tries = [token] + [own + d for d in range(-100, 101) if d]
        won = sum(sc.catch(c.fork_child, t) is None for t in tries)
        print(won, sc.catch(c.detach_id, int(args[1])))
        """, mine, shmid), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        token, count = client.fork_prepare()
        assert count == 1
        before = client.stat(shmid)
        out, _ = p.communicate("%d\n" % token, timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out.split() == ["0", "EINVAL"]
    after = client.stat(shmid)
    assert (after["nattch"], after["lpid"]) == (2, os.getpid())
    assert after["nattch"] == before["nattch"]
    # the real child still claims it, and its exit counts
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            client.fork_child(token)
        except OSError:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.stat(shmid)["nattch"] == 1
    client.rmid(shmid)
    a.detach()
    assert catch(client.stat, shmid) == "EINVAL"
    assert shmfs.stats_when(pending_forks=0)["pending_forks"] == 0


def test_older_child_holding_the_file_cannot_claim_a_later_fork(shmfs,
                                                                client):
    """A process that holds root's very control file (a child started
    before the fork, as the stranger) is not that fork's child."""
    shmid = client.shmget(IPC_PRIVATE, PAGE, 0o600)
    a = client.attach(shmid)
    p = subprocess.Popen(stranger_argv(shmfs.root, """
        c = sc.Client.__new__(sc.Client)
        c.fd, c.root = int(args[0]), root
        token = int(sys.stdin.readline())
        print(sc.catch(c.fork_child, token), flush=True)
        """, client.fd), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, pass_fds=[client.fd])
    try:
        token, _ = client.fork_prepare()
        out, _ = p.communicate("%d\n" % token, timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out.split() == ["ESRCH"]
    assert client.stat(shmid)["nattch"] == 2
    client.fork_abort(token)
    assert client.stat(shmid)["nattch"] == 1
    a.detach()


# -- sessions belong to one open file ------------------------------------------

def test_closing_a_received_control_descriptor_ends_nothing_of_ours(
        shmfs, client):
    """A root service that receives a stranger's .ctl descriptor over a
    socket and closes it keeps its own attach: its IPC_RMID then leaves
    the segment to its last detach."""
    shmid = client.shmget(IPC_PRIVATE, PAGE, 0o600)
    a = client.attach(shmid)
    a.write(0, b"kept")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        as_stranger(shmfs.root, """
            import socket
            s = socket.socket(fileno=int(args[0]))
            c = sc.Client(root)
            socket.send_fds(s, [b"x"], [c.fd])
            """, theirs.fileno(), pass_fds=[theirs.fileno()])
        msg, fds, _, _ = socket.recv_fds(ours, 16, 4)
    finally:
        ours.close()
        theirs.close()
    assert msg == b"x" and len(fds) == 1
    os.close(fds[0])  # the stranger's file, closed by us: our FLUSH
    assert client.stat(shmid)["nattch"] == 1
    client.rmid(shmid)
    st = client.stat(shmid)
    assert st["nattch"] == 1 and st["mode"] & sc.SHM_DEST
    assert a.read(0, 4) == b"kept"
    a.detach()
    assert catch(client.stat, shmid) == "EINVAL"


def test_session_requests_do_not_pile_up(shmfs, client):
    """A session is one process's use of one open file: SHMFS_IOC_SESSION
    sent 5,000 times through one file makes one, and the stranger's
    sessions go with its files."""
    base = shmfs.stats()["sessions"]
    p = subprocess.Popen(stranger_argv(shmfs.root, """
        c = sc.Client(root)
        for _ in range(5000):
            c.session()
        print("done", flush=True)
        sys.stdin.readline()
        """), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "done\n"
        assert shmfs.stats()["sessions"] == base + 1
        p.communicate("\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert shmfs.stats_when(sessions=base)["sessions"] == base


# -- settle requests -----------------------------------------------------------

def test_settle_requests_from_a_stranger_change_nothing_and_hold_nothing(
        shmfs, client):
    """SHMFS_IOC_DETACH with SHMFS_DETACH_TALLY says "I took one from my
    record, settle".  A stranger attached to root's 0644 segment (with a
    record of it bound) sends 5,000 of them for it, before and after
    root's IPC_RMID, and 5,000 for shmids it holds nothing of: the counts
    stay (root's attach and the stranger's), the removed segment is not
    freed under root, the others get EINVAL, and the daemon keeps
    nothing."""
    shmid = client.shmget(IPC_PRIVATE, PAGE, 0o644)
    other = client.shmget(IPC_PRIVATE, PAGE, 0o644)
    mine = client.attach(shmid)
    mine.write(0, b"root")
    rss0 = vm_kb(shmfs.proc.pid)["VmRSS"]
    p = subprocess.Popen(stranger_argv(shmfs.root, """
        c = sc.Client(root)
        shmid, other = int(args[0]), int(args[1])
        h = c.hello()                   # it counts in its tally, bound
        tally = os.open(os.path.join(root, sc.TALLY_DIR, "%d.%d" % (
            h["sid"], h["gen"])), os.O_RDWR)
        a = c.attach(shmid, rdonly=True)
        for rnd in range(2):
            got = {}
            for i in range(5000):
                for id in (shmid, other, i * 32768 + 7):
                    try:
                        r = c.detach_tally(id)
                    except OSError as e:
                        r = e.errno
                    k = "%s:%d" % ("own" if id == shmid else "else", r)
                    got[k] = got.get(k, 0) + 1
            print(" ".join(sorted("%s=%d" % kv for kv in got.items())),
                  flush=True)
            sys.stdin.readline()
        """, shmid, other), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        # its own record's settles answer 0, every other one EINVAL
        assert p.stdout.readline().split() == ["else:22=10000", "own:0=5000"]
        assert client.stat(shmid)["nattch"] == 2
        assert client.stat(other)["nattch"] == 0
        client.rmid(shmid)
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().split() == ["else:22=10000", "own:0=5000"]
        st = client.stat(shmid)
        assert st["nattch"] == 2 and st["mode"] & sc.SHM_DEST
        assert mine.read(0, 4) == b"root"
        grown = vm_kb(shmfs.proc.pid)["VmRSS"] - rss0
        assert grown < 4096 or stress.instrumented(shmfs.proc.pid), \
            "daemon grew by %d kB" % grown
        p.communicate("\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert client.stat(shmid)["nattch"] == 1
    mine.detach()
    assert catch(client.stat, shmid) == "EINVAL"
    assert client.stat(other)["nattch"] == 0


# -- a mapping left astray -----------------------------------------------------

def test_a_strangers_mapping_left_astray_is_never_zeroed_and_holds_little(
        shmfs_factory):
    """The stranger attaches root's 0666 segment read-write and closes
    every descriptor: its session ends, so its count does, while it keeps
    the mapping (astray).  Root detaches, keeping its attach descriptor,
    and removes the segment, freed at once.  The stranger's bytes are
    never punched out under it, and the memory stays counted against
    shmall while a file of it is open, and no longer: once root's process
    ends, a new segment fits in shmall=1 page, though the stranger still
    maps the old one.  Its stores there reach nothing of root's."""
    m = shmfs_factory(["-o", "shmall=1"])
    root = Steps(m)
    stranger = Steps(m, ["setpriv", "--reuid=%d" % STRANGER,
                         "--regid=%d" % STRANGER, "--clear-groups"])
    c = m.client()
    try:
        shmid = root.value("get", 0x5157)
        os.chmod(m.id_path(shmid), 0o666)
        root("at", shmid)
        root("put", 0x5a)
        stranger("at", shmid)
        stranger("closeall")
        assert c.stat(shmid)["nattch"] == 1
        # its attach file's RELEASE comes after the close
        assert m.stats_when(handles=1)["handles"] == 1
        root("dt")                      # keeps its attach descriptor
        root("rmid", shmid)
        assert m.stats()["shmids"] == 0
        assert stranger.value("peek") == 0x5a
        # counted while root's kept descriptor is open
        assert m.stats()["pages"] == 1
        assert catch(c.shmget, IPC_PRIVATE, PAGE, 0o600) == "ENOSPC"
        root.close()
        assert m.stats_when(pages=0)["pages"] == 0
        assert stranger.value("peek") == 0x5a
        fresh = c.shmget(0x5157, PAGE, sc.IPC_CREAT | 0o600)
        stranger("put", 0x77)
        a = c.attach(fresh)
        assert a.read(0, PAGE) == bytes(PAGE)
        a.detach()
        assert stranger.value("peek") == 0x77
        assert c.stat(fresh)["nattch"] == 0
    finally:
        root.close()
        stranger.close()


# -- pending forks without forks -----------------------------------------------

def test_fork_requests_without_forks_do_not_inflate_nattch(shmfs, client):
    """A stranger attached to root's 0644 segment asks for 5,000 forks and
    makes none: the daemon keeps at most one pending (the fork it may be
    about to make), nattch never counts the children that cannot exist,
    and the daemon does not grow with the requests."""
    shmid = client.shmget(IPC_PRIVATE, PAGE, 0o644)
    rss0 = vm_kb(shmfs.proc.pid)["VmRSS"]
    p = subprocess.Popen(stranger_argv(shmfs.root, """
        c = sc.Client(root)
        a = c.attach(int(args[0]), rdonly=True)
        for _ in range(5000):
            c.fork_prepare()
        print("done", flush=True)
        sys.stdin.readline()
        """, shmid), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "done\n"
        st = shmfs.stats()
        assert st["pending_forks"] <= 1, st
        assert client.stat(shmid)["nattch"] <= 2
        grown = vm_kb(shmfs.proc.pid)["VmRSS"] - rss0
        # under ASan or valgrind VmRSS holds their own memory too
        assert grown < 4096 or stress.instrumented(shmfs.proc.pid), \
            "daemon grew by %d kB" % grown
        client.rmid(shmid)
        p.communicate("\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert catch(client.stat, shmid) == "EINVAL"
    assert shmfs.stats_when(pending_forks=0, attaches=0)["attaches"] == 0


def test_forks_whose_children_claim_late_are_all_counted(shmfs, client):
    """Five forks in a row whose children claim only after the last: each
    has a child of its own, so none is taken for a fork never made."""
    shmid = client.shmget(IPC_PRIVATE, PAGE, 0o600)
    a = client.attach(shmid)
    kids = []
    claim_r, claim_w = os.pipe()
    exit_r, exit_w = os.pipe()
    for _ in range(5):
        token, _ = client.fork_prepare()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.read(claim_r, 1)
                client.fork_child(token)
                os.read(exit_r, 1)
            except BaseException:
                code = 1
            os._exit(code)
        kids.append(pid)
    assert shmfs.stats()["pending_forks"] == 5
    assert client.stat(shmid)["nattch"] == 6
    os.write(claim_w, b"c" * 5)
    assert until(lambda: shmfs.stats()["pending_forks"] == 0), shmfs.stats()
    assert client.stat(shmid)["nattch"] == 6
    os.write(exit_w, b"x" * 5)
    for fd in (claim_r, claim_w, exit_r, exit_w):
        os.close(fd)
    for pid in kids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert client.stat(shmid)["nattch"] == 1
    a.detach()


# -- SHM_LOCK reads the caller's limit -----------------------------------------

def test_shm_lock_ignores_the_memlock_limit_a_request_claims(shmfs, client):
    """With RLIMIT_MEMLOCK at 64 KiB, a request that claims an unlimited
    limit locks no more than 64 KiB (ENOMEM), as the kernel decides."""
    limit = 64 << 10
    out = as_stranger(shmfs.root, """
        c = sc.Client(root)
        big = c.shmget(sc.IPC_PRIVATE, 1 << 20, 0o600)
        small = c.shmget(sc.IPC_PRIVATE, 16 << 10, 0o600)
        forever = (1 << 64) - 1
        print(sc.catch(c.lock, big, None, forever),
              sc.catch(c.lock, small, None, forever),
              c.stat(big)["mode"] & sc.SHM_LOCKED,
              c.stat(small)["mode"] & sc.SHM_LOCKED)
        """, preexec_fn=lambda: resource.setrlimit(
            resource.RLIMIT_MEMLOCK, (limit, limit)))
    assert out == ["ENOMEM", "None", "0", str(sc.SHM_LOCKED)]


# -- the arena -----------------------------------------------------------------

def test_huge_noreserve_segment_does_not_disable_the_arena(shmfs_factory):
    """On the arena path a stranger's shmget(IPC_PRIVATE, 2^62,
    SHM_NORESERVE) neither blocks anyone else's shmget while it lives nor
    after its IPC_RMID: arena ranges serve again."""
    m = shmfs_factory(["-o", "no_passthrough"])
    c = m.client()
    p = subprocess.Popen(stranger_argv(m.root, """
        c = sc.Client(root)
        ids = [c.shmget(sc.IPC_PRIVATE, 1 << 62, 0o600 | int(args[0]))
               for _ in range(3)]
        print("made", flush=True)
        sys.stdin.readline()
        for i in ids:
            c.rmid(i)
        print("removed", flush=True)
        """, SHM_NORESERVE), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        assert p.stdout.readline() == "made\n"
        mine = c.shmget(IPC_PRIVATE, 1 << 20, 0o600)
        with c.attach(mine) as a:
            a.write(0, b"arena")
            assert a.read(0, 5) == b"arena"
        c.rmid(mine)
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline() == "removed\n"
    finally:
        p.kill()
        p.wait()
    for _ in range(50):
        shmid = c.shmget(IPC_PRIVATE, 4 << 20, 0o600)
        c.rmid(shmid)
    assert m.stats_when(memory=0)["memory"] == 0


def _syscall(pid, tid):
    """What a thread is doing: 'running', or the number of the system
    call it is in ('-1' for none: stopped in user space)."""
    try:
        with open("/proc/%d/task/%d/syscall" % (pid, tid)) as f:
            return f.read().split()[0]
    except (OSError, IndexError):
        return ""


@pytest.mark.skipif(os.uname().machine != "x86_64",
                    reason="reads the x86_64 system call number of lseek")
def test_stat_of_a_fragmented_arena_segment_holds_no_lock(shmfs_factory):
    """The memory of an arena segment is measured with SEEK_DATA and
    SEEK_HOLE, as long as its caller likes: never under the table lock.
    A daemon thread stopped in the middle of measuring a stranger's
    segment (every other page written) must not stop root's shmget."""
    m = shmfs_factory(["-o", "no_passthrough"])
    pid = m.proc.pid
    skip_under_valgrind(pid)
    c = m.client()
    p = subprocess.Popen(stranger_argv(m.root, """
        c = sc.Client(root)
        n = 1 << 16
        shmid = c.shmget(sc.IPC_PRIVATE, n * sc.PAGE_SIZE, 0o600)
        a = c.attach(shmid)
        for i in range(0, n, 2):
            a.write(i * sc.PAGE_SIZE, b"x")
        a.detach()
        path = sc.id_path(root, shmid)
        os.stat(path)
        print("ready", flush=True)
        while True:
            os.stat(path)
        """), stdout=subprocess.PIPE, text=True)
    tracer = ThreadStopper()
    try:
        assert p.stdout.readline() == "ready\n"
        # the only requests are the stranger's stats, which spend nearly
        # all their time measuring: stop a worker caught serving one
        workers = [t for t, n in threads_of(pid).items()
                   if t != pid and n != "shmfs-inval"]
        stopped = None
        for _ in range(20000):
            tid = next((t for t in workers
                        if _syscall(pid, t) == "running"), None)
            if tid is None:
                continue
            tracer.stop(tid)
            # stopped in lseek (8 on x86_64), or in user space, where a
            # stat spends nearly all of its time between two lseeks: in
            # the middle of measuring
            if _syscall(pid, tid) in ("8", "-1"):
                stopped = tid
                break
            tracer.let_go(tid)
        assert stopped, "no daemon thread was seen measuring"
        done = []
        t = threading.Thread(target=lambda: done.append(
            c.rmid(c.shmget(IPC_PRIVATE, PAGE, 0o600))), daemon=True)
        t.start()
        t.join(30)
        assert len(done) == 1, "root's shmget waited for the stopped thread"
    finally:
        tracer.release()
        p.kill()
        p.wait()


# -- what one caller can make the daemon hold ----------------------------------

def test_verbose_log_does_not_grow_with_a_strangers_requests(shmfs_factory):
    """Under -o verbose every refused request is a line: a stranger's
    10,000 of them give a burst, then a few a second and a count of the
    rest, not 10,000 lines."""
    m = shmfs_factory(["-o", "verbose"])
    out = as_stranger(m.root, """
        import time
        c = sc.Client(root)
        for _ in range(10000):
            sc.catch(c.shmget, 0x5EED, 4096, 0)
        time.sleep(0.2)
        print(sc.catch(c.shmget, 0x5EED, 4096, 0))
        """)
    assert out == ["ENOENT"]
    lines = m.stderr_text().splitlines()
    refused = [x for x in lines if "shmget by pid" in x]
    assert 100 <= len(refused) < 1000, len(refused)
    assert any(x.endswith("refused requests not logged") for x in lines), \
        lines[-3:]
