"""What a stranger (uid 4242, in none of root's groups) can get out of the
daemon's views of root's segments (issue 11, findings 4, 9, 10, 11, 12):
the status file, the published table, the xattrs, truncate(2), and the
library's trust in its environment and in the table it maps.

Each test attacks root's segments from the stranger's side and asserts the
structural property the fix gives, never a time.
"""

import ctypes
import errno
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

import pytest

import shmfs_client as sc
from stress import vm_kb
from conftest import BUILD, run_as_user
from shmfs_client import IPC_CREAT

STRANGER = 4242
KEY = 0x0BADF00D


def as_stranger(argv, **kw):
    return run_as_user(argv, uid=STRANGER, gid=STRANGER, **kw)


def stranger_py(code, *args, **kw):
    """Run Python code as the stranger; its stdout, stripped."""
    r = as_stranger([sys.executable, "-c", code] + [str(a) for a in args],
                    **kw)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


# -- finding 4: status costs the daemon no copy of the table per open ----------

HOLD_STATUS = r"""
import os, resource, sys
path, n = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 64), hard))
fds = [os.open(path, os.O_RDONLY) for _ in range(n)]
print("ready", flush=True)
sys.stdin.readline()
"""


def test_status_opens_held_by_a_stranger_cost_no_copy_of_the_table(shmfs,
                                                                    client):
    nsegs, nopens = 3000, 1000
    for i in range(nsegs):
        client.shmget(KEY + i, 1, IPC_CREAT | 0o600)
    status = shmfs.path("status")
    text = sc.read_status(shmfs.root)
    assert text.count("\n") == nsegs + 1
    pid = shmfs.proc.pid
    before = vm_kb(pid)["VmRSS"]
    p = subprocess.Popen(
        ["setpriv", "--reuid=%d" % STRANGER, "--regid=%d" % STRANGER,
         "--clear-groups", sys.executable, "-c", HOLD_STATUS, status,
         str(nopens)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        line = p.stdout.readline()
        assert line == "ready\n", p.stderr.read() if p.poll() is not None \
            else line
        after = vm_kb(pid)["VmRSS"]
    finally:
        p.stdin.close()
        p.wait(timeout=60)
    # A copy per open would be nsegs lines of about 190 bytes, ~570 MB in
    # all; an open that costs a cursor costs 1,000 small records.
    print("daemon VmRSS %d kB before, %d kB with %d status opens held"
          % (before, after, nopens))
    assert after - before < 20 * 1024, \
        "daemon RSS grew %d kB over %d status opens" % (after - before, nopens)


def test_status_read_in_pieces_and_with_seeks_is_one_read(shmfs, client):
    for i in range(150):
        client.shmget(KEY + 7 * i, 1 + i * 37, IPC_CREAT | 0o600)
    whole = sc.read_status(shmfs.root).encode()
    assert len(whole.splitlines()) == 151
    for line in whole.decode().splitlines()[1:]:
        sc.parse_status_line(line)
    fd = os.open(shmfs.path("status"), os.O_RDONLY)
    try:
        # 7 bytes at a time, continuing from the cursor
        got = b""
        while True:
            piece = os.read(fd, 7)
            if not piece:
                break
            got += piece
        assert got == whole
        # back to the start and again, in odd sizes
        os.lseek(fd, 0, os.SEEK_SET)
        got = b""
        for n in (1, 2, 300, 5, 4096, 11):
            got += os.read(fd, n)
        while True:
            piece = os.read(fd, 13)
            if not piece:
                break
            got += piece
        assert got == whole
        # a seek to the middle of a line, then on from there
        os.lseek(fd, 1000, os.SEEK_SET)
        rest = b""
        while True:
            piece = os.read(fd, 61)
            if not piece:
                break
            rest += piece
        assert rest == whole[1000:]
        # reads anywhere, in any order, past the end too
        rnd = random.Random(11)
        for _ in range(300):
            off = rnd.randrange(len(whole) + 50)
            n = rnd.randrange(1, 400)
            assert os.pread(fd, n, off) == whole[off:off + n], (off, n)
    finally:
        os.close(fd)
    # and as the stranger, in small pieces
    out = stranger_py(
        "import os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        "b = b''\n"
        "while True:\n"
        "    p = os.read(fd, 7)\n"
        "    if not p: break\n"
        "    b += p\n"
        "print(b.hex())\n", shmfs.path("status"))
    assert bytes.fromhex(out) == whole


# -- finding 9: the published table forgets a freed segment -------------------

def test_freed_segment_leaves_nothing_in_the_published_table(shmfs, client):
    assert shmfs.table, "the daemon publishes no table"
    assert os.stat(shmfs.table).st_mode & 0o004  # anyone may read it
    t = sc.Table(shmfs.table)
    try:
        for attached in (False, True):
            shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
            slot = sc.slot_of(shmid)
            a = client.attach(shmid)
            if not attached:
                a.detach()
            e = t.entry(slot)
            assert e["live"] == 1 and e["ds"]["shmid"] == shmid
            assert e["ds"]["cpid"] == os.getpid() and e["ds"]["atime"]
            client.rmid(shmid)
            if attached:
                assert t.entry(slot)["live"] == 1  # SHM_DEST, still there
                a.detach()
            e = t.entry(slot)
            assert e["live"] == 0 and e["key_next"] == 0
            assert e["ds"] == dict.fromkeys(sc.DS_FIELDS, 0), e["ds"]
            # what a stranger reads of the file is the same
            raw = stranger_py(
                "import os, sys\n"
                "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
                "print(os.pread(fd, int(sys.argv[2]), int(sys.argv[3])).hex())",
                shmfs.table, sc.TABLE_ENTRY_SIZE,
                sc.TABLE_ENTRIES_OFF + slot * sc.TABLE_ENTRY_SIZE)
            assert bytes.fromhex(raw)[4:] == bytes(sc.TABLE_ENTRY_SIZE - 4)
    finally:
        t.close()


# -- finding 10: who may read which xattr -------------------------------------

def test_stranger_reads_no_pids_and_no_daemon_counters(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o644)  # anyone may read
    theirs = client.shmget(KEY + 1, 4096, IPC_CREAT | 0o600)
    client.set(theirs, STRANGER, STRANGER, 0o600)  # the stranger owns it
    a = client.attach(shmid)
    b = client.attach(theirs)
    seg, own = shmfs.id_path(shmid), shmfs.id_path(theirs)
    me = "%d:1" % os.getpid()
    res, r = shmfs.script(
        ["getxattr", shmfs.root, "user.shmfs.stats"],
        ["getxattr", shmfs.root, "user.shmfs.requests"],
        ["getxattr", seg, "user.shm.pids"],
        ["getxattr", seg, "user.shm.cpid"],
        ["getxattr", seg, "user.shm.nattch"],
        ["getxattr", own, "user.shm.pids"],
        uid=STRANGER)
    assert res == ["EACCES", "EACCES", "EACCES", str(os.getpid()), "1", me], \
        r.stderr
    # nor are those names listed to the stranger
    listed = stranger_py(
        "import os, sys\n"
        "for p in sys.argv[1:]: print('L', *sorted(os.listxattr(p)))",
        shmfs.root, seg, own).splitlines()
    listed = [line[2:] for line in listed]
    # who serves is public (as ps shows); the counters are not
    assert listed[0] == "user.shmfs.holder_pid user.shmfs.pid"
    assert "user.shm.pids" not in listed[1].split()
    assert "user.shm.cpid" in listed[1].split()
    assert "user.shm.pids" in listed[2].split()
    assert "user.shm.pids" in os.listxattr(seg)
    assert "user.shmfs.stats" in os.listxattr(shmfs.root)
    # root reads everything
    assert os.getxattr(seg, "user.shm.pids").decode() == me
    assert b"shmids 2\n" in os.getxattr(shmfs.root, "user.shmfs.stats")
    assert os.getxattr(shmfs.root, "user.shmfs.requests").startswith(b"lookup ")
    # the creator stays an owner after giving the segment away
    made, _ = shmfs.script(["get", KEY + 2, 4096, "1600"], uid=STRANGER)
    client.set(made[0], 0, 0, 0o600)
    with client.attach(made[0]):
        res, _ = shmfs.script(
            ["getxattr", shmfs.id_path(made[0]), "user.shm.pids"],
            uid=STRANGER)
    assert res == [me]
    a.detach()
    b.detach()


# -- finding 11: truncate checks permission first -----------------------------

TRUNCATE = r"""
import os, sys, errno
try:
    os.truncate(sys.argv[1], int(sys.argv[2]))
    print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])
"""


def test_truncate_to_own_size_needs_write_permission(shmfs, client):
    size = 4097
    segs = {mode: client.shmget(KEY + mode, size, IPC_CREAT | mode)
            for mode in (0o600, 0o644, 0o666)}
    before = {m: client.stat(s) for m, s in segs.items()}

    def trunc(mode, n):
        return stranger_py(TRUNCATE, shmfs.seg_path(KEY + mode, segs[mode]), n)

    assert trunc(0o600, size) == "EACCES"
    assert trunc(0o644, size) == "EACCES"
    assert trunc(0o666, size) == "OK"
    # other sizes: EPERM, whoever asks (a segment never changes size)
    assert trunc(0o600, 0) == "EPERM"
    assert trunc(0o666, size + 1) == "EPERM"
    os.truncate(shmfs.seg_path(KEY + 0o600, segs[0o600]), size)  # root may
    assert {m: client.stat(s) for m, s in segs.items()} == before


# -- finding 12: the library trusts neither a privileged caller's environment
#    nor a table whose daemon does not serve the mount --------------------------

IN_NONBLOCK, IN_OPEN = 0o4000, 0x20
_libc = ctypes.CDLL(None, use_errno=True)


def opened_in(path, run):
    """Run run(); the names in directory path that were opened meanwhile."""
    fd = _libc.inotify_init1(IN_NONBLOCK)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    try:
        assert _libc.inotify_add_watch(fd, os.fsencode(path), IN_OPEN) >= 0
        result = run()
        names = set()
        while True:
            try:
                buf = os.read(fd, 65536)
            except BlockingIOError:
                break
            off = 0
            while off < len(buf):
                _, _, _, n = struct.unpack_from("iIII", buf, off)
                names.add(buf[off + 16:off + 16 + n].rstrip(b"\0").decode())
                off += 16 + n
        return result, names
    finally:
        os.close(fd)


def lib_path():
    path = os.path.join(BUILD, "libshmfs.so.1")
    assert os.path.exists(path), "%s is not built (run make all)" % path
    return path


def dlget(argv, env, **kw):
    env = dict(env)
    opts = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "detect_leaks=0"
    return subprocess.run(argv, env=env, capture_output=True, text=True,
                          timeout=60, **kw)


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="shmfs-views-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_privileged_program_ignores_shmfs_root_and_debug(shmfs, workdir):
    prog = os.path.join(BUILD, "progs", "shmfs_dlget")
    assert os.path.exists(prog), "%s is not built (run make all)" % prog
    plain = os.path.join(workdir, "plain")
    suid = os.path.join(workdir, "suid")
    shutil.copy(prog, plain)
    shutil.copy(prog, suid)
    os.chown(suid, 0, 0)
    os.chmod(plain, 0o755)
    os.chmod(suid, 0o4755)
    # a directory the stranger controls, with a .ctl of its own
    theirs = os.path.join(workdir, "theirs")
    os.mkdir(theirs)
    with open(os.path.join(theirs, ".ctl"), "w"):
        pass
    for p in (theirs, os.path.join(theirs, ".ctl")):
        os.chown(p, STRANGER, STRANGER)
    env = dict(os.environ, SHMFS_ROOT=theirs, SHMFS_DEBUG="1")
    setpriv = ["setpriv", "--reuid=%d" % STRANGER, "--regid=%d" % STRANGER,
               "--clear-groups"]

    # an ordinary program follows SHMFS_ROOT: the watch sees it
    r, names = opened_in(theirs, lambda: dlget(
        setpriv + [plain, lib_path(), str(KEY)], env))
    assert r.returncode == 0, r.stderr
    assert ".ctl" in names and "libshmfs[" in r.stderr
    assert r.stdout == "errno ENOSYS\n"

    # a setuid one does not, and says nothing on the stranger's stderr
    r, names = opened_in(theirs, lambda: dlget(
        setpriv + [suid, lib_path(), str(KEY)], env))
    assert r.returncode == 0, r.stderr
    assert names == set(), "the setuid program opened %s" % names
    assert "libshmfs[" not in r.stderr, r.stderr
    assert r.stdout in ("errno ENOSYS\n", "errno ENOENT\n"), r.stdout


def forged_table(path, pid, key, shmid, uid):
    """A table file of the right size, magic and layout that claims key
    has segment shmid, mode 0666, owned by uid."""
    size = sc.TABLE_SIZE
    slot = sc.slot_of(shmid)
    ds = dict.fromkeys(sc.DS_FIELDS, 0)
    ds.update(key=key, shmid=shmid, uid=uid, gid=uid, cuid=uid, cgid=uid,
              mode=0o666, segsz=4096, cpid=pid)
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(sc.TABLE_HEAD.pack(sc.TABLE_MAGIC, sc.TABLE_VERSION,
                                   sc.PAGE_SIZE, sc.MAX_SLOTS, pid, 0, 0, 0))
        f.seek(sc.TABLE_HEAD.size + 4 * sc.table_bucket(key))
        f.write(struct.pack("@I", slot + 1))
        f.seek(sc.TABLE_ENTRIES_OFF + slot * sc.TABLE_ENTRY_SIZE)
        f.write(sc.TABLE_ENTRY_HEAD.pack(0, 1, 0, 0) +
                sc.DS.pack(*(ds[n] for n in sc.DS_FIELDS)))
    os.chmod(path, 0o444)


def test_library_uses_no_table_but_its_daemons(shmfs, client, workdir):
    prog = os.path.join(BUILD, "progs", "shmfs_dlget")
    real = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    forged_id = 5  # slot 5, sequence 0: a shmid the daemon never gave
    daemon = shmfs.proc.pid

    def fake_root(name, table):
        """A root whose .ctl and .id are the mount's and .table is ours."""
        d = os.path.join(workdir, name)
        os.mkdir(d)
        os.symlink(shmfs.path(".ctl"), os.path.join(d, ".ctl"))
        os.symlink(shmfs.path(".id"), os.path.join(d, ".id"))
        os.symlink(table, os.path.join(d, ".table"))
        return d

    def get(root, key):
        r = dlget([prog, lib_path(), str(key)],
                  dict(os.environ, SHMFS_ROOT=root, SHMFS_DEBUG="1"))
        assert r.returncode == 0, r.stderr
        return r.stdout.strip(), "with its published table" in r.stderr

    # the daemon's own table, through the same kind of root: used
    honest = fake_root("honest", shmfs.table)
    assert get(honest, KEY) == ("shmid %d" % real, True)
    assert get(honest, KEY + 1) == ("errno ENOENT", True)

    # the right daemon pid, but a file the stranger made
    theirs = os.path.join(workdir, "theirs.table")
    forged_table(theirs, daemon, KEY + 1, forged_id, STRANGER)
    os.chown(theirs, STRANGER, STRANGER)
    # a root-owned file naming another live process as its daemon
    other = os.path.join(workdir, "other.table")
    forged_table(other, os.getpid(), KEY + 1, forged_id, STRANGER)
    for name, table in (("theirs", theirs), ("other", other)):
        root = fake_root(name, table)
        assert get(root, KEY + 1) == ("errno ENOENT", False), name
        assert get(root, KEY) == ("shmid %d" % real, False), name
