"""util-linux's SysV tools, unmodified, on shmfs through the preload
library: ipcmk -M creates, ipcrm -m/-M removes, ipcs -m, ipcs -m -i,
ipcs -m -l, lsipc -m and lsipc -g show shmfs's segments and limits,
because the library answers their reads of /proc/sysvipc/shm and
/proc/sys/kernel/shm{max,all,mni}.  Every tool runs under strace, which
must see no shm system call, and the kernel's own table must not change
on our account."""

import errno
import os
import pwd
import re
import shutil
import subprocess
import sys

import pytest

from conftest import kill_daemon_under
from test_lib import build_dir, built, no_leak_check, preload_env

TOOLS = ("ipcs", "ipcmk", "ipcrm", "lsipc")
SHM_SYSCALLS = ("shmget", "shmat", "shmdt", "shmctl")
PAGE = os.sysconf("SC_PAGE_SIZE")
LIMIT_FILES = ("shmmax", "shmall", "shmmni")


@pytest.fixture(autouse=True)
def need_tools():
    missing = [t for t in TOOLS + ("strace",) if shutil.which(t) is None]
    if missing:
        pytest.skip("not installed: " + " ".join(missing))


# -- running the tools -----------------------------------------------------------

class Tools:
    """Runs programs under the preload library on one mount, each under
    strace; remembers every pid it started and every key it was told of,
    so that the kernel's table can be checked for traces of them."""

    def __init__(self, mount, tmp_path):
        self.m = mount
        self.tmp = tmp_path
        self.pids = set()
        self.keys = set()
        self.kernel_before = kernel_table()
        self.n = 0

    def env(self, **extra):
        return no_leak_check(preload_env(self.m.build, self.m.root, **extra))

    def run(self, argv, uid=None, check=True, stdin=None):
        """CompletedProcess-like (returncode, stdout, stderr) of argv under
        strace; fails the test if any shm system call reached the kernel."""
        self.n += 1
        log = self.tmp / ("strace-%d.log" % self.n)
        pre = []
        if uid is not None:
            pre = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid,
                   "--clear-groups"]
        # strace runs as root and follows the program through setpriv.
        # execve too, so that the log names every pid that ran.
        cmd = ["strace", "-f", "-qq", "-o", str(log),
               "-e", "trace=execve," + ",".join(SHM_SYSCALLS)] + pre + \
            [str(a) for a in argv]
        p = subprocess.Popen(cmd, env=self.env(), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        self.pids.add(p.pid)
        out, err = p.communicate(stdin, timeout=120)
        calls = [ln for ln in log.read_text().splitlines()
                 if re.search(r"\b(%s)\(" % "|".join(SHM_SYSCALLS), ln)]
        # strace -f logs the pid of each traced process first.
        self.pids.update(int(ln.split()[0]) for ln in
                         log.read_text().splitlines() if ln[:1].isdigit())
        assert calls == [], "%s reached the kernel:\n%s" % (argv[0], calls)
        r = subprocess.CompletedProcess(argv, p.returncode, out, err)
        assert not re.search(r"Sanitizer|runtime error", err), err
        if check:
            assert r.returncode == 0, "%s: %s%s" % (argv, out, err)
        return r

    def hold(self, key, size, mode, steps):
        """Starts sysv_hold under the preload; returns (Popen, shmid)."""
        p = subprocess.Popen([built(self.m.build, "progs", "sysv_hold"),
                              "%#x" % key, str(size), "%o" % mode, steps],
                             env=self.env(), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        self.pids.add(p.pid)
        self.keys.add(key)
        first = p.stdout.readline()
        assert first.startswith("shmid "), first + p.stderr.read()
        assert p.stdout.readline() == "ready\n"
        return p, int(first.split()[1])

    def ipcmk(self, size, mode, uid=None):
        r = self.run(["ipcmk", "-M", str(size), "-p", "%o" % mode], uid=uid)
        m = re.fullmatch(r"Shared memory id: (\d+)\n", r.stdout)
        assert m, r.stdout
        shmid = int(m.group(1))
        key = int(os.path.basename(os.path.dirname(self.seg_file(shmid))), 16)
        self.keys.add(key)
        return shmid, key

    def seg_file(self, shmid):
        """MNT/<key>/<shmid>, found by listing the key directories."""
        for d in os.listdir(self.m.root):
            if d.startswith("0x") and str(shmid) in os.listdir(self.m.path(d)):
                return self.m.path(d, shmid)
        raise AssertionError("shmid %d has no file under the mount" % shmid)

    def ipcs(self, *args):
        return parse_ipcs(self.run(["ipcs", "-m"] + list(args)).stdout)

    def check_kernel(self):
        """No segment in the kernel's table came from us or has our keys,
        and every kernel segment that was there is still there unchanged
        in what we could have changed (key, mode, owner)."""
        after = kernel_table()
        for shmid, row in after.items():
            if shmid in self.kernel_before:
                continue
            # /proc prints keys as signed ints; ours are unsigned.
            assert row["cpid"] not in self.pids and \
                row["key"] & 0xffffffff not in self.keys, \
                "kernel segment %s was made by this test" % row
        for shmid, row in self.kernel_before.items():
            new = after.get(shmid)
            # A segment another program removed meanwhile is not ours to
            # judge; one that survived must be as it was.
            if new is not None:
                for f in ("key", "perms", "uid", "gid"):
                    assert new[f] == row[f], (row, new)


@pytest.fixture
def tools(shmfs, tmp_path):
    t = Tools(shmfs, tmp_path)
    yield t
    t.check_kernel()


def kernel_table():
    """The kernel's own table, read directly (this process is not
    preloaded): {shmid: {field: int}}."""
    try:
        with open("/proc/sysvipc/shm") as f:
            return parse_status(f.read())
    except FileNotFoundError:
        return {}


def parse_status(text):
    lines = text.splitlines()
    names = lines[0].split()
    rows = {}
    for ln in lines[1:]:
        row = dict(zip(names, (int(v, 8) if n == "perms" else int(v)
                               for n, v in zip(names, ln.split()))))
        rows[row["shmid"]] = row
    return rows


def parse_ipcs(text):
    """ipcs -m rows: {shmid: (key, owner, perms, bytes, nattch, status)}."""
    rows = {}
    lines = text.splitlines()
    head = [i for i, ln in enumerate(lines) if ln.startswith("key ")]
    assert len(head) == 1, text
    for ln in lines[head[0] + 1:]:
        if not ln.strip():
            continue
        w = ln.split()
        rows[int(w[1])] = (int(w[0], 16), w[2], w[3], int(w[4]), int(w[5]),
                           " ".join(w[6:]))
    return rows


def user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name[:10]
    except KeyError:
        return str(uid)


def release(*holders):
    for p in holders:
        out, err = p.communicate("\n", timeout=60)
        assert p.returncode == 0, out + err


# -- ipcmk, ipcs -------------------------------------------------------------------

def test_ipcmk_creates_a_segment_that_ipcs_shows(tools, shmfs):
    shmid, key = tools.ipcmk(4097, 0o640)
    path = tools.seg_file(shmid)
    assert path == shmfs.path("%#010x" % key, shmid)
    st = os.stat(path)
    assert (st.st_size, st.st_mode & 0o777, st.st_ino) == (4097, 0o640, shmid)
    assert tools.ipcs() == {shmid: (key, "root", "640", 4097, 0, "")}
    # The kernel's ipcs, without the preload, does not know it.
    plain = subprocess.run(["ipcs", "-m"], capture_output=True, text=True)
    assert key not in {row[0] for row in parse_ipcs(plain.stdout).values()}


def test_ipcs_lists_exactly_the_shmfs_segments(tools, shmfs):
    """Owner, perms, bytes, nattch and the status words dest and locked,
    as the kernel's ipcs shows them for its own segments."""
    mine, mine_key = tools.ipcmk(100, 0o600, uid=1000)
    locked, locked_id = tools.hold(0x5348464c, 8192, 0o640, "al")
    dest, dest_id = tools.hold(0x5348464d, 3000, 0o604, "ar")
    both, both_id = tools.hold(0x5348464e, 1, 0o600, "alr")
    try:
        want = {
            mine: (mine_key, user_name(1000), "600", 100, 0, ""),
            locked_id: (0x5348464c, "root", "640", 8192, 1, "locked"),
            dest_id: (0, "root", "604", 3000, 1, "dest"),
            both_id: (0, "root", "600", 1, 1, "dest locked"),
        }
        assert tools.ipcs() == want
        # The same as the status file, which is what ipcs read.
        with open(shmfs.path("status")) as f:
            status = parse_status(f.read())
        assert sorted(status) == sorted(want)
        assert status[both_id]["perms"] == 0o3600

        r = tools.run(["ipcs", "-m", "-i", dest_id])
        assert "Shared memory Segment shmid=%d\n" % dest_id in r.stdout
        assert "mode=01604\taccess_perms=0604\n" in r.stdout
        assert re.search(r"bytes=3000\tlpid=%d\tcpid=%d\tnattch=1\n" %
                         (dest.pid, dest.pid), r.stdout), r.stdout
        r = tools.run(["ipcs", "-m", "-i", locked_id])
        assert "mode=02640\taccess_perms=0640\n" in r.stdout
        r = tools.run(["ipcs", "-m", "-i", mine])
        assert "uid=1000\tgid=1000\tcuid=1000\tcgid=1000\n" in r.stdout
        assert "mode=0600\taccess_perms=0600\n" in r.stdout
    finally:
        release(locked, dest, both)
    # The removed ones went with their last detach; the lock stays.
    assert tools.ipcs() == {
        mine: (mine_key, user_name(1000), "600", 100, 0, ""),
        locked_id: (0x5348464c, "root", "640", 8192, 0, "locked"),
    }
    r = tools.run(["ipcs", "-m", "-i", dest_id])
    assert r.stdout == ""
    assert r.stderr == "ipcs: id %d not found\n" % dest_id


def test_ipcs_as_another_user(tools, shmfs):
    """/proc/sysvipc/shm shows every segment to everyone, and so do we."""
    shmid, key = tools.ipcmk(4096, 0o600)
    r = tools.run(["ipcs", "-m"], uid=1000)
    assert parse_ipcs(r.stdout) == {shmid: (key, "root", "600", 4096, 0, "")}


def test_proc_sysvipc_shm_is_the_status_file_byte_for_byte(tools, shmfs):
    tools.ipcmk(4097, 0o640)
    tools.ipcmk(65536, 0o644)
    r = tools.run(["cat", "/proc/sysvipc/shm"])
    with open(shmfs.path("status")) as f:
        assert r.stdout == f.read()
    assert len(r.stdout.splitlines()) == 3
    if os.path.exists("/proc/sysvipc/shm"):
        with open("/proc/sysvipc/shm") as f:
            assert r.stdout.splitlines()[0] == f.readline().rstrip("\n")


# -- limits: ipcs -m -l, lsipc -g, /proc/sys/kernel/shm* ----------------------------

@pytest.fixture
def limited(shmfs_factory, tmp_path):
    m = shmfs_factory(opts=["-o", "shmmni=1234,shmmax=1M,shmall=1000"])
    t = Tools(m, tmp_path)
    yield t
    t.check_kernel()


def test_limit_files_are_shmfs_ipc_info(limited):
    r = limited.run(["cat"] + ["/proc/sys/kernel/" + f for f in LIMIT_FILES])
    assert r.stdout == "1048576\n1000\n1234\n"
    # Without the preload: the kernel's, untouched.
    for f in LIMIT_FILES:
        with open("/proc/sys/kernel/" + f) as k:
            plain = subprocess.run(["cat", "/proc/sys/kernel/" + f],
                                   capture_output=True, text=True).stdout
            assert plain == k.read()


def test_ipcs_l_shows_shmfs_limits(limited):
    r = limited.run(["ipcs", "-m", "-l"])
    assert "max number of segments = 1234\n" in r.stdout
    assert "max seg size (kbytes) = 1024\n" in r.stdout
    assert "max total shared memory (kbytes) = %d\n" % (1000 * PAGE // 1024) \
        in r.stdout
    assert "min seg size (bytes) = 1\n" in r.stdout


def test_lsipc_g_and_m_show_shmfs_limits_and_use(limited):
    a, akey = limited.ipcmk(4097, 0o640)
    b, bkey = limited.ipcmk(65536, 0o600)
    r = limited.run(["lsipc", "-g", "--raw", "--bytes", "--noheadings",
                     "-o", "RESOURCE,LIMIT,USED"])
    shm = {w[0]: w[1:] for w in map(str.split, r.stdout.splitlines())
           if w[0].startswith("SHM")}
    assert shm == {
        "SHMMNI": ["1234", "2"],
        "SHMALL": ["1000", str((4097 + 65536) // PAGE)],   # lsipc's sum
        "SHMMAX": ["1048576", "-"],
        "SHMMIN": ["1", "-"],
    }
    r = limited.run(["lsipc", "-m", "--raw", "--bytes", "--noheadings",
                     "-o", "KEY,ID,PERMS,OWNER,SIZE,NATTCH,STATUS"])
    assert sorted(r.stdout.splitlines()) == sorted([
        "%#010x %d rw-r----- root 4097 0 " % (akey, a),
        "%#010x %d rw------- root 65536 0 " % (bkey, b),
    ])


def test_lsipc_m_status_words(tools):
    p, shmid = tools.hold(0x5348464f, 100, 0o600, "alr")
    try:
        r = tools.run(["lsipc", "-m", "--raw", "--noheadings",
                       "-o", "ID,NATTCH,STATUS"])
        assert r.stdout == "%d 1 dest,locked\n" % shmid
    finally:
        release(p)


# -- ipcrm -------------------------------------------------------------------------

def test_ipcrm_removes_by_id_and_by_key(tools, shmfs):
    a, akey = tools.ipcmk(100, 0o600)
    b, bkey = tools.ipcmk(200, 0o600)
    c, ckey = tools.ipcmk(300, 0o600)
    tools.run(["ipcrm", "-m", a])
    assert sorted(tools.ipcs()) == sorted([b, c])
    assert not os.path.exists(shmfs.path("%#010x" % akey))
    tools.run(["ipcrm", "-M", "%#x" % bkey])
    assert sorted(tools.ipcs()) == [c]
    assert not os.path.exists(shmfs.path("%#010x" % bkey))
    # What the kernel would say for what is not there.
    r = tools.run(["ipcrm", "-m", a], check=False)
    assert (r.returncode, r.stderr) == (1, "ipcrm: invalid id (%d)\n" % a)
    r = tools.run(["ipcrm", "-M", "%#x" % bkey], check=False)
    assert (r.returncode, r.stderr) == (1, "ipcrm: invalid key (%#x)\n" % bkey)
    # Removal is SysV's: the owner (or creator, or root) only.
    r = tools.run(["ipcrm", "-m", c], uid=1000, check=False)
    assert (r.returncode, r.stderr) == (
        1, "ipcrm: permission denied for id (%d)\n" % c)
    assert sorted(tools.ipcs()) == [c]


# -- the served files as files -----------------------------------------------------

FILE_CHECK = r'''
import ctypes, errno, fcntl, os, stat, sys, threading
SERVED = ["/proc/sysvipc/shm"] + ["/proc/sys/kernel/" + f
                                   for f in ("shmmax", "shmall", "shmmni")]
status = open(sys.argv[1]).read()   # the mount's status file
libc = ctypes.CDLL(None, use_errno=True)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fread.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t,
                       ctypes.c_void_p]
libc.fileno.argtypes = [ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.__open_2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.__openat_2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]

def say(*a):
    print(*a, flush=True)

def whole(fd):
    out = b""
    while True:
        b = os.read(fd, 7)          # small reads: the offset must advance
        if not b:
            return out.decode()
        out += b

# A regular, read-only, seekable file holding the status text.
fd = os.open(SERVED[0], os.O_RDONLY)
st = os.fstat(fd)
say("fstat", stat.S_ISREG(st.st_mode), oct(st.st_mode & 0o7777), st.st_size == len(status))
say("same", whole(fd) == status)
say("lseek", os.lseek(fd, 0, os.SEEK_SET), os.read(fd, 4) == status[:4].encode(),
    os.pread(fd, 3, 7) == status[7:10].encode())
say("flags", fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY,
    fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
try:
    os.write(fd, b"x")
    say("write", "succeeded")
except OSError as e:
    say("write", errno.errorcode[e.errno])
# In the lowest free slot, as open would put it.
os.close(fd)
lowest = os.dup(0)
os.close(lowest)
fd = os.open(SERVED[3], os.O_RDONLY | os.O_CLOEXEC)
say("slot", fd == lowest, fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
os.close(fd)

# openat with an absolute path, fortify's entry points, fopen "re".
d = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
fd = os.open(SERVED[3], os.O_RDONLY, dir_fd=d)
say("openat", whole(fd).strip())
os.close(fd)
for fd in (libc.__open_2(SERVED[3].encode(), 0),
           libc.__openat_2(d, SERVED[3].encode(), 0)):
    say("fortify", whole(fd).strip())
    os.close(fd)
f = libc.fopen(SERVED[2].encode(), b"re")
buf = ctypes.create_string_buffer(64)
n = libc.fread(buf, 1, 64, f)
say("fopen", buf.raw[:n].decode().strip(),
    fcntl.fcntl(libc.fileno(f), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
libc.fclose(f)

# errno is kept on success, and is the real one on failure.
ctypes.set_errno(errno.EXDEV)
fd = libc.open(SERVED[0].encode(), 0)
say("errno kept", ctypes.get_errno() == errno.EXDEV)
os.close(fd)
for path, flags in (("/proc/sys/kernel/shmfoo", os.O_RDONLY),
                    ("/proc/sysvipc/shm", os.O_RDONLY | os.O_DIRECTORY),
                    ("/proc/sysvipc/shm", os.O_RDONLY | os.O_CREAT | os.O_EXCL)):
    try:
        os.close(os.open(path, flags))
        say("error", path, "none")
    except OSError as e:
        say("error", path, errno.errorcode[e.errno])
# A relative name, and opens for writing, go to the kernel's file.
fd = os.open("sys/kernel/shmmni", os.O_RDONLY, dir_fd=os.open("/proc", os.O_RDONLY))
say("relative", whole(fd) == open("/proc/self/root/proc/sys/kernel/shmmni").read())
os.close(fd)
fd = os.open("/proc/sys/kernel/shmmni", os.O_RDWR)
say("rdwr", os.pread(fd, 32, 0).decode().strip())
os.close(fd)

# Many threads at once, served files and others mixed.
bad = []
def worker(i):
    for j in range(40):
        p = SERVED[(i + j) % 4]
        with open(p) as f:
            t = f.read()
        if (p == SERVED[0] and t != status) or (p != SERVED[0] and not t.strip().isdigit()):
            bad.append((p, t))
        with open("/proc/self/status") as f:
            if not f.read().startswith("Name:"):
                bad.append("passthrough")
ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
say("threads", bad)
'''


def test_served_files_read_seek_and_stat_like_files(limited, tmp_path):
    limited.ipcmk(4097, 0o640)
    script = tmp_path / "check.py"
    script.write_text(FILE_CHECK)
    with open("/proc/sys/kernel/shmmni") as f:
        kernel_shmmni = f.read().strip()
    r = limited.run([sys.executable, script, limited.m.path("status")])
    assert r.stderr == ""
    assert r.stdout.splitlines() == [
        "fstat True 0o444 True",
        "same True",
        "lseek 0 True True",
        "flags True 1",
        "write EBADF",
        "slot True 1",
        "openat 1234",
        "fortify 1234",
        "fortify 1234",
        "fopen 1000 1",
        "errno kept True",
        "error /proc/sys/kernel/shmfoo ENOENT",
        "error /proc/sysvipc/shm ENOTDIR",
        "error /proc/sysvipc/shm EEXIST",
        "relative True",
        "rdwr " + kernel_shmmni,
        "threads []",
    ]


def test_no_daemon_the_files_fail_like_every_call(tmp_path):
    """No shmfs at SHMFS_ROOT: opening the served files fails with ENOSYS,
    as shmget does, instead of showing the kernel's table."""
    env = preload_env(build_dir(), str(tmp_path))
    for f in ["/proc/sysvipc/shm"] + ["/proc/sys/kernel/" + n
                                       for n in LIMIT_FILES]:
        r = subprocess.run(["cat", f], env=env, capture_output=True,
                           text=True)
        assert (r.returncode, r.stdout) == (1, "")
        assert r.stderr == "cat: %s: %s\n" % (f, os.strerror(errno.ENOSYS))
    r = subprocess.run(["ipcs", "-m"], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0 and parse_ipcs(r.stdout) == {}


def test_dead_daemon_is_enotconn(shmfs_factory, tmp_path):
    m = shmfs_factory(["-o", "no_failover"])
    rc, out, err = kill_daemon_under(
        m, [sys.executable, "-c",
            "import sys\n"
            "print(open('/proc/sys/kernel/shmmni').read().strip(), flush=True)\n"
            "sys.stdin.readline()\n"
            "try:\n"
            "    open('/proc/sysvipc/shm')\n"
            "except OSError as e:\n"
            "    print(e.strerror)\n"],
        lambda line: line.strip().isdigit(),
        env=preload_env(m.build, m.root))
    assert (rc, out, err) == (0, os.strerror(errno.ENOTCONN) + "\n", "")
