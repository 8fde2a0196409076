"""A real SysV program on shmfs: PostgreSQL through the preload library.

PgServer runs one PostgreSQL server of its own (initdb, postgres, psql,
pgbench of the installed PostgreSQL, /usr/lib/postgresql/V/bin) in a
temporary directory, as an unprivileged user (PostgreSQL refuses root),
reachable only through a unix socket in that directory.  With shmfs_root
set, postgres runs with LD_PRELOAD=libshmfs-preload.so and
SHMFS_ROOT=shmfs_root, so every shmget/shmat/shmdt/shmctl it makes goes
to that mount; with shmfs_root None it runs on the kernel's SysV shm (a
baseline to compare with).  shmfs_root may change between stop() and
start(): the same data directory then runs on another daemon.

The postmaster is started directly (not by pg_ctl) so that it is our
child: a SIGKILLed postmaster is reaped at once, and no zombie keeps its
pid alive in postmaster.pid for the next start to trip on.  pg_ctl does
the clean stops.

cleanup() (and the fixtures below, even when a test fails) SIGKILLs every
process of the server (its postmaster and every process whose working
directory is the data directory: postgres chdirs there, and its children
inherit it, also once orphaned by a killed postmaster) and removes the
directory.

    with PgServer(bindir, shmfs_root=mount.root, build=mount.build) as pg:
        pg.start()
        pg.query("select 1")          # -> "1"
        pg.pgbench("-i")              # CompletedProcess
        key, shmid = pg.shm           # postmaster.pid's key and shmid
        pg.stop()                     # pg_ctl stop -m fast; reaps it

Fixtures: pg_bindir (module scope: the PostgreSQL binaries, installed
through scripts/deps.sh when missing, else the test skips) and
pg_factory(shmfs_root, build, **conf).
"""

import ctypes
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import stress

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
PG_PACKAGE = "postgresql-15"
PG_PROGRAMS = ("initdb", "postgres", "pg_ctl", "psql", "pgbench")
PG_PORT = 5432          # on a socket in the server's own directory
PG_SUPERUSER = "shmfs"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
SHM_SYSCALLS = ("shmget", "shmat", "shmdt", "shmctl")

# What every server gets; PgServer(conf=...) adds to it or overrides.
BASE_CONF = {
    "listen_addresses": "''",
    "port": str(PG_PORT),
    "shared_memory_type": "sysv",
    "shared_buffers": "16MB",
    "max_connections": "20",
    "fsync": "off",
    "full_page_writes": "off",
    "logging_collector": "off",
    "log_min_messages": "log",
}


class PgError(Exception):
    """A PostgreSQL program failed; the message carries its output and
    the server's log."""


# -- finding (or installing) PostgreSQL ----------------------------------------

def _version_key(bindir):
    v = os.path.basename(os.path.dirname(bindir))
    return [int(x) for x in re.findall(r"\d+", v)] or [0]


def find_bindir():
    """The bin directory of an installed PostgreSQL with every program
    the harness runs: 15's if there is one, else the newest."""
    found = [d for d in glob.glob("/usr/lib/postgresql/*/bin")
             if all(os.access(os.path.join(d, p), os.X_OK)
                    for p in PG_PROGRAMS)]
    if not found:
        return None
    fifteen = [d for d in found if _version_key(d) == [15]]
    return fifteen[0] if fifteen else max(found, key=_version_key)


def ensure_postgres():
    """(bindir, None), or (None, why not) when PostgreSQL is missing and
    cannot be installed.  Installs it the way `make deps` does
    (scripts/deps.sh, which also stops the cluster the package creates)."""
    bindir = find_bindir()
    if bindir:
        return bindir, None
    if os.geteuid() != 0:
        return None, "%s is not installed (and we are not root)" % PG_PACKAGE
    try:
        r = subprocess.run(["sh", os.path.join(REPO, "scripts", "deps.sh"),
                            PG_PACKAGE], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, "cannot install %s: %s" % (PG_PACKAGE, e)
    bindir = find_bindir()
    if bindir:
        return bindir, None
    return None, "cannot install %s (scripts/deps.sh exit %d): %s" % (
        PG_PACKAGE, r.returncode, (r.stdout + r.stderr).strip()[-2000:])


_runtime_verdicts = {}


def runtime_problem(bindir, build):
    """None, or why PostgreSQL cannot run with the sanitizer runtime a
    sanitizer build's preload library needs loaded first (ASan: `make
    check-asan`).  Probed without shmfs: `postgres --version` with only
    that runtime preloaded (Debian 12's libasan.so.8 hangs it in
    bindtextdomain, on a futex of glibc's _nl_state_lock, before it
    touches any shared memory).  A plain build needs no runtime: None."""
    lib = os.path.join(build, "libshmfs-preload.so")
    if lib in _runtime_verdicts:
        return _runtime_verdicts[lib]
    pre = stress.sanitizer_preloads(lib)
    why = None
    if pre:
        env = dict(os.environ, LD_PRELOAD=" ".join(pre),
                   ASAN_OPTIONS="detect_leaks=0")
        argv = [os.path.join(bindir, "postgres"), "--version"]
        try:
            r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=10)
            if r.returncode != 0:
                why = "exits %d: %s" % (r.returncode, r.stderr.strip()[-500:])
        except subprocess.TimeoutExpired:
            why = "hangs"
        if why:
            why = "LD_PRELOAD=%s %s %s (shmfs not involved): PostgreSQL " \
                "cannot run under this sanitizer build's preload library" % (
                    " ".join(pre), " ".join(argv), why)
    _runtime_verdicts[lib] = why
    return why


def pg_user():
    """The unprivileged account the servers run as: uid 1000 (the user
    the rest of the suite runs programs as) when it has a passwd entry
    (initdb needs one), else the package's postgres account."""
    for look in (lambda: pwd.getpwuid(1000), lambda: pwd.getpwnam("postgres")):
        try:
            return look()
        except KeyError:
            pass
    pytest.skip("no unprivileged account with a passwd entry to run "
                "PostgreSQL as (uid 1000 or postgres)")


# -- the kernel's and the processes' view --------------------------------------

def kernel_segments():
    """The kernel's SysV segments: [{key, shmid, perms, size, cpid, lpid,
    nattch, uid, ...}] from /proc/sysvipc/shm ([] without SysV IPC)."""
    try:
        with open("/proc/sysvipc/shm") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    names = lines[0].split()
    return [dict(zip(names, (int(x) for x in line.split())))
            for line in lines[1:] if line.strip()]


def sysv_maps(pid):
    """The lines of /proc/PID/maps that map a kernel SysV segment."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return [ln for ln in f if "/SYSV" in ln]
    except OSError:
        return []


def _readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


# -- the server -----------------------------------------------------------------

class PgServer:
    def __init__(self, bindir, shmfs_root=None, build=None, conf=None,
                 user=None, base=None):
        self.bindir = bindir
        self.shmfs_root = shmfs_root
        self.build = build or stress_build()
        self.user = user or pg_user()
        self.conf = dict(BASE_CONF)
        self.conf.update(conf or {})
        self.base = base or tempfile.mkdtemp(prefix="shmfs-pg-")
        os.chown(self.base, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.base, 0o755)
        self.data = os.path.join(self.base, "data")
        self.logfile = os.path.join(self.base, "server.log")
        self.proc = None        # the postmaster (or strace over it)
        self.pid = None         # the postmaster
        self.shm = None         # (key, shmid) of the running server
        self.shm_text = None    # the two as postmaster.pid (and PostgreSQL's
        #                         messages) write them
        self.known_pids = set()  # every server process seen
        self._log_offset = 0
        self.initialized = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    # -- running as the user ----------------------------------------------

    def _env(self, preload):
        if preload and self.shmfs_root is not None:
            env = stress.preload_env(self.build, self.shmfs_root)
            opts = env.get("ASAN_OPTIONS", "")
            env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + \
                "detect_leaks=0"
        else:
            env = dict(os.environ)
            for k in ("LD_PRELOAD", "SHMFS_ROOT", "SHMFS_DEBUG"):
                env.pop(k, None)
        for k in list(env):
            if k.startswith("PG"):
                del env[k]
        env.update(HOME=self.base, USER=self.user.pw_name,
                   LOGNAME=self.user.pw_name, LC_ALL="C", TZ="UTC")
        return env

    def _as_user(self, argv):
        return ["setpriv", "--reuid=%d" % self.user.pw_uid,
                "--regid=%d" % self.user.pw_gid, "--clear-groups"] + \
            [str(a) for a in argv]

    def run(self, prog, *args, timeout=120, check=True, preload=False):
        """Run one of PostgreSQL's programs as the user; a failure (with
        check) raises PgError with its output and the server's log."""
        argv = self._as_user([os.path.join(self.bindir, prog)] + list(args))
        r = subprocess.run(argv, env=self._env(preload), cwd=self.base,
                           stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise PgError("%s exited %d\nstdout:\n%s\nstderr:\n%s\n%s" % (
                " ".join(argv), r.returncode, r.stdout[-4000:],
                r.stderr[-4000:], self.log_tail()))
        return r

    # -- set-up ---------------------------------------------------------------

    def initdb(self):
        """A new cluster in base/data with the harness's settings."""
        self.run("initdb", "-D", self.data, "-U", PG_SUPERUSER,
                 "--auth=trust", "--no-sync", "--no-locale", "-E", "UTF8",
                 "--no-instructions")
        self.set_conf(self.conf, unix_socket_directories="'%s'" % self.base)
        self.initialized = True

    def set_conf(self, conf=None, **more):
        """Append settings to postgresql.conf (the last one wins); they
        take effect at the next start."""
        conf = dict(conf or {}, **more)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# shmfs tests\n")
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, v))

    # -- start and stop -----------------------------------------------------

    def start(self, strace_log=None, timeout=START_TIMEOUT):
        """Start the postmaster (initdb first if needed) and wait until it
        accepts connections.  Raises PgError, with the log, if it exits
        first.  strace_log: run it under strace -f for the four shm
        syscalls, writing to that file (the kernel's calls, if any)."""
        if not self.initialized:
            self.initdb()
        if self.proc is not None and self.proc.poll() is None:
            raise PgError("already running (pid %s)" % self.pid)
        self._log_offset = os.path.getsize(self.logfile) \
            if os.path.exists(self.logfile) else 0
        argv = self._as_user([os.path.join(self.bindir, "postgres"),
                              "-D", self.data])
        if strace_log:
            argv = ["strace", "-f", "-qq", "--seccomp-bpf", "-o",
                    strace_log, "-e", "trace=" + ",".join(SHM_SYSCALLS)] + argv
        log = open(self.logfile, "ab")
        try:
            self.proc = subprocess.Popen(argv, env=self._env(True),
                                         cwd=self.base,
                                         stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        finally:
            log.close()
        self.pid = None if strace_log else self.proc.pid
        deadline = time.monotonic() + timeout
        while True:
            info = self.pidfile()
            if info and len(info) >= 8 and info[7].strip() == "ready" and \
                    (self.pid is None or int(info[0]) == self.pid):
                self.pid = int(info[0])
                # "%9lu %9lu" of the key (a key_t, as an unsigned long:
                # a negative key prints as 2**64 - |key|) and the shmid
                self.shm_text = tuple(info[6].split())
                key, shmid = (int(x) for x in self.shm_text)
                self.shm = (_s32(key), shmid)
                self.known_pids.update(self.pids())
                return self
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                raise PgError("postgres exited %d before it was ready\n%s"
                              % (rc, self.log_tail()))
            if time.monotonic() > deadline:
                raise PgError("postgres not ready after %gs\n%s"
                              % (timeout, self.log_tail()))
            time.sleep(0.02)

    def start_fails(self, timeout=START_TIMEOUT):
        """Start, expecting the postmaster to refuse: returns what it
        logged this time."""
        try:
            self.start(timeout=timeout)
        except PgError:
            self.proc.wait(timeout=timeout)
            return self.log_text()
        raise AssertionError("postgres started; expected it to refuse\n%s"
                             % self.log_tail())

    def stop(self, mode="fast", timeout=STOP_TIMEOUT):
        """pg_ctl stop -m MODE -w, then reap the postmaster; returns its
        exit status."""
        self.run("pg_ctl", "stop", "-D", self.data, "-m", mode, "-w",
                 "-t", "%d" % timeout, timeout=timeout + 10)
        rc = self.proc.wait(timeout=timeout)
        return rc

    def kill(self, sig=signal.SIGKILL, stop_children=False):
        """Signal the postmaster (SIGKILL: a crash).  With stop_children,
        SIGSTOP its children first, so that they stay, attached, after it
        dies.  Returns the children's pids."""
        children = [p for p in self.pids() if p != self.pid]
        if stop_children:
            for p in children:
                _signal(p, signal.SIGSTOP)
            # Wait until each has stopped or ended: a child already
            # exiting (a backend whose client has just gone) never stops.
            # A stopped one may still have detached first; callers that
            # count attaches look at its mappings.
            children = [p for p in children if _stopped(p)]
        _signal(self.pid, sig)
        if sig == signal.SIGKILL:
            if self.proc.pid == self.pid:
                self.proc.wait(timeout=10)
            else:
                _wait_exit(self.pid)
        return children

    def wait_gone(self, timeout=STOP_TIMEOUT):
        """Wait until no process of the server is left; True if so."""
        deadline = time.monotonic() + timeout
        while self.pids():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    # -- clients -------------------------------------------------------------

    def query(self, sql, db="postgres", timeout=60):
        """Run sql with psql; returns its output, unaligned, tuples only
        (rows on lines, columns split by |), stripped."""
        r = self.run("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                     "-h", self.base, "-p", PG_PORT, "-U", PG_SUPERUSER,
                     "-d", db, "-c", sql, timeout=timeout)
        return r.stdout.strip()

    def pgbench(self, *args, db="postgres", timeout=120):
        """pgbench ARGS against the server; returns the CompletedProcess
        (raises PgError on failure)."""
        return self.run("pgbench", "-h", self.base, "-p", PG_PORT,
                        "-U", PG_SUPERUSER, *args, db, timeout=timeout)

    # -- what runs -------------------------------------------------------------

    def pidfile(self):
        """The lines of postmaster.pid, or None."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return f.read().splitlines()
        except OSError:
            return None

    def pids(self):
        """Every live process of this server: the postmaster and every
        postgres process working in the data directory."""
        exe = os.path.realpath(os.path.join(self.bindir, "postgres"))
        data = os.path.realpath(self.data)
        found = set()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            if _readlink("/proc/%d/exe" % pid) != exe:
                continue
            if pid == self.pid or \
                    _readlink("/proc/%d/cwd" % pid) in (data, self.base):
                found.add(pid)
        return found

    def log_text(self):
        """What the server logged since the last start."""
        try:
            with open(self.logfile, errors="replace") as f:
                f.seek(self._log_offset)
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=40):
        return "server log (%s):\n%s" % (
            self.logfile, "\n".join(self.log_text().splitlines()[-n:]))

    # -- cleanup -----------------------------------------------------------------

    def cleanup(self):
        """SIGKILL every process of the server, reap, remove the
        directory.  Returns the pids it had to kill."""
        killed = set()
        for _ in range(50):
            left = self.pids() | (
                {self.proc.pid} if self.proc and self.proc.poll() is None
                else set())
            if not left:
                break
            for p in left:
                _signal(p, signal.SIGKILL)
                _signal(p, signal.SIGCONT)
            killed |= left
            if self.proc is not None:
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            time.sleep(0.05)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.shmfs_root is None and self.shm:
            # on the kernel, a killed server's segment would outlive us
            key, shmid = self.shm
            if any(s["shmid"] == shmid and s["key"] == key
                   for s in kernel_segments()):
                ctypes.CDLL(None).shmctl(shmid, 0, None)    # IPC_RMID
        shutil.rmtree(self.base, ignore_errors=True)
        return killed


def _s32(v):
    """A key as the C int it is."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _state(pid):
    """The state letter of /proc/PID/stat, or None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _stopped(pid, timeout=10.0):
    """Wait until a process sent SIGSTOP has stopped (True) or ended
    instead (False): one in the middle of exiting never stops."""
    deadline = time.monotonic() + timeout
    while True:
        state = _state(pid)
        if state in ("T", "t"):
            return True
        if state in (None, "Z", "X"):
            return False
        if time.monotonic() > deadline:
            raise AssertionError("pid %d neither stopped nor ended (%s)"
                                 % (pid, state))
        time.sleep(0.005)


def _wait_exit(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while os.path.exists("/proc/%d/exe" % pid) and \
            _readlink("/proc/%d/exe" % pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def stress_build():
    return os.path.abspath(os.environ.get("SHMFS_BUILD") or
                           os.path.join(REPO, "build"))


# -- fixtures ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg_bindir():
    """The installed PostgreSQL's bin directory (installed when missing);
    skips the test when PostgreSQL cannot be installed."""
    bindir, why = ensure_postgres()
    if bindir is None:
        pytest.skip("PostgreSQL cannot run here: " + why)
    return bindir


@pytest.fixture
def pg_factory(pg_bindir):
    """pg_factory(shmfs_root, build=None, **conf) -> a PgServer (not yet
    started); each one is cleaned up after the test, passed or not, before
    the mounts the test made are torn down (take this fixture after
    shmfs/shmfs_factory)."""
    servers = []

    def make(shmfs_root, build=None, **conf):
        if shmfs_root is not None:
            why = runtime_problem(pg_bindir, build or stress_build())
            if why:
                pytest.skip(why)
        srv = PgServer(pg_bindir, shmfs_root=shmfs_root, build=build,
                       conf={k: str(v) for k, v in conf.items()})
        servers.append(srv)
        return srv

    yield make
    leftovers = []
    for srv in reversed(servers):
        killed = srv.cleanup()
        left = srv.pids()
        if left:
            leftovers.append("%s: processes %s survived SIGKILL"
                             % (srv.data, sorted(left)))
        if os.path.exists(srv.base):
            leftovers.append("%s not removed" % srv.base)
        del killed
    if leftovers:
        pytest.fail("PostgreSQL cleanup:\n" + "\n".join(leftovers),
                    pytrace=False)
