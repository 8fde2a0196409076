"""pytest fixtures: a fresh shmfs daemon per test, always unmounted.

    shmfs                 a mounted daemon (build/shmfs -f -o allow_other DIR)
    shmfs_factory(opts)   more of them, with extra daemon arguments
    as_user               run_as_user(cmd, uid=1000, gid=1000, groups=None)

Each mount object has .root, .build, .proc, .stderr_text(), and helpers
(.path(), .client(), .script(), .alive()).  Teardown closes what the test
left open through shmfs_client, unmounts with fusermount3 -u (-uz as a
fallback), waits for the daemon, removes the directory, and fails the test
if the daemon died, exited non-zero or wrote anything suspicious on stderr.
"""

import atexit
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from stress import ismounted, mountinfo_unescape  # noqa: F401 (tests import them from here too)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmfs_client  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)


def _public_copy():
    """Tests run programs as uid 1000.  When the checkout is not readable
    by other users (a clone into a 0700 directory, say), they run copies
    of the build and of the client script from a world-readable temporary
    directory; every test module takes the build from SHMFS_BUILD."""
    build = os.path.abspath(os.environ.get("SHMFS_BUILD") or
                            os.path.join(REPO, "build"))
    client = os.path.join(TESTS, "shmfs_client.py")
    if os.geteuid() != 0:
        return build, client
    probe = subprocess.run(
        ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
         "test", "-r", client, "-a", "-x", os.path.join(build, "shmfs")],
        stdin=subprocess.DEVNULL, capture_output=True)
    if probe.returncode == 0:
        return build, client
    top = tempfile.mkdtemp(prefix="shmfs-public-")
    atexit.register(shutil.rmtree, top, ignore_errors=True)
    os.chmod(top, 0o755)
    pub_build = os.path.join(top, "build")
    shutil.copytree(build, pub_build, symlinks=True)
    pub_tests = os.path.join(top, "tests")
    os.mkdir(pub_tests)
    for name in os.listdir(TESTS):
        if name.endswith(".py"):
            shutil.copy(os.path.join(TESTS, name), pub_tests)
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(d, n)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o044 |
                         (0o011 if os.stat(p).st_mode & 0o100 else 0))
    os.environ["SHMFS_BUILD"] = pub_build
    os.environ["SHMFS_CLIENT"] = os.path.join(pub_tests, "shmfs_client.py")
    return pub_build, os.environ["SHMFS_CLIENT"]


BUILD, CLIENT = _public_copy()
DAEMON = os.path.join(BUILD, "shmfs")
MOUNT_TIMEOUT = 10.0
EXIT_TIMEOUT = 10.0

SUSPICIOUS = re.compile(
    r"ERROR|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
    r"ThreadSanitizer|runtime error|Segmentation|segfault|Assertion|"
    r"assertion|double free|corrupted|stack smashing|Aborted|BUG|panic|"
    r"[Dd]eadlock")
# The reaper's word when a killed daemon could not finish dying (reaper.c)
REAPER_ABORTED = (r"^shmfs: the daemon \(pid \d+\) died with a thread stuck "
                  r"in the kernel; aborted its FUSE connection \d+:\d+$")


# check-asan and check-valgrind name the directory where each daemon
# writes its sanitizer or valgrind log, named after its pid (asan.shmfs.PID,
# ubsan.shmfs.PID, vg.PID): a test whose daemon reported an error fails,
# with the log, so that one red run names the test and shows the report.
DAEMON_LOGS = os.environ.get("SHMFS_DAEMON_LOGS")
_pids_of_test = []  # daemons started by the running test


def daemon_logs(pid):
    """{path: text} of the sanitizer or valgrind logs of daemon pid."""
    logs = {}
    if not DAEMON_LOGS or pid is None:
        return logs
    try:
        names = os.listdir(DAEMON_LOGS)
    except OSError:
        return logs
    for n in sorted(names):
        if n == "vg.%d" % pid or (n.endswith(".%d" % pid) and
                                  n.split(".")[0] in ("asan", "ubsan")):
            path = os.path.join(DAEMON_LOGS, n)
            try:
                with open(path, errors="replace") as f:
                    logs[path] = f.read()
            except OSError:
                pass
    return logs


def daemon_log_problems(pid):
    """A valgrind log whose error summary is not 0, or any sanitizer
    report, of daemon pid; a killed daemon's log has no summary yet."""
    problems = []
    for path, text in daemon_logs(pid).items():
        m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
        bad = (m is not None and m.group(1) != "0") if \
            os.path.basename(path).startswith("vg.") else bool(text.strip())
        if bad:
            problems.append("daemon report %s:\n%s" % (path, text[-30000:]))
    return problems


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    del _pids_of_test[:]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test shows the logs of the daemons it started."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and DAEMON_LOGS:
        for pid in _pids_of_test:
            for path, text in daemon_logs(pid).items():
                rep.sections.append(("daemon log " + path, text[-30000:]))


def until(pred, timeout=10.0, step=0.01):
    """Poll pred until it holds (True) or timeout seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


_libc_time = ctypes.CDLL(None).time
_libc_time.restype = ctypes.c_long
_libc_time.argtypes = [ctypes.c_void_p]


def sysv_now():
    """The second the daemon stamps a SysV time with: time(2), which reads
    the kernel's coarse clock (as the kernel's own shm_ctime does) and may
    lag time.time() by a tick across a second's edge."""
    return _libc_time(None)


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True


def _servers_of(root):
    """Live daemon processes (shmfs, or valgrind running it) whose
    arguments name mount point root."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        prog = os.path.basename(argv[0]).decode(errors="replace")
        if (prog.startswith("shmfs") or prog.startswith("valgrind")) and \
                root.encode() in argv and not _zombie(int(name)):
            out.append(int(name))
    return out


def run_as_user(cmd, uid=1000, gid=1000, groups=None, timeout=60, **kw):
    """Run cmd (a list) as uid/gid with exactly the supplementary groups
    given (none by default) through setpriv; returns CompletedProcess with
    text stdout/stderr, never raises on a non-zero exit."""
    pre = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid]
    if groups:
        pre.append("--groups=" + ",".join(str(g) for g in groups))
    else:
        pre.append("--clear-groups")
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(pre + [str(c) for c in cmd], timeout=timeout, **kw)





# ptrace(2) requests and waitpid flags, for stopping single daemon threads
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WALL, WNOHANG = 0x40000000, 1


def threads_of(pid):
    """{tid: comm} of a process."""
    out = {}
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
                out[int(t)] = f.read().strip()
        except OSError:
            pass
    return out


def skip_under_valgrind(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        if b"valgrind" in f.read():
            pytest.skip("valgrind runs one thread at a time: a stopped "
                        "thread would stop the one this test needs")


class ThreadStopper:
    """Stops single threads of another process with ptrace; release()
    (or the end of a with block) lets every one of them go on."""

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long,
                                     ctypes.c_void_p, ctypes.c_void_p]
        self.libc.ptrace.restype = ctypes.c_long
        self.traced = []

    def stop(self, tid):
        status = ctypes.c_int()
        if self.libc.ptrace(PTRACE_SEIZE, tid, None, None) != 0 or \
                self.libc.ptrace(PTRACE_INTERRUPT, tid, None, None) != 0:
            raise OSError(ctypes.get_errno(), "ptrace %d" % tid)
        self.traced.append(tid)
        assert self.libc.waitpid(tid, ctypes.byref(status), WALL) == tid

    def let_go(self, tid):
        self.libc.ptrace(PTRACE_DETACH, tid, None, None)
        self.traced.remove(tid)

    def reap(self, pid):
        """The stopped threads of a killed process die: collect them (the
        leader is collected as the process, once the group has gone)."""
        status = ctypes.c_int()
        for tid in self.traced:
            if tid != pid:
                self.libc.waitpid(tid, ctypes.byref(status), WALL)
        self.traced.clear()

    def release(self):
        for tid in list(self.traced):
            self.let_go(tid)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class Mount:
    def __init__(self, opts=(), mount=True):
        self.build = BUILD
        self.opts = list(opts)
        self.root = tempfile.mkdtemp(prefix="shmfs-test-")
        os.chmod(self.root, 0o755)
        self._errf = tempfile.TemporaryFile(prefix="shmfs-stderr-")
        self._outf = tempfile.TemporaryFile(prefix="shmfs-stdout-")
        self.allowed_stderr = []
        self.expect_exit = None  # a test that kills the daemon sets this
        self.torn_down = False
        self.proc = None
        self.table = None
        self.holder_pid = 0  # the process that keeps the mount across servers
        if mount:
            self.start()

    # -- lifecycle ----------------------------------------------------------

    def start(self):
        if not os.path.exists(DAEMON):
            pytest.fail("daemon not built: %s (run make all)" % DAEMON)
        argv = [DAEMON, "-f", "-o", "allow_other"] + self.opts + [self.root]
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self._outf, stderr=self._errf)
        _pids_of_test.append(self.proc.pid)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while True:
            if ismounted(self.root) and os.path.ismount(self.root):
                try:
                    self.table = os.readlink(os.path.join(self.root, ".table"))
                except OSError:
                    self.table = None
                self.holder_pid = int(os.getxattr(self.root,
                                                  "user.shmfs.holder_pid"))
                return
            rc = self.proc.poll()
            if rc is not None:
                self._fail_start("daemon exited with status %d before mounting" % rc)
            if time.monotonic() > deadline:
                self._fail_start("not mounted after %gs" % MOUNT_TIMEOUT)
            time.sleep(0.01)

    def _fail_start(self, why):
        msg = "%s: %s\nstderr:\n%s" % (" ".join(self.argv), why, self.stderr_text())
        self.teardown(check=False)
        pytest.fail(msg, pytrace=False)

    def stderr_text(self):
        self._errf.flush()
        self._errf.seek(0)
        return self._errf.read().decode(errors="replace")

    def stdout_text(self):
        self._outf.seek(0)
        return self._outf.read().decode(errors="replace")

    def allow_stderr(self, regex):
        """Declare stderr text this test provokes on purpose."""
        self.allowed_stderr.append(re.compile(regex))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None and \
            ismounted(self.root)

    def teardown(self, check=True):
        """Unmount and stop; returns a list of problems found."""
        if self.torn_down:
            return []
        self.torn_down = True
        problems = []
        shmfs_client.close_all(self.root)
        died = self.proc is not None and self.proc.poll() is not None
        server = 0  # a successor the holder started, when one serves
        if self.holder_pid and ismounted(self.root):
            try:
                server = self.server_pid()
            except OSError:
                pass
        if server == getattr(self.proc, "pid", 0):
            server = 0
        if died and self.expect_exit is None:
            problems.append("daemon died during the test (status %s)"
                            % self.proc.returncode)
        if ismounted(self.root):
            r = subprocess.run(["fusermount3", "-u", self.root],
                               capture_output=True, text=True)
            if r.returncode != 0:
                if check and not died:
                    problems.append("fusermount3 -u failed (%s); a descriptor "
                                    "or mapping was left open" % r.stderr.strip())
                subprocess.run(["fusermount3", "-uz", self.root],
                               capture_output=True)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append("daemon still running %gs after unmount; killed"
                                % EXIT_TIMEOUT)
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            rc = self.proc.returncode
            if self.expect_exit is None:
                if rc != 0 and not died:
                    problems.append("daemon exited with status %d" % rc)
            elif rc != self.expect_exit:
                problems.append("daemon exited with status %d, expected %d"
                                % (rc, self.expect_exit))
        if server and not until(
                lambda: not os.path.exists("/proc/%d" % server)
                or _zombie(server), EXIT_TIMEOUT):
            problems.append("server %d still running after unmount; killed"
                            % server)
        # any server of this mount still there once the others ended (a
        # successor the test never learned of, because it failed first)
        # goes too
        until(lambda: not _servers_of(self.root), EXIT_TIMEOUT)
        for pid in _servers_of(self.root):
            if pid != server:
                problems.append("server %d of %s still running after "
                                "unmount; killed" % (pid, self.root))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.holder_pid and not until(
                lambda: not os.path.exists("/proc/%d" % self.holder_pid)
                or _zombie(self.holder_pid), EXIT_TIMEOUT):
            problems.append("holder %d still running after unmount; killed"
                            % self.holder_pid)
            try:
                os.kill(self.holder_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None and self.proc.returncode is not None:
            problems += daemon_log_problems(self.proc.pid)
        if ismounted(self.root):
            subprocess.run(["umount", "-l", self.root], capture_output=True)
            problems.append("still mounted after teardown")
        if self.table and self.proc is not None and os.path.lexists(self.table):
            if self.proc.returncode == 0:
                problems.append("published table %s left behind" % self.table)
            # a daemon that was killed could not remove it: do it for it
            try:
                os.unlink(self.table)
            except OSError:
                pass
        try:
            os.rmdir(self.root)
        except OSError as e:
            problems.append("cannot remove mountpoint: %s" % e)
        if self.expect_exit == -signal.SIGKILL:
            self.allow_stderr(REAPER_ABORTED)
        err = self.stderr_text()
        for line in err.splitlines():
            if SUSPICIOUS.search(line) and \
                    not any(a.search(line) for a in self.allowed_stderr):
                problems.append("suspicious daemon stderr: %r" % line)
        if problems and check:
            problems.append("daemon stderr:\n" + err)
        self._errf.close()
        self._outf.close()
        return problems

    # -- helpers for tests ----------------------------------------------------

    def requests(self):
        """The daemon's requests served, by type (user.shmfs.requests)."""
        text = os.getxattr(self.root, "user.shmfs.requests").decode()
        return dict((k, int(v)) for k, v in
                    (line.split() for line in text.splitlines()))

    def kill_holder(self):
        """SIGKILL the holder: from then on the daemon's death ends the
        mount, as with -o no_failover."""
        os.kill(self.holder_pid, signal.SIGKILL)
        assert until(lambda: _zombie(self.holder_pid))

    def server_pid(self):
        """The process serving now (user.shmfs.pid of the root): the
        daemon started, or a successor its holder started."""
        return int(os.getxattr(self.root, "user.shmfs.pid"))

    def path(self, *parts):
        return os.path.join(self.root, *[str(p) for p in parts])

    def seg_path(self, key, shmid):
        return shmfs_client.seg_path(self.root, key, shmid)

    def id_path(self, shmid):
        return shmfs_client.id_path(self.root, shmid)

    def stats(self):
        """The daemon's totals (user.shmfs.stats on the root), as ints."""
        text = os.getxattr(self.root, "user.shmfs.stats").decode()
        return dict((k, int(v)) for k, v in
                    (line.split() for line in text.splitlines()))

    def stats_when(self, timeout=10.0, **want):
        """The daemon's totals once each named one has the wanted value,
        or as they are after timeout seconds (the caller asserts).  What
        the kernel holds open goes at its RELEASE, sent asynchronously
        after the last close or munmap: a moment later, or seconds later
        under valgrind."""
        got = {}

        def reached():
            got.update(self.stats())
            return all(got[k] == v for k, v in want.items())

        until(reached, timeout)
        return got

    def client(self):
        """A shmfs_client.Client on this mount (closed at teardown)."""
        return shmfs_client.Client(self.root)

    def script(self, *cmds, uid=None, gid=None, groups=None, timeout=60, **kw):
        """Run tests/shmfs_client.py on this mount, as uid/gid if given;
        cmds are lists of words.  Returns (results, CompletedProcess)."""
        argv = shmfs_client.script_argv(self.root, *cmds)
        if uid is None:
            r = subprocess.run(argv, capture_output=True, text=True,
                               timeout=timeout, **kw)
        else:
            r = run_as_user(argv, uid=uid, gid=uid if gid is None else gid,
                            groups=groups, timeout=timeout, **kw)
        assert r.returncode in (0, 1), \
            "client script failed (%d): %s" % (r.returncode, r.stderr)
        return shmfs_client.parse_output(r.stdout), r

    def as_user(self, cmd, **kw):
        return run_as_user(cmd, **kw)


def kill_daemon_under(m, argv, ready, **kw):
    """Start argv, wait for its line `ready` (the line itself, or a test
    of it), SIGKILL m's daemon, then send "go" and let argv finish;
    returns (returncode, stdout, stderr)."""
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, **kw)
    try:
        line = p.stdout.readline()
        assert ready(line) if callable(ready) else line == ready, line
        m.expect_exit = -signal.SIGKILL
        m.proc.kill()
        m.proc.wait()
        out, err = p.communicate("go\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, out, err


def _finish(m):
    problems = m.teardown()
    if problems:
        pytest.fail("shmfs teardown (%s):\n%s" % (m.root, "\n".join(problems)),
                    pytrace=False)


@pytest.fixture
def shmfs():
    m = Mount()
    try:
        yield m
    finally:
        _finish(m)


# The two homes of a segment's memory (shmfs.1, DATA PATHS): a memfd of its
# own served by the kernel (FUSE passthrough, the default where the kernel
# has it), or the daemon's arena served through the page cache.
DATA_PATHS = {"passthrough": [], "arena": ["-o", "no_passthrough"]}


@pytest.fixture(params=sorted(DATA_PATHS))
def shmfs_each_path(request):
    """A mount for each data path; a module runs its tests on both by
    defining `shmfs` as this."""
    m = Mount(DATA_PATHS[request.param])
    m.data_path = request.param
    try:
        yield m
    finally:
        _finish(m)


@pytest.fixture
def shmfs_factory():
    mounts = []

    def make(opts=(), mount=True):
        m = Mount(opts, mount=mount)
        mounts.append(m)
        return m

    try:
        yield make
    finally:
        problems = []
        for m in reversed(mounts):
            p = m.teardown()
            if p:
                problems.append("%s:\n%s" % (m.root, "\n".join(p)))
        if problems:
            pytest.fail("shmfs teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def as_user():
    return run_as_user


@pytest.fixture
def client(shmfs):
    """A Client on the shmfs fixture's mount."""
    c = shmfs.client()
    yield c
    c.close()
