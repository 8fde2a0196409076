"""Faults: clients killed anywhere, the daemon killed, unmount while
attached, and the limits reached under load.

Clients are build/progs/shmfs_stress (plain SysV calls under
LD_PRELOAD=libshmfs-preload.so) and, where a kill must land between two
particular system calls, tests/shmfs_client.py, which makes those calls one
by one.  After every fault the table must keep the invariants that
tests/stress.py checks after a load run.

    SHMFS_SEED=N   the seed of the random kill loop (printed on failure)
"""

import ctypes
import errno
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import shmfs_client
import stress
from conftest import (REAPER_ABORTED, ThreadStopper, skip_under_valgrind,
                      threads_of, until)

PAGE = stress.PAGE
KILLS = 200
VICTIMS = 4
PHASES = {0: "between calls", 1: "shmget", 2: "shmat", 3: "loads and stores",
          4: "shmdt", 5: "IPC_STAT", 6: "IPC_RMID", 7: "fork"}


def _prog(build):
    p = stress.stress_prog(build)
    if not os.path.exists(p):
        pytest.fail("%s not built (make progs)" % p)
    return p


def _failed(res):
    return ["%s: %s" % (n, d) for n, ok, d in res if not ok]


def _group_members(pgids):
    """Live processes in those process groups, read from /proc/PID/status
    (never cmdline or stat, which block on a process stuck in execve)."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/status" % p) as f:
                st = dict(l.split(":", 1) for l in f if ":" in l)
        except OSError:
            continue
        if int(st.get("NSpgid", "0").split()[-1] or 0) in pgids and \
                st.get("State", "").split()[0] != "Z":
            out.append(int(p))
    return out


def _gone(pgids, timeout=15.0):
    """Waits until the process groups are empty (the children that
    PR_SET_PDEATHSIG kills after their parent); returns those left."""
    deadline = time.monotonic() + timeout
    while True:
        left = _group_members(pgids)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def _watchdog(mount, seconds):
    return stress.Watchdog(mount.root, mount.proc.pid, seconds)


def _hung(wd):
    if wd.fired:
        pytest.fail("the daemon hangs (deadlock):\n" + wd.text(),
                    pytrace=False)


class Hold:
    """shmfs_stress -m hold: a libshmfs client driven line by line."""

    def __init__(self, mount, env=None):
        self.p = subprocess.Popen(
            [_prog(mount.build), "-m", "hold"],
            env=env or stress.preload_env(mount.build, mount.root),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1)

    def cmd(self, line, timeout=20.0):
        """Sends one command; returns its answer line, or fails the test
        when none comes in time (the client hangs)."""
        t = time.monotonic()
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            pytest.fail("client hangs: no answer to %r in %gs" % (line, timeout))
        out = self.p.stdout.readline().strip()
        self.elapsed = time.monotonic() - t
        if not out:
            pytest.fail("client died at %r: status %s, stderr %s" % (
                line, self.p.poll(), self.p.stderr.read()))
        return out

    def quit(self, timeout=20.0):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.stdin.close()
        except OSError:
            pass
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            pytest.fail("client still running %gs after quit" % timeout)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def _calls(line):
    """'shmget E T shmat E T ...' -> {name: (errno, seconds)}"""
    f = line.split()
    return {f[i]: (int(f[i + 1]), float(f[i + 2])) for i in range(0, len(f), 3)}


# -- clients killed ----------------------------------------------------------

def _kill_loop(shmfs, seed, forks):
    """KILLS SIGKILLs, each after a random delay, of VICTIMS concurrent
    victims; returns {phase: kills}.  Children of a killed victim die of
    PR_SET_PDEATHSIG, at a random point too."""
    rnd = random.Random(seed)
    prog = _prog(shmfs.build)
    tmp = tempfile.mkdtemp(prefix="shmfs-victims-")
    marker = os.path.join(tmp, "phase")
    env = stress.preload_env(shmfs.build, shmfs.root)
    landed = {}
    victims = []
    pgids = set()

    def spawn(i):
        pf = "%s.%d" % (marker, i)
        with open(pf, "wb") as f:
            f.write(b"\xff")
        argv = [prog, "-m", "victim", "-P", pf, "-s",
                str(rnd.randrange(1, 10**9)), "-b", "0x7a000000"]
        if not forks:
            argv.append("-F")
        p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
        pgids.add(p.pid)
        return p, pf

    try:
        for i in range(VICTIMS):
            victims.append(spawn(i))
        for k in range(KILLS):
            j = rnd.randrange(VICTIMS)
            time.sleep(rnd.uniform(0, 0.012))
            p, pf = victims[j]
            with open(pf, "rb") as f:
                ph = f.read(1)[0]
            p.kill()
            out = p.communicate(timeout=20)[0].decode(errors="replace")
            assert p.returncode == -signal.SIGKILL, \
                "victim ended by itself (%s) before the kill:\n%s" % (
                    p.returncode, out)
            assert "VIOLATION" not in out, out
            landed[ph] = landed.get(ph, 0) + 1
            os.unlink(pf)
            victims[j] = spawn(VICTIMS + k)
    finally:
        for p, pf in victims:
            p.kill()
            p.wait()
        left = _gone(pgids)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    assert not left, "children of killed victims still running: %s" % left
    return landed


@pytest.mark.parametrize("forks", [False, True], ids=["no fork", "with fork"])
def test_clients_killed_at_random_points_leave_the_table_consistent(shmfs,
                                                                    forks):
    """~200 SIGKILLs after a random delay land in every call (shmget,
    inside shmat between its open and its mmap, shmdt, IPC_STAT, IPC_RMID,
    and with fork also in the fork protocol and in children that hold
    inherited attaches); afterwards the table holds nothing for any of
    them."""
    seed = int(os.environ.get("SHMFS_SEED") or random.randrange(1, 10**9))
    with _watchdog(shmfs, 90) as wd:
        try:
            landed = _kill_loop(shmfs, seed, forks)
            res = stress.check_invariants(shmfs.root)
        except Exception:
            _hung(wd)
            raise
    _hung(wd)
    where = ", ".join("%s %d" % (PHASES.get(p, "starting up"), n)
                      for p, n in sorted(landed.items()))
    print("seed %d; kills landed in: %s" % (seed, where))
    bad = _failed(res)
    assert not bad, "seed %d (kills in %s):\n%s" % (seed, where, "\n".join(bad))
    # the kills did land inside the calls, not only between them
    assert {1, 2, 4} <= set(landed), "seed %d: kills landed only in %s" % (
        seed, where)
    bad = _failed(stress.remove_all(shmfs.root))
    assert not bad, "\n".join(bad)


# Each point is a script for tests/shmfs_client.py's Python process, which
# makes the library's system calls one at a time; it prints "ready" at the
# point and waits there to be killed.  With a child, the child is killed
# first, then the parent; with "parent first", the other way round.
KILL_POINTS = {
    # shmat: the open of .id/<shmid> is the attach; killed before mmap
    "after the attach open, before mmap": """
fd = os.open(sc.id_path(root, shmid), os.O_RDWR | sc.ATTACH_FLAGS)
""",
    # shmdt: munmap done, SHMFS_IOC_DETACH not sent
    "after munmap, before the detach request": """
a = c.attach(shmid)
a.write(0, b"x")
a.unmap()
""",
    # holding two attaches and the session
    "holding attaches": """
a = c.attach(shmid)
b = c.attach(shmid, rdonly=True)
""",
    # fork: the daemon counted the child's attaches, the child never
    # claims them (killed first)
    "a child killed before it claims its fork": """
a = c.attach(shmid)
token, n = c.fork_prepare()
pid = os.fork()
if pid == 0:
    time.sleep(1000)
print("child", pid, flush=True)
""",
    # the parent dies between SHMFS_IOC_FORK and fork(2): no child
    "parent first: between the fork request and fork": """
a = c.attach(shmid)
token, n = c.fork_prepare()
""",
    # the parent dies, then its child, which never claimed the fork
    "parent first: before its child claims the fork": """
a = c.attach(shmid)
token, n = c.fork_prepare()
pid = os.fork()
if pid == 0:
    time.sleep(1000)
print("child", pid, flush=True)
""",
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_client_killed_between_two_calls_leaves_nothing_attached(shmfs, point):
    c = shmfs.client()
    shmid = c.shmget(0x4b1, 3 * PAGE, 0o1600)  # IPC_CREAT
    script = ("import os, sys, time\nsys.path.insert(0, %r)\n"
              "import shmfs_client as sc\nroot, shmid = %r, %d\n"
              "c = sc.Client(root)\n%s\nprint('ready', flush=True)\n"
              "time.sleep(1000)\n") % (
        os.path.dirname(shmfs_client.script_path()), shmfs.root, shmid,
        KILL_POINTS[point])
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    child = None

    def kill_child():
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass

    try:
        line = p.stdout.readline()
        if line.startswith("child"):
            child = int(line.split()[1])
            line = p.stdout.readline()
        assert line.strip() == "ready", p.stderr.read()
        assert c.stat(shmid)["nattch"] >= 1
        if "fork" in point:
            assert stress.stats(shmfs.root)["pending_forks"] == 1
        if point.startswith("parent first"):
            p.kill()
            p.wait()
            if child:
                # PR_SET_PDEATHSIG, or a shell's kill: the orphan dies too
                time.sleep(0.05)
                kill_child()
        elif child:
            kill_child()
            # the inherited attach goes with the child, the parent's stays
            deadline = time.monotonic() + 5
            while c.stat(shmid)["nattch"] != 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert c.stat(shmid)["nattch"] == 1
            assert stress.stats(shmfs.root)["pending_forks"] == 0
    finally:
        p.kill()
        p.wait()
        if child:
            kill_child()
    # Exact when wait returns: the session ended with the process.  (An
    # orphan is reaped by init, not by us: allow it a moment.)
    deadline = time.monotonic() + (5 if child else 0)
    while c.stat(shmid)["nattch"] and time.monotonic() < deadline:
        time.sleep(0.01)
    st = stress.stats(shmfs.root)
    assert (c.stat(shmid)["nattch"], st["pending_forks"]) == (0, 0), st
    c.rmid(shmid)
    c.close()
    bad = _failed(stress.check_invariants(shmfs.root))
    assert not bad, "\n".join(bad)


# -- the daemon killed -------------------------------------------------------

def test_daemon_killed_without_its_holder_clients_fail_fast_then_a_new_daemon_mounts(
        shmfs_each_path):
    """With its holder gone first (as with -o no_failover), SIGKILL of the
    daemon while a client is attached: pages the client
    had touched stay readable and writable; an untouched page is there too
    with passthrough (the mapping holds the memfd) and raises SIGBUS on the
    arena path; every call fails with ENOTCONN (shmdt succeeds), the
    mount is cleaned up with fusermount3 -u -z and a new daemon serves on
    the same path (with an empty table: the segments were the daemon's)."""
    shmfs = shmfs_each_path
    h = Hold(shmfs)
    try:
        # 4 MiB: page 1000 is far beyond what readahead brought in
        assert h.cmd("create %d" % (1024 * PAGE)).startswith("id ")
        assert h.cmd("touch 2") == "ok"
        assert h.cmd("stat") == "nattch 1"
        shmfs.kill_holder()
        shmfs.expect_exit = -signal.SIGKILL
        shmfs.proc.kill()
        shmfs.proc.wait(timeout=10)

        assert h.cmd("check 2") == "ok"          # cached pages: still there
        assert h.cmd("touch 2") == "ok"          # and writable
        assert h.cmd("probe 1") == "exit 0"
        if shmfs.data_path == "passthrough":
            assert h.cmd("probe 1000") == "exit 0"
        else:
            assert h.cmd("probe 1000") == "signal %d" % signal.SIGBUS
        calls = _calls(h.cmd("calls", timeout=30))
        for name, (err, secs) in calls.items():
            assert err == 107, "%s after the daemon died: errno %d" % (name, err)
        assert h.cmd("stat") == "errno 107"
        assert h.cmd("dt").startswith("dt 0 ")

        r = subprocess.run(["fusermount3", "-u", "-z", shmfs.root],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert not stress.ismounted(shmfs.root)

        shmfs.start()                            # the same mount point
        shmfs.expect_exit = None
        ok, detail = stress.serves(shmfs.root)
        assert ok, detail
        assert stress.status(shmfs.root) == []   # a new, empty table
        # The old client stays cut off; a new one works.
        assert _calls(h.cmd("calls"))["shmget"][0] == 107
        h2 = Hold(shmfs)
        try:
            assert h2.cmd("create %d" % (4 * PAGE)).startswith("id ")
            assert h2.cmd("touch 4") == "ok"
            assert h2.cmd("check 4") == "ok"
            assert h2.cmd("dt").startswith("dt 0 ")
        finally:
            assert h2.quit() == 0
    finally:
        h.quit()
    bad = _failed(stress.check_invariants(shmfs.root))
    assert not bad, "\n".join(bad)


def test_daemon_killed_without_its_holder_under_load_no_client_hangs(shmfs):
    """The daemon dies in the middle of a load, its holder gone first:
    every client process ends by itself (calls fail with ENOTCONN, some
    loads SIGBUS) and none is left in the D state."""
    prog = _prog(shmfs.build)
    p = subprocess.Popen([prog, "-n", "6", "-t", "3", "-s", "7"],
                         env=stress.preload_env(shmfs.build, shmfs.root),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    time.sleep(1.0)
    shmfs.kill_holder()
    shmfs.expect_exit = -signal.SIGKILL
    shmfs.proc.kill()
    shmfs.proc.wait(timeout=10)
    try:
        out = p.communicate(timeout=90)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        pytest.fail("shmfs_stress hangs after the daemon died")
    assert "hang:" not in out, out
    assert "RESULT" in out
    r = subprocess.run(["fusermount3", "-u", "-z", shmfs.root],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    shmfs.start()
    shmfs.expect_exit = None
    ok, detail = stress.serves(shmfs.root)
    assert ok, detail


def _kernel_stack(pid, tid):
    try:
        with open("/proc/%d/task/%d/stack" % (pid, tid)) as f:
            return f.read()
    except OSError:
        return ""


def _abort_all_of(dev):
    """fusectl's abort, by the test itself: never leave a stuck mount.
    No child process: it would close this process's descriptors of the
    mount, a FLUSH that nothing answers."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount(b"fusectl", b"/sys/fs/fuse/connections", b"fusectl", 0, None)
    try:
        with open("/sys/fs/fuse/connections/%d/abort" % dev, "w") as f:
            f.write("1")
    except OSError:
        pass


@pytest.mark.parametrize("holder", ["none", "killed first"])
def test_daemon_killed_while_dropping_a_name_is_unstuck_by_its_reaper(
        shmfs_factory, holder):
    """The thread that drops .id/<shmid> names waits, uninterruptibly, for
    the .id directory's lock, which a client's lookup holds while it waits
    for the daemon.  Killed then, the daemon cannot finish dying and the
    client would wait for ever: the daemon's reaper aborts the connection
    (shmfs.1, LIMITATIONS).  This is the daemon without a holder
    (no_failover), or with one killed before it; with a live one, the
    successor answers the lookup (test_failover.py).  The race is made
    certain by stopping the daemon's threads one by one with ptrace."""
    m = shmfs_factory(["-o", "no_failover"] if holder == "none" else [])
    if holder != "none":
        m.kill_holder()
    pid = m.proc.pid
    skip_under_valgrind(pid)
    tracer = ThreadStopper()
    stop = tracer.stop
    traced = tracer.traced

    c = m.client()
    gone = c.shmget(shmfs_client.IPC_PRIVATE, PAGE, 0o600)
    st = os.stat(m.id_path(gone))  # the kernel now caches that name
    dev = os.major(st.st_dev) << 20 | os.minor(st.st_dev)
    inval = [t for t, n in threads_of(pid).items() if n == "shmfs-inval"]
    assert len(inval) == 1, threads_of(pid)
    # a lookup in .id that no thread will answer, made after the threads
    # stop; started now, for a process that starts then would close its
    # inherited descriptors of the mount (a FLUSH no thread would answer)
    lookup = subprocess.Popen(
        [sys.executable, "-c", "import os,sys\nsys.stdin.readline()\n"
         "try: os.stat(sys.argv[1])\nexcept OSError as e: print(e.errno)",
         os.path.join(m.root, ".id", "2147483000")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        stop(inval[0])
        c.rmid(gone)  # served; the name to drop waits in the queue
        for tid in threads_of(pid):
            if tid not in traced:
                stop(tid)
        lookup.stdin.write("go\n")
        lookup.stdin.flush()
        assert until(lambda: "request_wait_answer" in
                      _kernel_stack(lookup.pid, lookup.pid)), \
            _kernel_stack(lookup.pid, lookup.pid)
        tracer.let_go(inval[0])
        assert until(lambda: "fuse_reverse_inval_entry" in
                      _kernel_stack(pid, inval[0])), \
            _kernel_stack(pid, inval[0])
        m.expect_exit = -signal.SIGKILL
        m.proc.kill()
        tracer.reap(pid)
        # the aborted lookup fails; so does every later call
        out = lookup.communicate(timeout=10)[0]
        assert out.strip() == str(errno.ECONNABORTED), out
        try:
            c.close()  # its FLUSH
        except OSError as e:
            assert e.errno == errno.ENOTCONN
        m.proc.wait(timeout=10)
        assert re.search(REAPER_ABORTED, m.stderr_text(), re.M), \
            m.stderr_text()
    finally:
        tracer.release()
        if lookup.poll() is None or m.proc.poll() is None:
            _abort_all_of(dev)
        lookup.kill()
        lookup.wait()
        try:
            c.close()
        except OSError:
            pass  # a dead daemon: the FLUSH fails, the descriptor goes


# -- unmount while attached ----------------------------------------------------

def test_unmount_while_attached_is_ebusy_lazy_unmount_serves_until_the_end(
        shmfs):
    """fusermount3 -u with a segment mapped fails with EBUSY and changes
    nothing; fusermount3 -u -z detaches the mount at once and the daemon
    goes on serving the attached client (untouched pages fault in, IPC_STAT
    and shmdt work) until it is gone, then exits with status 0."""
    h = Hold(shmfs)
    try:
        assert h.cmd("create %d" % (16 * PAGE)).startswith("id ")
        assert h.cmd("touch 1") == "ok"
        r = subprocess.run(["fusermount3", "-u", shmfs.root],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "busy" in r.stderr.lower(), r.stderr
        assert stress.ismounted(shmfs.root) and shmfs.alive()
        assert h.cmd("stat") == "nattch 1"

        r = subprocess.run(["fusermount3", "-u", "-z", shmfs.root],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert not stress.ismounted(shmfs.root)
        assert shmfs.proc.poll() is None, "daemon gone with a client attached"
        assert h.cmd("check 1") == "ok"
        assert h.cmd("touch 16") == "ok"         # pages never touched before
        assert h.cmd("check 16") == "ok"
        assert h.cmd("stat") == "nattch 1"
        assert h.cmd("dt").startswith("dt 0 ")
        assert shmfs.proc.poll() is None
    finally:
        assert h.quit() == 0
    # the last user of the detached mount is gone: the daemon ends
    shmfs.expect_exit = 0
    try:
        assert shmfs.proc.wait(timeout=20) == 0
    except subprocess.TimeoutExpired:
        pytest.fail("daemon still running 20s after its last client left "
                    "the lazily unmounted file system")


# -- the limits under load -----------------------------------------------------

SHMMNI, SHMALL, SHMSEG = 24, 512, 6


class Poller(threading.Thread):
    """Samples the daemon's stats while a test runs."""

    def __init__(self, root):
        super().__init__(daemon=True)
        self.root = root
        self.stop = threading.Event()
        self.samples = 0
        self.max = {}
        self.over = []

    def run(self):
        while not self.stop.is_set():
            try:
                st = stress.stats(self.root)
            except OSError:
                break
            self.samples += 1
            for k, v in st.items():
                self.max[k] = max(self.max.get(k, 0), v)
            if st["memory"] > SHMALL * PAGE or st["pages"] > SHMALL or \
                    st["shmids"] > SHMMNI:
                self.over.append(st)
            time.sleep(0.002)


def test_limits_reached_under_load_give_enospc_emfile_and_bound_memory(
        shmfs_factory):
    """Six processes at once drive the daemon into shmmni and shmall
    (ENOSPC) and shmseg (EMFILE), store into every page they hold, free
    everything and create again.  The daemon never holds more than shmall
    pages, nor more memory than that; each ENOSPC is explained by a limit;
    EMFILE comes exactly at shmseg."""
    m = shmfs_factory(["-o", "shmmni=%d,shmall=%d,shmseg=%d"
                       % (SHMMNI, SHMALL, SHMSEG)])
    poll = Poller(m.root)
    poll.start()
    p = subprocess.Popen([_prog(m.build), "-m", "exhaust", "-n", "6", "-s", "11"],
                         env=stress.preload_env(m.build, m.root),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, bufsize=1)
    held = []
    out = []
    try:
        for line in p.stdout:
            out.append(line)
            if line.startswith("exhaust: holding"):
                # every worker holds what it got: look at the daemon
                st = stress.stats(m.root)
                held.append(st)
                p.stdin.write("go\n")
                p.stdin.flush()
        p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        poll.stop.set()
        poll.join()
    text = "".join(out)
    result = json.loads(text.split("RESULT ", 1)[1])
    assert p.returncode == 0 and result["violations"] == 0, text
    assert result["unexpected"] == 0, text
    assert result["enospc_shmmni"] > 0 and result["enospc_shmall"] > 0, text
    assert result["emfile"] >= 6, text
    assert len(held) == 4
    for i, st in enumerate(held):
        assert st["shmids"] <= SHMMNI and st["pages"] <= SHMALL, st
        assert st["memory"] <= SHMALL * PAGE, st
        if i % 2 == 0:       # small segments: the table is full
            assert st["shmids"] == SHMMNI, (i, st)
        else:                # large ones: the pages are nearly all taken
            assert st["pages"] > SHMALL // 2, (i, st)
    assert poll.samples > 10
    assert not poll.over, "limits exceeded: %s" % poll.over[:3]
    print("exhaust: %d samples, peaks %s" % (poll.samples, poll.max))
    bad = _failed(stress.check_invariants(m.root))
    bad += _failed(stress.remove_all(m.root))
    assert not bad, "\n".join(bad)


def test_memory_held_by_open_files_of_removed_segments_counts_against_shmall(
        shmfs_factory):
    """A user (uid 1000 here) fills a segment, opens its file without the
    attach flags (as cat does) and removes it: the shmid is gone, but its
    pages stay in the daemon while the file is open, so they still count
    against shmall (as the kernel counts a segment until it is freed): a
    second such segment is ENOSPC until the file is closed."""
    m = shmfs_factory(["-o", "shmall=64"])
    script = """
import errno, os, sys
sys.path.insert(0, %r)
import shmfs_client as sc
root = %r
c = sc.Client(root)
shmid = c.shmget(0, 48 * 4096, 0o600)
a = c.attach(shmid)
a.write(0, b"x" * (48 * 4096))
fd = os.open(sc.id_path(root, shmid), os.O_RDONLY)
a.detach()
c.rmid(shmid)
try:
    c.shmget(0, 48 * 4096, 0o600)
    print("created", flush=True)
except OSError as e:
    print(errno.errorcode[e.errno], flush=True)
sys.stdin.readline()
os.close(fd)
print("closed", flush=True)
sys.stdin.readline()
print(c.shmget(0, 48 * 4096, 0o600) >= 0, flush=True)
""" % (os.path.dirname(shmfs_client.script_path()), m.root)
    p = subprocess.Popen(["setpriv", "--reuid=1000", "--regid=1000",
                          "--clear-groups", sys.executable, "-c", script],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().strip()
        assert line == "ENOSPC", "a second segment: %r" % line
        st = stress.stats(m.root)
        assert st["shmids"] == 0 and st["pages"] == 48, st
        assert st["memory"] <= 64 * PAGE, st
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "closed"
        # RELEASE follows the close asynchronously: wait for it
        st = m.stats_when(handles=0, pages=0, memory=0)
        assert st["pages"] == 0 and st["memory"] == 0, st
        p.stdin.write("\n")
        p.stdin.flush()
        line = p.stdout.readline().strip()
        assert line == "True", "after the close: %r" % line
    finally:
        p.stdin.close()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    assert p.returncode == 0, p.stderr.read()
    bad = _failed(stress.remove_all(m.root))
    assert not bad, "\n".join(bad)


def test_spawned_child_exec_while_a_fork_is_pending_does_not_hang(shmfs):
    """A posix_spawn child (no atfork handlers) closes the inherited .ctl
    in execve while its parent has a fork pending: the daemon must match
    the close to no fork without waiting for the child (which waits for
    the daemon).  The daemon once read /proc/CHILD/stat under its table
    lock there, and it and every client hung."""
    c = shmfs.client()
    shmid = c.shmget(0x4b2, 2 * PAGE, 0o1600)
    # A process of its own: posix_spawn suspends the spawning thread
    # until the child's exec is done, so a hang would stop this one.
    script = ("import os, sys\nsys.path.insert(0, %r)\n"
              "import shmfs_client as sc\nroot, shmid = %r, %d\n"
              "c = sc.Client(root)\na = c.attach(shmid)\n"
              "token, n = c.fork_prepare()\n"
              "assert n == 1 and c.stat(shmid)['nattch'] == 2\n"
              "pid = os.posix_spawn('/bin/true', ['true'], os.environ)\n"
              "_, status = os.waitpid(pid, 0)\n"
              "assert os.waitstatus_to_exitcode(status) == 0\n"
              "print(c.stat(shmid)['nattch'], flush=True)\n"
              "try:\n    c.fork_abort(token)\nexcept OSError:\n    pass\n"
              "print(c.stat(shmid)['nattch'], flush=True)\n"
              "a.detach()\nprint(c.stat(shmid)['nattch'], flush=True)\n") % (
        os.path.dirname(shmfs_client.script_path()), shmfs.root, shmid)
    with _watchdog(shmfs, 30) as wd:
        p = subprocess.run([sys.executable, "-c", script],
                           capture_output=True, text=True, timeout=120)
    _hung(wd)
    assert p.returncode == 0, p.stderr
    # The spawned child was born after the fork and is a child of the
    # fork's parent: the daemon may take its close for the fork child's
    # (it cannot tell them apart); either way, nothing hangs or leaks.
    first, aborted, detached = [int(x) for x in p.stdout.split()]
    assert first in (1, 2) and aborted == 1 and detached == 0, p.stdout
    c.rmid(shmid)
    c.close()
    bad = _failed(stress.check_invariants(shmfs.root))
    assert not bad, "\n".join(bad)
