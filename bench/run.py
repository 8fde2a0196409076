#!/usr/bin/python3
"""Benchmark shmfs against the kernel's own System V shared memory.

    /usr/bin/python3 bench/run.py [--quick] [--only GROUP[,GROUP]] [--rounds N]
                                  [--results FILE]

Builds build/bench/shmbench from bench/shmbench.c, then for each metric
group and each round runs shmbench once on the kernel's shmget/shmat/...
and once on a freshly mounted shmfs daemon through libshmfs (the order
alternates from round to round), and prints one table: metric, kernel
median, shmfs median, the median of the per-round ratios shmfs/kernel and
their min..max.  The same table, the machine and the command line go to
bench/results.md.  Nothing here asserts a time.  Progress goes to stderr.

Groups: control, requests, data, scale, memory (see bench/README.md).
Runs as root; every sysctl it changes is restored and every kernel
segment it created is removed on the way out, also on error or Ctrl-C.
Standard library only.
"""

import argparse
import ctypes
import datetime
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
BUILD = os.path.join(REPO, "build")
DAEMON = os.path.join(BUILD, "shmfs")
SHMBENCH = os.path.join(BUILD, "bench", "shmbench")
SOURCE = os.path.join(BENCH, "shmbench.c")
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-D_GNU_SOURCE"]

# Keys are KEY_BASE .. KEY_BASE + KEY_SPAN - 1 ("[;" in ASCII, then the
# index): run.py checks that no live kernel segment uses one.
KEY_BASE = 0x5B3C0000
KEY_SPAN = 0x10000
SHMMNI = "/proc/sys/kernel/shmmni"
IPC_RMID = 0

GROUPS = ["control", "requests", "data", "scale", "memory", "failover"]
# Request types the kernel sends without waiting for an answer.
ASYNC_TYPES = ("release", "forget")
COUNT_KINDS = [  # (shmbench count kind, what the row calls it)
    ("get", "shmget of an existing key"),
    ("create", "shmget(IPC_PRIVATE) creating"),
    ("at", "shmat"),
    ("dt", "shmdt"),
    ("dtdirty", "shmdt after storing one page"),
    ("stat", "shmctl IPC_STAT"),
    ("set", "shmctl IPC_SET"),
    ("rmid", "shmctl IPC_RMID"),
    ("info", "shmctl IPC_INFO"),
    ("shminfo", "shmctl SHM_INFO"),
    ("shmstat", "shmctl SHM_STAT"),
    ("lock", "shmctl SHM_LOCK"),
    ("unlock", "shmctl SHM_UNLOCK"),
]
CTL_ROWS = [
    ("get_existing", "shmget of an existing key"),
    ("private_rmid", "shmget(IPC_PRIVATE) + IPC_RMID"),
    ("at_dt", "shmat + shmdt, untouched"),
    ("at_store_dt", "shmat + store one page + shmdt"),
    ("ipc_stat", "shmctl IPC_STAT"),
    ("ipc_set", "shmctl IPC_SET"),
    ("fork_exit_wait", "fork + exit + wait, holding an attach"),
]

MiB = 1 << 20
GiB = 1 << 30


def log(msg):
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def size_text(n):
    if n % GiB == 0:
        return "%d GiB" % (n // GiB)
    return "%d MiB" % (n // MiB)


def count_text(n):
    return "{:,}".format(n)


class Params:
    def __init__(self, quick):
        self.quick = quick
        self.calls = 1000 if quick else 10000
        self.count_n = 200 if quick else 1000
        self.touch = 16 * MiB if quick else 256 * MiB
        self.big = 64 * MiB if quick else 1 * GiB
        self.hot = 192 * MiB if quick else 3 * GiB
        self.seconds = 5 if quick else 60
        self.memcpy_s = 0.5 if quick else 2.0
        self.pingpong = 100000 if quick else 1000000
        self.counts = [10, 100, 1000] if quick else [10, 1000, 32768]


# ---------------------------------------------------------------- results

class Row:
    def __init__(self, label, only_shmfs=False):
        self.label = label
        self.only_shmfs = only_shmfs
        self.vals = {"kernel": {}, "shmfs": {}}  # side -> round -> value
        self.text = {}  # round -> text for the shmfs cell (requests rows)


class Results:
    def __init__(self):
        self.rows = {}
        self.order = []
        self.notes = []

    def row(self, key, label, only_shmfs=False):
        if key not in self.rows:
            self.rows[key] = Row(label, only_shmfs)
            self.order.append(key)
        return self.rows[key]

    def put(self, key, label, side, rnd, value, only_shmfs=False):
        if value is not None:
            self.row(key, label, only_shmfs).vals[side][rnd] = float(value)

    def note(self, msg):
        if msg not in self.notes:
            self.notes.append(msg)
            log("note: " + msg)


def fmt(v):
    if v is None:
        return "—"
    a = abs(v)
    if a >= 100:
        s = "%.0f" % v
    elif a >= 10:
        s = "%.1f" % v
    elif a >= 1:
        s = "%.2f" % v
    elif a >= 0.01 or a == 0:
        s = "%.3f" % v
    else:
        s = "%.2g" % v
    return s


def med(xs):
    return statistics.median(xs) if xs else None


def summarize(row):
    """kernel median, shmfs median, ratio median, ratio (or shmfs) range."""
    k, s = row.vals["kernel"], row.vals["shmfs"]
    km, sm = med(list(k.values())), med(list(s.values()))
    ratios = [s[r] / k[r] for r in s if r in k and k[r] > 0]
    if ratios:
        return km, sm, med(ratios), (min(ratios), max(ratios))
    xs = list(s.values()) or list(k.values())
    return km, sm, None, ((min(xs), max(xs)) if xs else None)


def table_rows(res):
    out = []
    for key in res.order:
        row = res.rows[key]
        km, sm, rm, rng = summarize(row)
        kcell = "—" if row.only_shmfs else fmt(km)
        scell = fmt(sm)
        if row.text:
            scell = row.text[max(row.text)]
        rcell = fmt(rm) if rm is not None else "—"
        gcell = "%s..%s" % (fmt(rng[0]), fmt(rng[1])) if rng else "—"
        out.append((row.label, kcell, scell, rcell, gcell))
    return out


HEAD = ("metric", "kernel", "shmfs", "ratio shmfs/kernel (median)", "min..max")


def print_table(res, stream):
    rows = [HEAD] + table_rows(res)
    w = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    for n, r in enumerate(rows):
        stream.write("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i])
                               for i, c in enumerate(r)).rstrip() + "\n")
        if n == 0:
            stream.write("  ".join("-" * x for x in w) + "\n")


def md_escape(s):
    return s.replace("|", "\\|")


def markdown_table(res):
    lines = ["| " + " | ".join(HEAD) + " |",
             "|---|---:|---|---:|---:|"]
    for r in table_rows(res):
        lines.append("| " + " | ".join(md_escape(c) for c in r) + " |")
    return "\n".join(lines)


def markdown_details(res):
    lines = ["| metric | side | median | min | max | every round |",
             "|---|---|---:|---:|---:|---|"]
    for key in res.order:
        row = res.rows[key]
        for side in ("kernel", "shmfs"):
            v = row.vals[side]
            if not v:
                continue
            xs = [v[r] for r in sorted(v)]
            lines.append("| %s | %s | %s | %s | %s | %s |" % (
                md_escape(row.label), side, fmt(med(xs)), fmt(min(xs)),
                fmt(max(xs)), " ".join(fmt(x) for x in xs)))
    return "\n".join(lines)


# ---------------------------------------------------------------- machine

def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = meminfo()["MemTotal"]

    def read(path):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return "?"
    return {
        "nproc": str(os.cpu_count()),
        "model name": model,
        "kernel": platform.release(),
        "memory": "%.1f GiB" % (mem / GiB),
        "vm.dirty_background_ratio / dirty_ratio": "%s / %s" % (
            read("/proc/sys/vm/dirty_background_ratio"),
            read("/proc/sys/vm/dirty_ratio")),
        "THP for shmem": read(
            "/sys/kernel/mm/transparent_hugepage/shmem_enabled"),
        "load average at start": " ".join(
            read("/proc/loadavg").split()[:3]),
    }


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, rest = line.split(":", 1)
            out[name] = int(rest.split()[0]) * 1024
    return out


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            name, rest = line.split(":", 1)
            if rest.strip().endswith("kB"):
                out[name] = int(rest.split()[0]) * 1024
    return out


# ---------------------------------------------------------------- cleanup

class Restore:
    """Sysctls changed by this run, put back by restore()."""

    def __init__(self):
        self.saved = []

    def write(self, path, value):
        with open(path) as f:
            old = f.read().strip()
        if old == str(value):
            return
        self.saved.append((path, old))
        log("setting %s = %s (was %s)" % (path, value, old))
        with open(path, "w") as f:
            f.write(str(value))

    def restore(self):
        while self.saved:
            path, old = self.saved.pop()
            try:
                with open(path, "w") as f:
                    f.write(old)
                log("restored %s = %s" % (path, old))
            except OSError as e:
                log("could not restore %s to %s: %s" % (path, old, e))


LIBC = ctypes.CDLL(None, use_errno=True)


def kernel_segments():
    """(shmid, key, cpid) of every live kernel segment."""
    segs = []
    with open("/proc/sysvipc/shm") as f:
        next(f)
        for line in f:
            p = line.split()
            segs.append((int(p[1]), int(p[0]) & 0xFFFFFFFF, int(p[4])))
    return segs


def remove_kernel_leftovers(pids=()):
    """Removes kernel segments with one of our keys, and private ones
    created by one of pids: shmbench processes that have just exited, whose
    pids the kernel will not hand out again before it wraps around."""
    n = 0
    for shmid, key, cpid in kernel_segments():
        if (KEY_BASE <= key < KEY_BASE + KEY_SPAN or
                (key == 0 and cpid in pids)):
            if LIBC.shmctl(shmid, IPC_RMID, None) == 0:
                n += 1
            else:
                log("could not remove kernel shmid %d: %s" %
                    (shmid, os.strerror(ctypes.get_errno())))
    return n


# ---------------------------------------------------------------- mount

ARENA = False  # --arena: shmfs mounts with -o no_passthrough
URING = False  # --uring: shmfs mounts with -o uring,no_failover
URING_PARAM = "/sys/module/fuse/parameters/enable_uring"


class Mount:
    """A fresh shmfs daemon on a temporary directory, always unmounted."""

    def __init__(self, opts="allow_other,shmmni=32768"):
        if ARENA:
            opts += ",no_passthrough"
        if URING:
            opts += ",uring,no_failover"
        self.root = tempfile.mkdtemp(prefix="shmbench-")
        os.chmod(self.root, 0o755)
        self.err = tempfile.TemporaryFile(prefix="shmbench-daemon-")
        self.proc = subprocess.Popen(
            [DAEMON, "-f", "-o", opts, self.root],
            stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.root):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = self.stderr_text()
                self.close()
                raise RuntimeError("shmfs did not mount: %s" % text.strip())
            time.sleep(0.01)

    def stderr_text(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def requests(self):
        text = os.getxattr(self.root, "user.shmfs.requests").decode()
        out = {}
        for line in text.splitlines():
            if line.strip():
                name, n = line.split()
                out[name] = int(n)
        return out

    def pids(self):
        """The serving process and the holder (user.shmfs.*pid)."""
        try:
            return [int(os.getxattr(self.root, "user.shmfs." + n))
                    for n in ("pid", "holder_pid")]
        except OSError:
            return []

    def close(self):
        others = [p for p in self.pids() if p and p != self.pid]
        if os.path.ismount(self.root):
            r = subprocess.run(["fusermount3", "-u", self.root],
                               capture_output=True)
            if r.returncode != 0:
                log("fusermount3 -u failed (%s), trying -uz" %
                    r.stderr.decode(errors="replace").strip())
                subprocess.run(["fusermount3", "-uz", self.root],
                               capture_output=True)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log("daemon %d did not exit; SIGTERM" % self.pid)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        deadline = time.monotonic() + 10
        for pid in others:  # a successor, the holder: gone with the mount
            while os.path.exists("/proc/%d" % pid) and \
                    time.monotonic() < deadline:
                time.sleep(0.01)
        try:
            os.rmdir(self.root)
        except OSError:
            pass
        text = self.stderr_text().strip()
        self.err.close()
        if text:
            log("daemon stderr:\n" + text)
        if self.proc.returncode not in (0, None, -signal.SIGKILL):
            log("daemon exited with status %d" % self.proc.returncode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- shmbench

def build():
    for path in (DAEMON, os.path.join(BUILD, "libshmfs.so")):
        if not os.path.exists(path):
            sys.exit("run.py: %s is missing: run 'make all' first" % path)
    os.makedirs(os.path.dirname(SHMBENCH), exist_ok=True)
    cmd = (["gcc"] + CFLAGS + ["-I" + os.path.join(REPO, "include"),
                               "-o", SHMBENCH, SOURCE, "-L" + BUILD,
                               "-lshmfs", "-Wl,-rpath," + BUILD])
    log("building: " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def shmbench(side, args, mount=None, on_sync=None, daemon_cpu=False):
    """Runs shmbench; returns its "name value" results as a dict.
    on_sync(name) is called at each @name sync point."""
    cmd = [SHMBENCH, "-b", side, "-k", "%#x" % KEY_BASE]
    env = dict(os.environ)
    if mount:
        env["SHMFS_ROOT"] = mount.root
        if daemon_cpu:
            cmd += ["-p", str(mount.pid)]
    cmd += [str(a) for a in args]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, text=True,
                            bufsize=1)
    out = {}
    try:
        for line in proc.stdout:
            line = line.strip()
            if line.startswith("@"):
                if on_sync:
                    on_sync(line[1:])
                proc.stdin.write("\n")
                proc.stdin.flush()
            elif line:
                name, value = line.split(None, 1)
                out[name] = float(value)
        proc.stdin.close()
        rc = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        if side == "kernel":
            n = remove_kernel_leftovers({proc.pid})
            if n:
                log("removed %d kernel segment(s) shmbench left" % n)
    if rc != 0:
        raise RuntimeError("shmbench %s failed with status %d" %
                           (" ".join(cmd[1:]), rc))
    return out


# ---------------------------------------------------------------- groups

HOLDERS = (1, 8, 64)


def group_control(res, p, side, rnd, mount):
    out = shmbench(side, ["ctl", p.calls], mount)
    for name, label in CTL_ROWS:
        res.put("ctl." + name, "%s (µs/call)" % label, side, rnd,
                out.get("ctl." + name))
    out = shmbench(side, ["holders", ",".join(map(str, HOLDERS)), p.calls],
                   mount)
    for h in HOLDERS:
        res.put("holders.%d" % h,
                "shmctl IPC_STAT, %d holding processes (ns/call)" % h,
                side, rnd, out.get("holders.%d.ipc_stat" % h))


def per_call_text(d):
    sync = {t: v for t, v in d.items() if t not in ASYNC_TYPES and v}
    asyn = {t: v for t, v in d.items() if t in ASYNC_TYPES and v}

    def items(x):
        return ", ".join("%s %s" % (t, fmt(v)) for t, v in sorted(x.items()))
    if not sync and not asyn:
        return "none"
    text = "%s sync" % fmt(sum(sync.values()))
    if sync:
        text += " (%s)" % items(sync)
    if asyn:
        text += " + async %s" % items(asyn)
    return text


def group_requests(res, p, side, rnd, mount):
    if side != "shmfs":
        return
    time.sleep(0.2)
    a = mount.requests()
    b = mount.requests()
    # What reading the counters costs (one or more getxattr): subtracted.
    overhead = {t: b[t] - a[t] for t in b}
    for kind, label in COUNT_KINDS:
        marks = {}

        def on_sync(name):
            if name == "done":
                # shmdt's release (and any forget) comes asynchronously.
                time.sleep(0.3 if kind in ("dt", "dtdirty", "rmid")
                           else 0.1)
            marks[name] = mount.requests()
        shmbench(side, ["count", kind, p.count_n], mount, on_sync)
        before, after = marks["ready"], marks["done"]
        per = {t: (after[t] - before[t] - overhead.get(t, 0)) / p.count_n
               for t in after}
        per = {t: v for t, v in per.items() if abs(v) > 1e-9}
        sync = sum(v for t, v in per.items() if t not in ASYNC_TYPES)
        key = "req." + kind
        row = res.row(key, "FUSE requests per %s" % label, only_shmfs=True)
        row.vals["shmfs"][rnd] = sync
        row.text[rnd] = per_call_text(per)
        if sync > 1.05:
            res.note("%s takes %s synchronous FUSE requests per call: %s" % (
                label, fmt(sync), per_call_text(per)))
        time.sleep(0.1)


KILLS, UPGRADES = 20, 10


def group_failover(res, p, side, rnd, mount):
    """shmfs only: from a SIGKILL of the serving process to the next
    request answered (by the successor the holder starts), and the pause
    of an upgrade (shmfs --upgrade: from the old server's stop to the new
    one's first answer, as the holder measures it)."""
    if side != "shmfs":
        return
    kills = []
    for _ in range(KILLS):
        old = mount.pids()[0]
        t = time.monotonic()
        os.kill(old, signal.SIGKILL)
        while True:
            try:
                if int(os.getxattr(mount.root, "user.shmfs.pid")) != old:
                    break
            except OSError:
                pass
            if time.monotonic() - t > 10:
                raise RuntimeError("no successor 10 s after a kill")
        kills.append(1000 * (time.monotonic() - t))
        # servers that die within 0.5 s of their start, 5 in a row, end
        # the mount (a request that kills every server): not these
        time.sleep(0.6)
    pauses = []
    for _ in range(UPGRADES):
        r = subprocess.run([DAEMON, "--upgrade", mount.root],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r"paused ([0-9.]+) ms", r.stdout)
        if r.returncode or not m:
            raise RuntimeError("upgrade failed: %s" % r.stderr.strip())
        pauses.append(float(m.group(1)))
    res.put("fo.kill", "failover: SIGKILL to the next answer (ms, median "
            "of %d)" % KILLS, side, rnd, med(kills), only_shmfs=True)
    res.put("fo.killmax", "failover: SIGKILL to the next answer (ms, "
            "slowest of %d)" % KILLS, side, rnd, max(kills), only_shmfs=True)
    res.put("fo.upgrade", "failover: upgrade pause (ms, median of %d)"
            % UPGRADES, side, rnd, med(pauses), only_shmfs=True)


def group_data(res, p, side, rnd, mount):
    t, b = size_text(p.touch), size_text(p.big)
    out = shmbench(side, ["firsttouch", p.touch], mount)
    res.put("data.ft", "first-touch stores, fresh %s (GB/s)" % t, side, rnd,
            out.get("firsttouch.gbps"))
    res.put("data.ft_dt", "shmdt right after that first touch (ms)", side,
            rnd, out.get("firsttouch.detach_ms"))
    out = shmbench(side, ["memcpy", p.touch, p.memcpy_s], mount)
    res.put("data.mc_in", "memcpy into faulted %s (GB/s)" % t, side, rnd,
            out.get("memcpy.in_gbps"))
    res.put("data.mc_out", "memcpy out of faulted %s (GB/s)" % t, side, rnd,
            out.get("memcpy.out_gbps"))
    out = shmbench(side, ["pingpong", p.pingpong], mount)
    res.put("data.pp", "ping-pong via one cache line (ns/round trip)", side,
            rnd, out.get("pingpong.ns"))
    log("  %s: rewriting %s for %d s" % (side, b, p.seconds))
    out = shmbench(side, ["rewrite", p.big, p.seconds], mount,
                   daemon_cpu=True)
    rewrite_rows(res, "data.rw", "%s rewritten for %d s" % (b, p.seconds),
                 side, rnd, out)


def rewrite_rows(res, key, what, side, rnd, out):
    res.put(key, "%s (GB/s)" % what, side, rnd, out.get("rewrite.gbps"))
    res.put(key + "_cpu", "daemon CPU during that (s)", side, rnd,
            out.get("rewrite.daemon_cpu_s"), only_shmfs=True)
    res.put(key + "_pre", "  its first pass, faulting in (s)", side, rnd,
            out.get("rewrite.prefault_s"))
    if out.get("rewrite.prefault_complete") == 0:
        res.note("%s, %s: the first pass did not finish within the window"
                 % (what, side))


def run_timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def group_scale(res, p, side, rnd, mount):
    marks = {}
    top = p.counts[-1]

    def on_sync(name):
        m = {"mem": meminfo()}
        if mount:
            m["rss"] = proc_status(mount.pid)
        if name == "full":
            if mount:
                m["limits"] = open("/proc/%d/limits" % mount.pid).read()
                m["ls"] = run_timed(["ls", "-l", mount.root])
                m["cat"] = run_timed(
                    ["cat", os.path.join(mount.root, "status")])
            else:
                m["ls"] = run_timed(["ipcs", "-m"])
                m["cat"] = run_timed(["cat", "/proc/sysvipc/shm"])
        marks[name] = m

    out = shmbench(side, ["scale", ",".join(map(str, p.counts)), p.calls],
                   mount, on_sync)
    for c in p.counts:
        got = int(out.get("scale.%d.created" % c, 0))
        if got and got != c:
            why = os.strerror(int(out.get("scale.full_errno", 0)))
            if side == "kernel":
                why += "; the kernel's table also holds segments not ours"
            else:
                for line in marks["full"].get("limits", "").splitlines():
                    if line.startswith("Max open files"):
                        why += "; daemon: %s" % " ".join(line.split())
            res.note("%s held only %d segments where %d were asked "
                     "(shmget: %s)" % (side, got, c, why))
        res.put("scale.get.%d" % c, "shmget existing key, %s live (µs)"
                % count_text(c), side, rnd, out.get("scale.%d.get_us" % c))
    for c in p.counts:
        res.put("scale.stat.%d" % c, "IPC_STAT, %s live (µs)"
                % count_text(c), side, rnd, out.get("scale.%d.stat_us" % c))
    lo, hi = p.counts[0], top
    for what in ("get", "stat"):
        a = out.get("scale.%d.%s_us" % (lo, what))
        b = out.get("scale.%d.%s_us" % (hi, what))
        if a and b:
            res.put("scale.%s.growth" % what, "%s latency at %s / at %s (×)"
                    % ("shmget" if what == "get" else "IPC_STAT",
                       count_text(hi), count_text(lo)), side, rnd, b / a)
    res.put("scale.create", "shmget creating, average up to %s (µs)"
            % count_text(top), side, rnd, out.get("scale.create_us"))
    full = marks["full"]
    n = int(out["scale.created"])
    res.put("scale.ls", "`ls -l` of the root, %s keys (s; kernel: ipcs -m)"
            % count_text(top), side, rnd, full["ls"])
    res.put("scale.cat", "`cat status`, %s segments (s; kernel: "
            "/proc/sysvipc/shm)" % count_text(top), side, rnd, full["cat"])
    slab = [m["mem"]["Slab"] for m in (marks["start"], full)]
    if n >= 10000:  # with fewer, other activity moves Slab more than we do
        res.put("scale.slab", "kernel slab per one-page segment, unwritten "
                "(bytes, Δ Slab)", side, rnd, (slab[1] - slab[0]) / n)
    if mount:
        rss = full["rss"]["VmRSS"] - marks["start"]["rss"]["VmRSS"]
        res.put("scale.rss", "daemon VmRSS per segment beyond the data "
                "(bytes)", side, rnd, rss / n, only_shmfs=True)


def syncfs(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if LIBC.syncfs(fd) != 0:
            log("syncfs %s: %s" % (path, os.strerror(ctypes.get_errno())))
    finally:
        os.close(fd)


def group_memory(res, p, side, rnd, mount):
    b, h = size_text(p.big), size_text(p.hot)

    def snapshot():
        m = meminfo()
        anon = proc_status(mount.pid)["RssAnon"] if mount else 0
        return m, anon

    time.sleep(0.2)
    base_m, base_anon = snapshot()
    marks = {}

    def on_sync(name):
        marks["now"] = snapshot()
        if mount:
            # What the flusher does within dirty_expire_centisecs anyway:
            # write every dirty page of the segment back to the daemon.
            syncfs(mount.root)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                m = meminfo()
                if (m["Dirty"] + m["Writeback"] <= base_m["Dirty"] +
                        base_m["Writeback"] + 16 * MiB):
                    break
                time.sleep(0.1)
        marks["settled"] = snapshot()

    shmbench(side, ["mem", p.big], mount, on_sync)

    def in_use(s):
        m, anon = s
        return (m["Cached"] - base_m["Cached"] + anon - base_anon) / MiB

    def shmem(s):
        return (s[0]["Shmem"] - base_m["Shmem"]) / MiB

    res.put("mem.use", "memory in use, %s written + attached, written "
            "back (MiB: Δ Cached + daemon Δ RssAnon)" % b, side, rnd,
            in_use(marks["settled"]))
    res.put("mem.use_now", "  the same right after the stores (MiB)", side,
            rnd, in_use(marks["now"]))
    res.put("mem.shmem", "  of which Shmem, written back (MiB: Δ Shmem)",
            side, rnd, shmem(marks["settled"]))
    log("  %s: rewriting a %s hot set for %d s" % (side, h, p.seconds))
    out = shmbench(side, ["rewrite", p.hot, p.seconds], mount,
                   daemon_cpu=True)
    rewrite_rows(res, "mem.hot", "%s hot set rewritten for %d s"
                 % (h, p.seconds), side, rnd, out)


GROUP_FUNCS = {
    "control": group_control,
    "requests": group_requests,
    "data": group_data,
    "scale": group_scale,
    "failover": group_failover,
    "memory": group_memory,
}


# ---------------------------------------------------------------- main

def on_term(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def parse_args():
    ap = argparse.ArgumentParser(
        description="shmfs against the kernel's SysV shm (bench/README.md)")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, 5 s windows, 1,000 segments/calls")
    ap.add_argument("--only", metavar="GROUP[,GROUP]",
                    help="run only these groups: " + ", ".join(GROUPS))
    ap.add_argument("--arena", action="store_true",
                    help="shmfs with -o no_passthrough: segments in the "
                    "daemon's arena, served through the page cache "
                    "(results to bench/results-arena.md by default)")
    ap.add_argument("--uring", action="store_true",
                    help="shmfs with -o uring,no_failover: requests through "
                    "FUSE over io_uring (turns fuse's enable_uring on for "
                    "the run; results to bench/results-uring.md by "
                    "default; no failover group)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds per side (default 3)")
    ap.add_argument("--results",
                    help="markdown output (default bench/results.md)")
    a = ap.parse_args()
    if not a.results:
        a.results = os.path.join(BENCH, "results-arena.md" if a.arena
                                 else "results-uring.md" if a.uring
                                 else "results.md")
    a.groups = GROUPS
    if a.only:
        a.groups = [g.strip() for g in a.only.split(",") if g.strip()]
        bad = [g for g in a.groups if g not in GROUPS]
        if bad:
            ap.error("unknown group %s (have: %s)" %
                     (", ".join(bad), ", ".join(GROUPS)))
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    return a


def write_results(path, res, args, info, cmdline, started, elapsed):
    lines = ["# shmfs benchmark results", "",
             "Run %s (%.0f s), command:" % (started, elapsed), "",
             "    " + cmdline, "",
             "Machine: " + "; ".join("%s: %s" % kv for kv in info.items()),
             "",
             "Groups: %s; %d round(s) per side, kernel and shmfs "
             "alternating; %s sizes; shmfs data path: %s." % (
                 ", ".join(args.groups), args.rounds,
                 "quick" if args.quick else "full",
                 "the arena (-o no_passthrough)" if args.arena
                 else "passthrough") + (
                 "  Requests through FUSE over io_uring (-o uring,"
                 "no_failover)." if args.uring else ""),
             "Kernel and shmfs columns are medians over the rounds; the "
             "ratio is the median of the per-round ratios shmfs/kernel and "
             "min..max their range (for shmfs-only rows, the range of the "
             "shmfs value).  See bench/README.md for what each metric "
             "measures.", "",
             markdown_table(res), ""]
    if res.notes:
        lines += ["## Notes", ""] + ["- " + n for n in res.notes] + [""]
    lines += ["## Every round", "", markdown_details(res), ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main():
    global ARENA, URING
    args = parse_args()
    ARENA = args.arena
    URING = args.uring
    if os.geteuid() != 0:
        sys.exit("run.py: run as root (it mounts shmfs and sets sysctls)")
    p = Params(args.quick)
    cmdline = " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv)
    started = datetime.datetime.now().astimezone().strftime(
        "%Y-%m-%d %H:%M:%S %Z")
    t_start = time.monotonic()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    clash = [(i, k) for i, k, c in kernel_segments()
             if KEY_BASE <= k < KEY_BASE + KEY_SPAN]
    if clash:
        sys.exit("run.py: kernel segments already use keys %#x..%#x: %s" % (
            KEY_BASE, KEY_BASE + KEY_SPAN - 1,
            ", ".join("shmid %d key %#x" % c for c in clash)))
    build()
    info = machine()
    res = Results()
    restore = Restore()
    try:
        if URING:
            if not os.path.exists(URING_PARAM):
                sys.exit("run.py: --uring: this kernel has no %s" %
                         URING_PARAM)
            restore.write(URING_PARAM, "Y")
            args.groups = [g for g in args.groups if g != "failover"]
        if "scale" in args.groups:
            with open(SHMMNI) as f:
                if int(f.read()) < p.counts[-1]:
                    restore.write(SHMMNI, 32768)
        for group in args.groups:
            for rnd in range(args.rounds):
                sides = ["kernel", "shmfs"]
                if rnd % 2:
                    sides.reverse()
                for side in sides:
                    if group in ("requests", "failover") and \
                            side == "kernel":
                        continue
                    log("%s: round %d/%d, %s" % (group, rnd + 1, args.rounds,
                                                 side))
                    try:
                        if side == "shmfs":
                            with Mount() as m:
                                GROUP_FUNCS[group](res, p, side, rnd, m)
                        else:
                            GROUP_FUNCS[group](res, p, side, rnd, None)
                    except (OSError, RuntimeError, ValueError,
                            KeyError) as e:
                        # The rest of the run is still worth having.
                        res.note("%s, round %d, %s side failed: %s" %
                                 (group, rnd + 1, side, e))
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        raise
    finally:
        restore.restore()
        n = remove_kernel_leftovers()
        if n:
            log("removed %d leftover kernel segment(s)" % n)
    elapsed = time.monotonic() - t_start
    print_table(res, sys.stdout)
    if res.notes:
        print("\nNotes:")
        for n in res.notes:
            print("- " + n)
    write_results(args.results, res, args, info, cmdline, started, elapsed)
    log("table written to %s (%.0f s in all)" % (args.results, elapsed))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
