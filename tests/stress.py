#!/usr/bin/env python3
"""The load test: a fresh shmfs daemon, shmfs_stress on it, the invariants.

    python3 tests/stress.py [-n PROCS] [-t SECONDS] [-s SEED] [-k KEYS]
                            [--users] [--build DIR]
                            [--kill-every SECS] [--upgrade-every SECS]

(`make stress`, `make stress STRESS_ARGS="-n 32 -t 300"`.)  Mounts its own
daemon (BUILD/shmfs -f -o allow_other) on a new directory, runs
build/progs/shmfs_stress under LD_PRELOAD=libshmfs-preload.so, and once
every client is gone checks the daemon's table:

    nattch 0 on every line of MNT/status, no removed segment left (SHM_DEST),
    stats: attaches 0, processes 0, pending_forks 0, handles 0,
    pages == the sum of the live segments' pages, memory <= pages * page,
    the daemon's VmRSS back near where it started, the daemon still serving
    (a create, attach, store, load, detach, remove round trip);

With --kill-every and --upgrade-every (`make stress-failover`), the serving
process is SIGKILLed, and replaced by `shmfs --upgrade`, that often during
the run: the holder's successors must keep every guarantee, and the time
from each kill to the next answered request and each upgrade's pause are
printed.

then removes every segment left and checks that pages, shmids and memory
are 0, and that the daemon unmounts cleanly (exit 0, nothing suspicious on
stderr).  Prints the operation count, the errors by errno and each
invariant; exits non-zero on any violation.  The functions are also used
by tests/test_stress.py and tests/test_faults.py.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)
import shmfs_client  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
SHM_DEST = 0o1000
# A daemon's VmRSS may grow by this much over a run without it being a
# leak (thread stacks and malloc arenas of the FUSE worker threads, pages
# of the published table): a leak per operation would be far more.
RSS_SLACK_KB = 16 * 1024

SUSPICIOUS = re.compile(
    r"ERROR|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
    r"runtime error|Segmentation|segfault|Assertion|assertion|double free|"
    r"corrupted|stack smashing|Aborted|BUG|panic|[Dd]eadlock|"
    r"Invalid (read|write|free)|uninitialised|definitely lost")


def default_build():
    return os.path.abspath(os.environ.get("SHMFS_BUILD") or
                           os.path.join(REPO, "build"))


def mountinfo_unescape(field):
    """A mount point as mountinfo writes it, with \\ooo escapes (a space
    is \\040) decoded; other bytes, UTF-8 included, stay as they are."""
    return re.sub(r"\\([0-3][0-7][0-7])", lambda m: chr(int(m.group(1), 8)),
                  field)


def ismounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if mountinfo_unescape(line.split()[4]) == path:
                return True
    return False


def sanitizer_preloads(lib):
    """An ASan-built preload library needs the ASan runtime loaded first."""
    try:
        out = subprocess.run(["ldd", lib], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [m.group(1) for m in
            re.finditer(r"\blibasan\.so\S* => (\S+)", out)]


def preload_env(build, root, **extra):
    lib = os.path.join(build, "libshmfs-preload.so")
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(sanitizer_preloads(lib) + [lib])
    env["SHMFS_ROOT"] = root
    env.pop("SHMFS_DEBUG", None)
    env.update(extra)
    return env


def stress_prog(build):
    return os.path.join(build, "progs", "shmfs_stress")


# -- reading the daemon ------------------------------------------------------

def stats(root):
    text = os.getxattr(root, "user.shmfs.stats").decode()
    return {k: int(v) for k, v in (l.split() for l in text.splitlines())}


def status(root):
    lines = shmfs_client.read_status(root).splitlines()[1:]
    return [shmfs_client.parse_status_line(l) for l in lines if l.strip()]


def vm_kb(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def instrumented(pid):
    """True when the daemon runs under ASan or valgrind: their shadow
    memory and quarantines make VmRSS mean nothing about leaks."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            maps = f.read()
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read()
    except OSError:
        return False
    return "libasan" in maps or "vgpreload" in maps or b"valgrind" in cmd


def settle(root, timeout=10.0):
    """The kernel sends release after the last munmap, and forget after
    it drops a node, asynchronously: wait until the daemon holds no handle,
    attach, process, fork or freed segment."""
    deadline = time.monotonic() + timeout
    while True:
        st = stats(root)
        # objects: a freed segment stays until the kernel forgets its
        # node (after the daemon invalidates the name), also asynchronous
        if not (st["handles"] or st["attaches"] or st["processes"] or
                st["pending_forks"] or st["objects"] != st["shmids"]) or \
                time.monotonic() > deadline:
            return st
        time.sleep(0.02)


def check_invariants(root, daemon_pid=None, rss_start_kb=None,
                     serve=True, settle_timeout=10.0):
    """The table once every client is gone.  Returns a list of
    (name, ok, detail)."""
    res = []

    def check(name, ok, detail=""):
        res.append((name, bool(ok), detail))

    st = settle(root, settle_timeout)
    lines = status(root)
    att = [l for l in lines if l["nattch"]]
    check("nattch 0 on every status line", not att,
          "; ".join("shmid %d nattch %d" % (l["shmid"], l["nattch"])
                    for l in att[:10]))
    dest = [l for l in lines if l["mode"] & SHM_DEST]
    check("every removed segment freed (no SHM_DEST line)", not dest,
          "; ".join("shmid %d mode %o" % (l["shmid"], l["mode"])
                    for l in dest[:10]))
    check("status lists every shmid", len(lines) == st["shmids"],
          "%d lines, shmids %d" % (len(lines), st["shmids"]))
    for k in ("attaches", "processes", "pending_forks", "handles"):
        check("stats %s 0" % k, st[k] == 0, "%s %d" % (k, st[k]))
    pages = sum(-(-l["segsz"] // PAGE) for l in lines)
    check("stats pages == sum of live segments' pages", st["pages"] == pages,
          "pages %d, segments hold %d" % (st["pages"], pages))
    check("stats memory <= pages * %d" % PAGE, st["memory"] <= st["pages"] * PAGE,
          "memory %d, pages %d" % (st["memory"], st["pages"]))
    check("stats objects == shmids", st["objects"] == st["shmids"],
          "objects %d, shmids %d" % (st["objects"], st["shmids"]))
    if daemon_pid is not None and rss_start_kb is not None:
        vm = vm_kb(daemon_pid)
        rss = vm.get("VmRSS", 0)
        detail = "VmRSS %d kB at the start, %d kB now (peak %d kB)" % (
            rss_start_kb, rss, vm.get("VmHWM", 0))
        if instrumented(daemon_pid):
            check("daemon VmRSS near its start (not measured: daemon "
                  "under a sanitizer or valgrind)", True, detail)
        else:
            check("daemon VmRSS within %d MiB of its start"
                  % (RSS_SLACK_KB // 1024),
                  rss <= rss_start_kb + RSS_SLACK_KB, detail)
    if serve:
        ok, detail = serves(root)
        check("daemon still serving", ok, detail)
    return res


def serves(root):
    """One round trip through every kind of request."""
    t = time.monotonic()
    try:
        c = shmfs_client.Client(root)
        try:
            shmid = c.shmget(0, 2 * PAGE + 1, 0o600)
            a = c.attach(shmid)
            a.write(PAGE, b"still serving")
            a.detach()
            b = c.attach(shmid, rdonly=True)
            data = b.read(PAGE, 13)
            nattch = c.stat(shmid)["nattch"]
            b.detach()
            c.rmid(shmid)
        finally:
            c.close()
    except OSError as e:
        return False, "round trip failed: %s" % e
    if data != b"still serving" or nattch != 1:
        return False, "read back %r, nattch %d" % (data, nattch)
    return True, "create/attach/store/load/detach/remove in %.1f ms" % (
        1000 * (time.monotonic() - t))


def remove_all(root):
    """IPC_RMID of every segment left; then nothing may be held."""
    c = shmfs_client.Client(root)
    try:
        for l in status(root):
            try:
                c.rmid(l["shmid"])
            except OSError:
                pass
    finally:
        c.close()
    st = settle(root)
    res = []
    for k in ("shmids", "pages", "memory", "attaches", "handles"):
        res.append(("after removing everything: %s 0" % k, st[k] == 0,
                    "%s %d" % (k, st[k])))
    return res


def print_checks(res, out=sys.stdout):
    for name, ok, detail in res:
        out.write("  %-4s %s%s\n" % ("ok" if ok else "FAIL", name,
                                     (": " + detail) if detail else ""))


# -- a daemon that stops answering ---------------------------------------------

FUSECTL = "/sys/fs/fuse/connections"


def mount_minor(root):
    """The FUSE connection number of the mount at root (its device minor)."""
    path = os.path.realpath(root)
    minor = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mp = mountinfo_unescape(fields[4])
            if mp == path and " - fuse" in line:
                minor = int(fields[2].split(":")[1])
    return minor


def daemon_threads(pid):
    """What each thread of the daemon waits in (kernel wchan and stack)."""
    out = []
    try:
        tids = sorted(os.listdir("/proc/%d/task" % pid), key=int)
    except OSError:
        return ["daemon %d is gone" % pid]
    for tid in tids:
        base = "/proc/%d/task/%s/" % (pid, tid)
        try:
            with open(base + "wchan") as f:
                wchan = f.read().strip() or "-"
            with open(base + "status") as f:
                state = [l.split()[1] for l in f if l.startswith("State:")][0]
            with open(base + "stack") as f:
                stack = [l.split("]", 1)[1].strip() for l in f][:4]
        except (OSError, IndexError):
            continue
        out.append("thread %s %s %s: %s" % (tid, state, wchan,
                                            " < ".join(stack)))
    return out


def abort_connection(minor):
    """echo 1 > /sys/fs/fuse/connections/N/abort, mounting fusectl for
    the moment if it is not mounted: every request waiting on the mount
    fails with ENOTCONN, so that blocked clients (and this test) go on."""
    mounted_here = False
    if not os.path.ismount(FUSECTL):
        r = subprocess.run(["mount", "-t", "fusectl", "none", FUSECTL],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return "cannot mount fusectl: %s" % r.stderr.strip()
        mounted_here = True
    try:
        with open(os.path.join(FUSECTL, str(minor), "abort"), "w") as f:
            f.write("1")
        return "aborted FUSE connection %d" % minor
    except OSError as e:
        return "cannot abort FUSE connection %d: %s" % (minor, e)
    finally:
        if mounted_here:
            subprocess.run(["umount", FUSECTL], capture_output=True)


class Watchdog:
    """If the block has not ended after `seconds`, the daemon is taken to
    hang: its threads' wait channels are recorded and the FUSE connection
    is aborted, so that nothing waits for it forever (a daemon that
    deadlocks leaves its clients in the D state, beyond SIGKILL)."""

    def __init__(self, root, daemon_pid, seconds):
        self.root = root
        self.pid = daemon_pid
        self.seconds = seconds
        self.minor = mount_minor(root)
        self.fired = False
        self.report = []
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        return False

    def _fire(self):
        self.fired = True
        self.report = ["no end after %g s: the daemon hangs" % self.seconds]
        self.report += daemon_threads(self.pid)
        if self.minor is not None:
            self.report.append(abort_connection(self.minor))

    def deadlock_in(self, wchan):
        return any(" %s:" % wchan in l for l in self.report)

    def text(self):
        return "\n".join(self.report)


# -- a daemon of our own -----------------------------------------------------

class Daemon:
    """BUILD/shmfs -f -o allow_other[,OPTS] on a new directory."""

    def __init__(self, build, opts=""):
        self.build = build
        self.root = tempfile.mkdtemp(prefix="shmfs-stress-")
        os.chmod(self.root, 0o755)
        self.errf = tempfile.TemporaryFile(prefix="shmfs-stress-err-")
        o = "allow_other" + ("," + opts if opts else "")
        self.argv = [os.path.join(build, "shmfs"), "-f", "-o", o, self.root]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self.errf, stderr=self.errf)
        deadline = time.monotonic() + 30
        while not (ismounted(self.root) and os.path.ismount(self.root)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("%s did not mount:\n%s" % (
                    " ".join(self.argv), self.stderr_text()))
            time.sleep(0.01)

        self.holder = int(os.getxattr(self.root, "user.shmfs.holder_pid"))

    @property
    def pid(self):
        return self.proc.pid

    def server_pid(self):
        return int(os.getxattr(self.root, "user.shmfs.pid"))

    def stderr_text(self):
        self.errf.flush()
        self.errf.seek(0)
        return self.errf.read().decode(errors="replace")

    def stop(self, first_killed=False):
        """Unmount and wait; returns a list of problems.  first_killed:
        the daemon started was SIGKILLed on purpose (a successor serves)."""
        problems = []
        last = 0
        if self.holder and ismounted(self.root):
            try:
                last = self.server_pid()
            except OSError:
                pass
        if ismounted(self.root):
            r = subprocess.run(["fusermount3", "-u", self.root],
                               capture_output=True, text=True)
            if r.returncode != 0:
                problems.append("fusermount3 -u: %s" % r.stderr.strip())
                subprocess.run(["fusermount3", "-uz", self.root],
                               capture_output=True)
        try:
            rc = self.proc.wait(timeout=60)
            if rc != 0 and not (first_killed and rc == -9):
                problems.append("daemon exited with status %d" % rc)
        except subprocess.TimeoutExpired:
            problems.append("daemon still running 60 s after unmount")
            self.proc.kill()
            self.proc.wait()
        for pid, who in ((last, "server"), (self.holder, "holder")):
            deadline = time.monotonic() + 60
            while pid and pid != self.proc.pid and alive(pid):
                if time.monotonic() > deadline:
                    problems.append("%s %d still running 60 s after "
                                    "unmount" % (who, pid))
                    break
                time.sleep(0.02)
        try:
            os.rmdir(self.root)
        except OSError as e:
            problems.append("mount point: %s" % e)
        for line in self.stderr_text().splitlines():
            if SUSPICIOUS.search(line):
                problems.append("daemon stderr: %s" % line)
        return problems


def alive(pid):
    """A process that is not gone nor a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


class Chaos(threading.Thread):
    """Kills the serving process every kill_every seconds and upgrades it
    every upgrade_every seconds (0: never), while a run goes on; records
    the time from each kill to the next request answered (by the
    successor) and each upgrade's pause, as `shmfs --upgrade` reports it."""

    def __init__(self, daemon, kill_every, upgrade_every):
        super().__init__(daemon=True)
        self.d = daemon
        self.kill_every = kill_every
        self.upgrade_every = upgrade_every
        self.stopping = threading.Event()
        self.kill_ms = []
        self.pause_ms = []
        self.failures = []
        self.first_killed = False

    def _kill(self):
        old = self.d.server_pid()
        t = time.monotonic()
        os.kill(old, 9)
        self.first_killed |= old == self.d.pid
        while True:
            try:
                new = self.d.server_pid()  # a request: who answers it?
            except OSError as e:
                self.failures.append("after a kill: %s" % e)
                return
            if new != old:
                break
            if time.monotonic() - t > 30:
                self.failures.append("no successor 30 s after a kill")
                return
            time.sleep(0.0005)
        self.kill_ms.append(1000 * (time.monotonic() - t))

    def _upgrade(self):
        r = subprocess.run([os.path.join(self.d.build, "shmfs"), "--upgrade",
                            self.d.root], capture_output=True, text=True,
                           timeout=120)
        m = re.search(r"paused ([0-9.]+) ms", r.stdout)
        if r.returncode != 0 or not m:
            self.failures.append("upgrade: status %d: %s" % (
                r.returncode, (r.stderr or r.stdout).strip()))
            return
        self.pause_ms.append(float(m.group(1)))

    def run(self):
        t0 = time.monotonic()
        nk = nu = 1
        while not self.stopping.is_set():
            tk = t0 + nk * self.kill_every if self.kill_every else None
            tu = t0 + nu * self.upgrade_every if self.upgrade_every else None
            nxt = min(x for x in (tk, tu, t0 + 3600) if x is not None)
            if self.stopping.wait(max(0.0, nxt - time.monotonic())):
                break
            try:
                if tk is not None and nxt == tk:
                    nk += 1
                    self._kill()
                else:
                    nu += 1
                    self._upgrade()
            except (OSError, subprocess.SubprocessError) as e:
                self.failures.append(str(e))

    def stop(self):
        self.stopping.set()
        self.join()

    def summary(self):
        def med(v):
            return sorted(v)[len(v) // 2] if v else 0.0
        return ("failover: %d kills (to the next answer: median %.1f ms, "
                "max %.1f ms), %d upgrades (pause: median %.1f ms, max "
                "%.1f ms)" % (len(self.kill_ms), med(self.kill_ms),
                              max(self.kill_ms or [0]), len(self.pause_ms),
                              med(self.pause_ms), max(self.pause_ms or [0])))


# -- the run -----------------------------------------------------------------

def hang_limit(secs):
    """How long a run of secs seconds may take before it is a hang."""
    return secs + 60 + secs // 2


def run_stress(build, root, procs, secs, seed=0, keys=8, users=False,
               extra=(), timeout=None):
    """Runs shmfs_stress; returns (returncode, stdout, RESULT dict)."""
    argv = [stress_prog(build), "-n", str(procs), "-t", str(secs),
            "-k", str(keys)]
    if seed:
        argv += ["-s", str(seed)]
    if users:
        argv.append("-u")
    argv += list(extra)
    if timeout is None:
        timeout = hang_limit(secs) + 120
    p = subprocess.run(argv, env=preload_env(build, root),
                       stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout)
    result = None
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
    out = p.stdout + (("stderr:\n" + p.stderr) if p.stderr.strip() else "")
    return p.returncode, out, result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--procs", type=int, default=16)
    ap.add_argument("-t", "--time", type=int, default=60)
    ap.add_argument("-s", "--seed", type=int, default=0,
                    help="0: random (printed)")
    ap.add_argument("-k", "--keys", type=int, default=8)
    ap.add_argument("--users", action="store_true",
                    help="odd workers run as uid 1000 (default when root)")
    ap.add_argument("--no-users", action="store_true")
    ap.add_argument("--build", default=default_build())
    ap.add_argument("--opts", default="", help="more daemon -o options")
    ap.add_argument("--kill-every", type=float, default=0,
                    help="SIGKILL the serving process every SECS seconds")
    ap.add_argument("--upgrade-every", type=float, default=0,
                    help="shmfs --upgrade the mount every SECS seconds")
    args = ap.parse_args(argv)
    build = os.path.abspath(args.build)
    seed = args.seed or int.from_bytes(os.urandom(4), "little") % 10**9 + 1
    users = not args.no_users and (args.users or os.geteuid() == 0)
    for f in (os.path.join(build, "shmfs"), stress_prog(build),
              os.path.join(build, "libshmfs-preload.so")):
        if not os.path.exists(f):
            sys.exit("stress: %s is missing (make all)" % f)

    print("stress: seed %d, %d processes, %d s, %d keys, build %s%s" % (
        seed, args.procs, args.time, args.keys, build,
        ", odd workers as uid 1000" if users else ""), flush=True)
    d = Daemon(build, args.opts)
    chaos = None
    bad = []
    try:
        time.sleep(0.2)
        rss0 = vm_kb(d.pid).get("VmRSS")
        t = time.monotonic()
        if args.kill_every or args.upgrade_every:
            chaos = Chaos(d, args.kill_every, args.upgrade_every)
            chaos.start()
            rss0 = None  # each successor starts anew: no RSS to compare
        with Watchdog(d.root, d.pid, hang_limit(args.time)) as wd:
            try:
                rc, out, result = run_stress(build, d.root, args.procs,
                                             args.time, seed, args.keys, users)
            except subprocess.TimeoutExpired as e:
                rc, result = -1, None
                out = (e.stdout or b"").decode(errors="replace")
                bad.append("shmfs_stress did not finish (hang)")
            if chaos:
                chaos.stop()
                fo = ["failover: %s" % f for f in chaos.failures]
                if not chaos.kill_ms and args.kill_every:
                    fo.append("failover: no kill happened")
                if not chaos.pause_ms and args.upgrade_every:
                    fo.append("failover: no upgrade happened")
            sys.stdout.write(out)
            if chaos:
                print("  %-4s %s" % ("FAIL" if fo else "ok", chaos.summary()))
                for f in fo:
                    print("  FAIL %s" % f)
                bad += fo
            if rc != 0:
                bad.append("shmfs_stress exited with status %d" % rc)
            if result is None:
                bad.append("shmfs_stress printed no RESULT line")
            if not wd.fired:
                print("invariants, every client gone (%.1f s run):"
                      % (time.monotonic() - t))
                res = check_invariants(d.root, d.server_pid(), rss0)
                res += remove_all(d.root)
                print_checks(res)
                bad += [n for n, ok, _ in res if not ok]
        if wd.fired:
            print("  FAIL the daemon hangs:\n    " +
                  "\n    ".join(wd.report))
            bad.append("the daemon hangs (deadlock): see above")
    finally:
        if chaos and chaos.is_alive():
            chaos.stop()
        problems = d.stop(first_killed=bool(chaos and chaos.first_killed))
    for p in problems:
        print("  FAIL %s" % p)
    bad += problems
    if not problems:
        print("  ok   daemon unmounted cleanly, exit 0, quiet stderr")
    if bad:
        print("stress: FAILED (seed %d): %s" % (seed, "; ".join(bad)))
        return 1
    print("stress: passed (seed %d)" % seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
