"""The FUSE mechanics of taking a live mount over from a killed server
(src/takeover.c), on build/progs/fuse_takeover_demo: a holder keeps the
mount's /dev/fuse descriptor, a server is SIGKILLed with requests it read
and never answered, and the next server replays INIT, asks the kernel to
resend (FUSE_NOTIFY_RESEND, Linux 6.9) and answers them.

The demo writes one line per event ("holder ..." or "gen=N ...") to a log
that these tests read.  Each test unmounts with fusermount3 -u; on any
failure the fixture kills the holder and its servers, aborts the
connection through fusectl where it is mounted, and detaches the mount:
nothing is left behind.
"""

import os
import queue
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

from conftest import BUILD, SUSPICIOUS, until
from stress import mountinfo_unescape

DEMO = os.path.join(BUILD, "progs", "fuse_takeover_demo")
RESEND = 1 << 63
FILE_TEXT = b"takeover demo file\n"
PT_TEXT = b"passthrough bytes of the backing memfd\n"

# Client programs, run with the mount point as argv[1].
READ_FILE = r"""
import os, sys
fd = os.open(sys.argv[1] + "/file", os.O_RDONLY)
sys.stdout.write(repr(os.read(fd, 4096)) + "\n")
"""
READ_HOLD = r"""
import os, signal, sys
signal.signal(signal.SIGUSR1, lambda *a: None)
fd = os.open(sys.argv[1] + "/hold", os.O_RDONLY)
print("opened", flush=True)
try:
    print(repr(os.read(fd, 4096)), flush=True)
except OSError as e:
    print("errno", e.errno, flush=True)
"""
STAT_STUCK = r"""
import os, sys
try:
    os.stat(sys.argv[1] + "/stuck")
    print("found", flush=True)
except OSError as e:
    print("errno", e.errno, flush=True)
"""
# Steps on each line of stdin: map under generation 1, use the file with
# no server, open it again under generation 2.
PASSTHROUGH = r"""
import mmap, os, sys
p = sys.argv[1] + "/pt"
fd = os.open(p, os.O_RDWR)
m = mmap.mmap(fd, 4096)
print(repr(bytes(m[:39])), flush=True)
sys.stdin.readline()
print(repr(os.pread(fd, 39, 0)), repr(bytes(m[:39])), flush=True)
m[0:5] = b"WROTE"
print(repr(os.pread(fd, 39, 0)), flush=True)
sys.stdin.readline()
fd2 = os.open(p, os.O_RDWR)
print(repr(os.pread(fd2, 39, 0)), flush=True)
m2 = mmap.mmap(fd2, 4096)
m2[5:10] = b"-NEW-"
print(repr(bytes(m[:39])), flush=True)
m.close(); m2.close(); os.close(fd); os.close(fd2)
"""


class Client:
    """A client program on the mount; its stdout read line by line (a
    thread reads, so a wait for a line has a timeout)."""

    def __init__(self, mnt, code, stdin=False):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, mnt], text=True,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self, timeout=10.0):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail("no line from the client in %g s" % timeout)

    def say(self, text="go"):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout=10.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail("the client is still waiting")


class Takeover:
    """The demo's holder on a fresh directory, and what it logged."""

    def __init__(self, *opts):
        self.top = os.path.realpath(tempfile.mkdtemp(prefix="takeover-"))
        self.mnt = os.path.join(self.top, "mnt")
        os.mkdir(self.mnt)
        self.log_path = os.path.join(self.top, "log")
        self.clients = []
        self.conn = None
        with open(self.log_path, "ab") as log:
            self.holder = subprocess.Popen(
                [DEMO] + list(opts) + [self.mnt], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True)
        self.wait(r"^gen=1 .* server up")
        if not until(self.mounted, 10):
            pytest.fail("no mount:\n" + self.log())
        self.conn = self._conn()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def lines(self, regex):
        return re.findall(regex, self.log(), re.M)

    def wait(self, regex, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(regex, self.log(), re.M)
            if m:
                return m
            if time.monotonic() > deadline:
                pytest.fail("no %r in %g s; the log:\n%s" %
                            (regex, timeout, self.log()))
            time.sleep(0.01)

    def pid(self, gen):
        return int(self.wait(r"^holder .* started gen=%d pid=(\d+)" %
                             gen).group(1))

    def client(self, code, stdin=False):
        c = Client(self.mnt, code, stdin)
        self.clients.append(c)
        return c

    def _mountinfo(self):
        # never stat the mount point: with no server that waits
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if mountinfo_unescape(fields[4]) == self.mnt:
                    return fields
        return None

    def mounted(self):
        return self._mountinfo() is not None

    def _conn(self):
        fields = self._mountinfo()
        major, minor = (int(x) for x in fields[2].split(":"))
        return os.makedev(major, minor)

    def waiting(self):
        """Requests of the connection not answered yet (fusectl), or
        None where fusectl is not mounted."""
        try:
            with open("/sys/fs/fuse/connections/%d/waiting" % self.conn) as f:
                return int(f.read())
        except (OSError, TypeError):
            return None

    def go_on(self):
        """--manual: the holder starts the next generation."""
        os.kill(self.holder.pid, signal.SIGUSR1)

    def unmount(self):
        """fusermount3 -u; the holder's exit status."""
        r = subprocess.run(["fusermount3", "-u", self.mnt],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        try:
            return self.holder.wait(10)
        except subprocess.TimeoutExpired:
            pytest.fail("the holder outlived the mount:\n" + self.log())

    def cleanup(self):
        if self.holder.poll() is None and self.mounted():
            r = subprocess.run(["fusermount3", "-u", self.mnt],
                               capture_output=True, timeout=30)
            try:
                if r.returncode == 0:  # not busy: the holder ends
                    self.holder.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self.holder.poll() is None:
            os.killpg(self.holder.pid, signal.SIGKILL)  # servers too
            self.holder.wait(10)
        if self.mounted():
            # a server stuck in the kernel keeps the connection: abort it
            if self.conn is not None:
                try:
                    with open("/sys/fs/fuse/connections/%d/abort" %
                              self.conn, "w") as f:
                        f.write("1")
                except OSError:
                    pass
            r = subprocess.run(["fusermount3", "-u", self.mnt],
                               capture_output=True, timeout=30)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", self.mnt],
                               capture_output=True, timeout=30)
        for c in self.clients:
            if c.proc.poll() is None:
                c.proc.kill()
            try:
                c.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.holder.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if not self.mounted():
            shutil.rmtree(self.top, ignore_errors=True)


@pytest.fixture
def takeover():
    if not os.access(DEMO, os.X_OK):
        pytest.fail("%s not built (make progs)" % DEMO)
    made = []

    def start(*opts):
        made.append(Takeover(*opts))
        return made[-1]

    yield start
    for t in made:
        t.cleanup()


def reads(t, gen, op=None, nodeid=None):
    """(unique, resend, via) of the requests generation gen read."""
    out = []
    for m in re.finditer(r"^gen=%d pid=\d+ read op=(\w+) opcode=\d+ "
                         r"unique=0x([0-9a-f]+) resend=(\d) nodeid=(\d+) "
                         r"via=(\w+)" % gen, t.log(), re.M):
        if (op is None or m.group(1) == op) and \
                (nodeid is None or int(m.group(4)) == nodeid):
            out.append((int(m.group(2), 16), m.group(3) == "1",
                        m.group(5)))
    return out


def check_clean_end(t, gen):
    """Unmounting ends generation gen's loop and then the holder."""
    assert t.unmount() == 0, t.log()
    log = t.log()
    assert re.search(r"^holder .* device POLLERR; read ret=-1 errno=19 "
                     r"\(ENODEV\)$", log, re.M), log
    assert re.search(r"^gen=%d .* loop ended ret=0$" % gen, log, re.M), log
    assert re.search(r"^holder .* reaped gen=%d pid=\d+ exit=0$" % gen, log,
                     re.M), log
    assert re.search(r"^holder .* exit ret=0$", log, re.M), log
    assert "write failed" not in log, log
    assert not SUSPICIOUS.search(log), log
    assert not t.mounted()


def kill_first_server(t):
    os.kill(t.pid(1), signal.SIGKILL)
    t.wait(r"^holder .* server gen=1 pid=\d+ died")


def test_successor_answers_the_read_the_killed_server_held(takeover):
    t = takeover("--manual")
    # answered by generation 1: never comes back
    c = t.client(READ_FILE)
    assert c.line() == repr(FILE_TEXT)
    assert c.finish() == 0
    hold = t.client(READ_HOLD)
    assert hold.line() == "opened"
    held = int(t.wait(r"^gen=1 .* held read unique=0x([0-9a-f]+)").group(1),
               16)
    kill_first_server(t)
    # never read by anyone: waits in the kernel's queue
    queued = t.client(READ_FILE)
    # the held READ and the new LOOKUP (fusectl counts them where mounted)
    until(lambda: t.waiting() is None or t.waiting() >= 2, 5)
    time.sleep(0.2)
    assert hold.proc.poll() is None and queued.proc.poll() is None
    t.go_on()
    assert hold.line() == repr(b"hold answered by generation 2\n")
    assert hold.finish() == 0
    assert queued.line() == repr(FILE_TEXT)
    assert queued.finish() == 0

    log = t.log()
    assert re.search(r"^gen=2 .* init replayed ret=0 same_reply=1$", log,
                     re.M), log
    assert re.search(r"^gen=2 .* resend notified ret=0$", log, re.M), log
    # the held READ came back once, marked, and was answered once
    assert reads(t, 2, "READ", 3) == [(held | RESEND, True, "main")], log
    assert len(t.lines(r"^gen=2 .* answered read hold unique=0x%x "
                       r"resend=1$" % (held | RESEND))) == 1, log
    # nothing else was resent: what generation 1 answered stays answered
    assert [u for u, resent, _ in reads(t, 2) if resent] == \
        [held | RESEND], log
    # the queued request is an ordinary one; the resend put the READ
    # before it in the queue
    assert reads(t, 2)[0] == (held | RESEND, True, "main"), log
    lookups = reads(t, 2, "LOOKUP", 1)
    assert lookups and not any(r for _, r, _ in lookups), log
    check_clean_end(t, 2)


def test_passthrough_backing_id_outlives_its_server(takeover):
    t = takeover("--manual")
    c = t.client(PASSTHROUGH, stdin=True)
    assert c.line() == repr(PT_TEXT)
    gen1_id = int(t.wait(r"^gen=1 .* backing registered id=(\d+)").group(1))
    kill_first_server(t)
    # no server at all: the open file and its mapping are the memfd's
    c.say()
    assert c.line() == "%r %r" % (PT_TEXT, PT_TEXT)
    assert c.line() == repr(b"WROTE" + PT_TEXT[5:])
    t.go_on()
    t.wait(r"^gen=2 .* resend notified ret=0")
    # a new open, answered by generation 2 with generation 1's id
    c.say()
    assert c.line() == repr(b"WROTE" + PT_TEXT[5:])
    assert c.line() == repr(b"WROTE-NEW-" + PT_TEXT[10:])
    assert c.finish() == 0
    log = t.log()
    assert re.search(r"^gen=2 .* open pt backing_id=%d$" % gen1_id, log,
                     re.M), log
    assert len(t.lines(r"backing registered")) == 1, log
    assert "reached the server" not in log
    assert not reads(t, 1, "READ", 4) and not reads(t, 2, "READ", 4), log
    check_clean_end(t, 2)


def _threads(pid):
    """{tid: state letter} of a process, {} once it is gone."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                s = f.read()
        except OSError:
            continue
        out[int(tid)] = s[s.rindex(")") + 2]
    return out


def test_killed_server_stuck_in_invalidation_ends_when_successor_answers(
        takeover):
    t = takeover("--manual")
    c = t.client(STAT_STUCK)
    t.wait(r"^gen=1 .* inval stuck start")
    pid = t.pid(1)
    # the invalidation waits for the directory lock the lookup holds
    assert until(lambda: "D" in _threads(pid).values(), 5), _threads(pid)
    kill_first_server(t)
    time.sleep(0.5)
    # dead but not gone: the kill cannot reach the stuck thread, the
    # leader is a zombie, waitpid and a pidfd report nothing
    threads = _threads(pid)
    assert threads.get(pid) == "Z" and "D" in threads.values(), threads
    assert not t.lines(r"^holder .* reaped gen=1 ")
    pidfd = os.pidfd_open(pid)
    try:
        assert select.select([pidfd], [], [], 0)[0] == []
    finally:
        os.close(pidfd)
    t.go_on()
    assert c.line() == "errno 2"  # generation 2's answer to the lookup
    assert c.finish() == 0
    t.wait(r"^holder .* reaped gen=1 pid=%d signal=9$" % pid)
    assert reads(t, 2, "LOOKUP", 1)[0][1], t.log()
    check_clean_end(t, 2)


def test_request_read_through_a_clone_fd_dies_with_it(takeover):
    t = takeover("--manual", "--clone")
    hold = t.client(READ_HOLD)
    assert hold.line() == "opened"
    t.wait(r"^gen=1 .* held read")
    assert reads(t, 1, "READ", 3)[0][2] == "clone"
    kill_first_server(t)
    # ended with ECONNABORTED as the clone's last descriptor closed
    assert hold.line(5) == "errno 103"
    t.go_on()  # the client's close still wants a FLUSH answered
    assert hold.finish() == 0
    assert not reads(t, 2, "READ", 3), t.log()
    check_clean_end(t, 2)


def test_holder_keeping_clone_fds_keeps_their_requests(takeover):
    t = takeover("--hold-clones")
    hold = t.client(READ_HOLD)
    assert hold.line() == "opened"
    held = int(t.wait(r"^gen=1 .* held read unique=0x([0-9a-f]+)").group(1),
               16)
    kill_first_server(t)  # the holder starts generation 2 at once
    assert hold.line() == repr(b"hold answered by generation 2\n")
    assert hold.finish() == 0
    assert reads(t, 2, "READ", 3) == [(held | RESEND, True, "clone")]
    check_clean_end(t, 2)


@pytest.mark.parametrize("when", ["before", "after"])
def test_interrupted_request_comes_back_with_a_new_interrupt(takeover, when):
    """Signalled before the kill (generation 1 reads the INTERRUPT) or
    after it (nobody does): either way generation 2 gets the request once
    and one INTERRUPT naming its new unique."""
    t = takeover("--manual")
    hold = t.client(READ_HOLD)
    assert hold.line() == "opened"
    held = int(t.wait(r"^gen=1 .* held read unique=0x([0-9a-f]+)").group(1),
               16)
    if when == "before":
        hold.proc.send_signal(signal.SIGUSR1)
        t.wait(r"^gen=1 .* read op=INTERRUPT .* target=0x%x$" % held)
    kill_first_server(t)
    if when == "after":
        hold.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
    t.go_on()
    assert hold.line() == repr(b"hold answered by generation 2\n")
    assert hold.finish() == 0
    new = held | RESEND
    t.wait(r"^gen=2 .* answered read hold")
    intr = t.lines(r"^gen=2 .* read op=INTERRUPT opcode=36 "
                   r"unique=0x([0-9a-f]+) .* target=0x([0-9a-f]+)$")
    assert [(int(u, 16), int(g, 16)) for u, g in intr] == \
        [(new | 1, new)], t.log()
    assert reads(t, 2, "READ", 3) == [(new, True, "main")]
    check_clean_end(t, 2)
