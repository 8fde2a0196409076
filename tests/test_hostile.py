"""Hostile file-system calls, as root and as another user (uid 1000).

Each table below lists calls and the errno each must get: names that are
not keys or shmids, wrong node types, sizes, offsets, every open flag
combination, xattr writes, odd modes and owners, ioctls with wrong numbers
and sizes.  Every test runs its calls on a fresh mount holding a few
segments, then checks that nothing changed (IPC_STAT, every xattr, status,
the data, the listings, the daemon's totals), that the daemon still
serves a shmget, and that every call got exactly the errno in its row.

The errno of each row is the one shmfs.1 promises; where shmfs.1 says
nothing (the kernel answers before the daemon is asked, or the daemon's
answer is not written down) the row says so in a comment.

The calls of one test run in one process that holds no session: this
same file run as a script, as root or through setpriv as uid 1000 (see
run_calls and main at the bottom).
"""

import ctypes
import fcntl
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import zlib

import pytest

import shmfs_client as sc
from shmfs_client import IPC_CREAT, IPC_EXCL

USER = 1000
KEY, PKEY, MKEY = 0x0BAD, 0x0BAE, 0x0BAF
SIZE = 4097
PATTERN = bytes((i * 13 + 5) & 0xFF for i in range(SIZE))
ATTACH = sc.ATTACH_FLAGS
WHO = ["root", "user"]


# -- the calls, as run in the calling process ---------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long,
                            ctypes.c_long]
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2


def _path(arg, paths):
    """'{seg}/x' -> a str path; {'p': '{key}', 'b': 'ff'} -> bytes path
    with the hex bytes as the last component."""
    if isinstance(arg, dict):
        return os.fsencode(arg["p"].format(**paths)) + b"/" + \
            bytes.fromhex(arg["b"])
    return arg.format(**paths)


def _with_fd(path, flags, fn):
    fd = os.open(path, flags)
    try:
        return fn(fd)
    finally:
        os.close(fd)


def _fallocate(fd, mode, off, length):
    if _libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return None


def _ioctl(fd, cmd, size):
    fcntl.ioctl(fd, cmd, bytearray(size), True)


def _shmget(root, key, size, flags):
    c = sc.Client(root)
    try:
        return c.shmget(key, size, flags)
    finally:
        c.close()


def _ctl_raw(root, cmd, payload):
    fd = os.open(os.path.join(root, sc.CTL_NAME), os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, cmd, bytearray(payload), True)
    finally:
        os.close(fd)


def do_call(call, paths):
    """Run one call -> 'OK', 'OK:<n>' (a count) or the errno name."""
    op, args = call[0], call[1:]
    P = lambda i: _path(args[i], paths)  # noqa: E731
    try:
        if op == "stat":
            os.stat(P(0))
        elif op == "lstat":
            os.lstat(P(0))
        elif op == "open":
            os.close(os.open(P(0), args[1], 0o600))
        elif op == "listdir":
            os.listdir(P(0))
        elif op == "readlink":
            os.readlink(P(0))
        elif op == "rmdir":
            os.rmdir(P(0))
        elif op == "unlink":
            os.unlink(P(0))
        elif op == "mkdir":
            os.mkdir(P(0), 0o755)
        elif op == "mkfifo":
            os.mkfifo(P(0))
        elif op == "mknod":
            os.mknod(P(0), args[1], os.makedev(args[2], args[3]))
        elif op == "symlink":
            os.symlink(P(0), P(1))
        elif op == "link":
            os.link(P(0), P(1))
        elif op == "rename":
            os.rename(P(0), P(1))
        elif op == "chmod":
            os.chmod(P(0), args[1])
        elif op == "chown":
            os.chown(P(0), args[1], args[2])
        elif op == "truncate":
            os.truncate(P(0), args[1])
        elif op == "utime":
            os.utime(P(0), (args[1], args[1]))
        elif op == "setxattr":
            os.setxattr(P(0), args[1], bytes.fromhex(args[2]), args[3])
        elif op == "setxattr_big":
            os.setxattr(P(0), args[1], b"x" * args[2])
        elif op == "removexattr":
            os.removexattr(P(0), args[1])
        elif op == "pread":
            return "OK:%d" % len(_with_fd(P(0), os.O_RDONLY,
                                          lambda fd: os.pread(fd, args[2], args[1])))
        elif op == "pwrite":
            return "OK:%d" % _with_fd(P(0), os.O_WRONLY, lambda fd: os.pwrite(
                fd, bytes.fromhex(args[2]), args[1]))
        elif op == "seek_read":
            return "OK:%d" % len(_with_fd(P(0), os.O_RDONLY, lambda fd: (
                os.lseek(fd, args[1], os.SEEK_SET), os.read(fd, 16))[1]))
        elif op == "seek_write":
            return "OK:%d" % _with_fd(P(0), os.O_WRONLY, lambda fd: (
                os.lseek(fd, args[1], os.SEEK_SET), os.write(fd, b"z"))[1])
        elif op == "ftruncate":
            _with_fd(P(0), os.O_WRONLY, lambda fd: os.ftruncate(fd, args[1]))
        elif op == "fallocate":
            _with_fd(P(0), os.O_WRONLY,
                     lambda fd: _fallocate(fd, args[1], args[2], args[3]))
        elif op == "ioctl":
            _with_fd(P(0), args[1], lambda fd: _ioctl(fd, args[2], args[3]))
        elif op == "shmget":
            return "OK:%d" % _shmget(paths["root"], args[0], args[1], args[2])
        elif op == "ctl_raw":
            _ctl_raw(paths["root"], args[0], bytes.fromhex(args[1]))
        else:
            raise ValueError("unknown call %r" % op)
    except OSError as e:
        return sc.errno_name(e.errno)
    return "OK"


def run_calls(m, who, calls, paths):
    """Every call in a process of its own, without a session, as root or
    as uid 1000 (this file as a script)."""
    me = os.path.join(os.path.dirname(sc.script_path()),
                      os.path.basename(__file__))
    argv = [sys.executable, me, json.dumps({"paths": paths, "calls": calls})]
    if who == "root":
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    else:
        r = m.as_user(argv, uid=USER, gid=USER, timeout=120)
    assert r.returncode == 0, "runner failed: %s" % r.stderr
    return json.loads(r.stdout)


# -- the world every test starts from -----------------------------------------

class World:
    """A mount with four segments and a directory outside it:
        seg    key 0x0bad, 4097 bytes of PATTERN, mode 0666, root's
        priv   key 0x0bae, mode 0600, root's (uid 1000 may not open it)
        mine   key 0x0baf, mode 0644, owned by uid 1000 (created by root)
        anon   an IPC_PRIVATE segment, mode 0640
    """

    def __init__(self, m):
        self.m = m
        self.c = m.client()
        c = self.c
        self.shmid = c.shmget(KEY, SIZE, IPC_CREAT | 0o666)
        with c.attach(self.shmid) as a:
            a.write(0, PATTERN)
        self.pshmid = c.shmget(PKEY, 4096, IPC_CREAT | 0o600)
        self.mshmid = c.shmget(MKEY, 100, IPC_CREAT | 0o644)
        c.set(self.mshmid, USER, USER, 0o644)
        self.ashmid = c.shmget(sc.IPC_PRIVATE, 8192, 0o640)
        self.out = tempfile.mkdtemp(prefix="shmfs-outside-")
        os.chmod(self.out, 0o777)
        outfile = os.path.join(self.out, "file")
        with open(outfile, "w") as f:
            f.write("outside")
        os.chmod(outfile, 0o666)
        r = m.root
        self.paths = {
            "root": r, "ctl": m.path(".ctl"), "status": m.path("status"),
            "iddir": m.path(".id"), "table": m.path(".table"),
            "seg": m.seg_path(KEY, self.shmid), "key": m.path(sc.key_name(KEY)),
            "seg_id": m.id_path(self.shmid), "priv": m.seg_path(PKEY, self.pshmid),
            "mine": m.seg_path(MKEY, self.mshmid),
            "anon": m.seg_path(sc.IPC_PRIVATE, self.ashmid),
            "anondir": m.path(sc.key_name(sc.IPC_PRIVATE)),
            "shmid": str(self.shmid), "pshmid": str(self.pshmid),
            "out": self.out, "outfile": outfile,
        }
        self.shmids = [self.shmid, self.pshmid, self.mshmid, self.ashmid]
        self.before = self.snapshot()

    def snapshot(self):
        m, c = self.m, self.c
        snap = {"stat": {s: c.stat(s) for s in self.shmids}, "xattr": {},
                "data": {}, "status": sc.read_status(m.root),
                "root": sorted(os.listdir(m.root)),
                "ids": sorted(os.listdir(m.path(".id"))),
                "keys": {k: sorted(os.listdir(m.path(sc.key_name(k))))
                         for k in (KEY, PKEY, MKEY, sc.IPC_PRIVATE)},
                "nodes": {}}
        for s in self.shmids:
            p = m.id_path(s)
            snap["xattr"][s] = {n: os.getxattr(p, n) for n in os.listxattr(p)}
            with open(p, "rb") as f:
                snap["data"][s] = f.read()
        for n in (".ctl", "status", ".id", ""):
            st = os.lstat(m.path(n))
            snap["nodes"][n] = (st.st_mode, st.st_uid, st.st_gid, st.st_size)
        return snap

    def stats(self):
        return self.m.stats()

    def check_unchanged(self):
        after = self.snapshot()
        for part in self.before:
            assert after[part] == self.before[part], \
                "hostile calls changed %s" % part
        assert self.before["data"][self.shmid] == PATTERN
        # what the kernel holds open goes at its RELEASE, a moment later
        # (not "objects": a removed segment lives on while the kernel
        # still caches its node)
        want = {"shmids": 4, "attaches": 0, "pending_forks": 0,
                "handles": 0}
        st = self.m.stats_when(**want)
        assert {k: st[k] for k in want} == want, "the daemon's totals: %s" % st
        assert self.m.alive()
        new = self.c.shmget(0x600D, 4096, IPC_CREAT | IPC_EXCL | 0o600)
        self.c.rmid(new)

    def close(self):
        shutil.rmtree(self.out, ignore_errors=True)


@pytest.fixture
def world(shmfs):
    w = World(shmfs)
    yield w
    w.close()


def check_table(m, world, who, table):
    """table: list of (call, expected for root, expected for uid 1000)."""
    calls = [row[0] for row in table]
    got = run_calls(m, who, calls, world.paths)
    wrong = []
    for (call, want_root, want_user), res in zip(table, got):
        want = want_root if who == "root" else want_user
        if res != want:
            wrong.append("%r: got %s, expected %s" % (call, res, want))
    assert not wrong, "%d of %d calls as %s:\n  %s" % (
        len(wrong), len(calls), who, "\n  ".join(wrong))
    world.check_unchanged()


def both(call, want):
    return (call, want, want)


# -- names that are not keys or shmids ----------------------------------------

def _digits_as(shmid, zero):
    """shmid written with another script's digits (Arabic-Indic, ...)."""
    return "".join(chr(zero + int(d)) for d in str(shmid))


def bad_root_names():
    # each a near miss of a live key (0x00000bad) or of a fixed node
    return [
        "0x00000BAD", "0X00000bad", "0x00000Bad", "0xbad", "0x0000bad",
        "0x000000bad", " 0x00000bad", "0x00000bad ", "0x00000bad\n",
        "\t0x00000bad", "+0x00000bad", "-0x00000bad", "0x+0000bad",
        "0x-0000bad", "0x0000 bad", "0x00000bad\x01", "0x00000bad%",
        "0x0000_bad", "0x00000gad", "00x0000bad", "x00000bad", "0x", "0",
        "-1", "+1", "2989", "4294967296", "2147483648", "32768",
        "0x100000bad", "0xffffffff0", "status ", " status", "Status",
        ".ctl ", ".CTL", ".Id", ".id.", ".table.", "...", " ", "%",
        "%s%n%x", "\x01", "\n", "\t", "a\nb", "\x7f", "x" * 255,
        "0x" + "0" * 253,
    ]


def bad_shmid_names(shmid):
    return [
        "0%d" % shmid, "00%d" % shmid, "+%d" % shmid, "-%d" % shmid,
        " %d" % shmid, "%d " % shmid, "%d\n" % shmid, "%d\x01" % shmid,
        str(shmid + (1 << 32)), str(shmid + (1 << 31)),
        str(shmid - (1 << 32)), hex(shmid), "0x%08x" % shmid, "%d.0" % shmid,
        "%de0" % shmid, _digits_as(shmid, 0x660), _digits_as(shmid, 0xFF10),
        "0", "00", "-0", "-1", "+1", "4294967296", "2147483648",
        "99999999999", "1" * 255, "%d", "\x01", "", ".%d" % shmid,
    ]


def test_names_at_the_root_that_are_not_keys(shmfs, world):
    """The daemon spells each key one way: anything else is ENOENT, the
    live key's near misses too, and creating such a name is EPERM."""
    table = []
    for name in bad_root_names():
        p = "{root}/" + name.replace("{", "{{").replace("}", "}}")
        table += [both(["stat", p], "ENOENT"), both(["unlink", p], "ENOENT"),
                  both(["rmdir", p], "ENOENT"),
                  both(["open", p, os.O_RDWR | os.O_CREAT], "EPERM")]
    for raw in ("ff", "80", "c0af", "3078303030303062ff", "e280ae"):
        p = {"p": "{root}", "b": raw}
        table += [both(["stat", p], "ENOENT"),
                  both(["open", p, os.O_RDONLY | os.O_CREAT], "EPERM")]
    # longer than NAME_MAX (statfs says 255): FUSE passes any name that
    # fits in a path to the daemon, which knows none of them (not in
    # shmfs.1)
    for name in ("x" * 256, "0x" + "0" * 254, "9" * 1024, "0x" + "0" * 3000):
        table += [both(["stat", "{root}/" + name], "ENOENT"),
                  both(["open", "{root}/" + name, os.O_CREAT | os.O_RDWR],
                       "EPERM")]
    # a path longer than PATH_MAX: the kernel refuses it itself
    for name in ("x" * 4096, "0x" + "0" * 5000):
        table += [both(["stat", "{root}/" + name], "ENAMETOOLONG"),
                  both(["open", "{root}/" + name, os.O_CREAT | os.O_RDWR],
                       "ENAMETOOLONG")]
    check_table(shmfs, world, "root", table)
    check_table(shmfs, world, "user", table)


@pytest.mark.parametrize("who", WHO)
def test_names_in_key_and_id_dirs_that_are_not_shmids(shmfs, world, who):
    """Only the shmid in decimal without leading zeros names a segment: a
    wrapped, signed, padded or hex spelling of a live shmid reaches
    nothing, in its key directory and under .id."""
    table = []
    for d in ("{key}", "{iddir}", "{anondir}"):
        for name in bad_shmid_names(world.shmid):
            p = d + "/" + name if name else d + "/ "
            table += [both(["stat", p], "ENOENT"),
                      both(["open", p, os.O_RDONLY | ATTACH], "ENOENT")]
            if d != "{iddir}":
                table.append(both(["unlink", p], "ENOENT"))
        table += [both(["stat", {"p": d, "b": "33323736ff"}], "ENOENT"),
                  both(["stat", d + "/" + "1" * 256], "ENOENT"),
                  both(["stat", d + "/" + "1" * 4096], "ENAMETOOLONG")]
    # another key's shmid is not in this key's directory
    table += [both(["stat", "{key}/{pshmid}"], "ENOENT"),
              both(["unlink", "{key}/{pshmid}"], "ENOENT"),
              both(["stat", "{anondir}/{shmid}"], "ENOENT")]
    check_table(shmfs, world, who, table)


def test_dot_dot_leaves_the_mount_only_at_its_root(shmfs, world):
    m = shmfs
    for p in ("{key}/..", "{iddir}/..", "{anondir}/..", "{key}/../.id/.."):
        assert os.stat(p.format(**world.paths)).st_ino == 1, p
    outside = os.stat(os.path.dirname(m.root))
    st = os.stat(m.path(".."))
    assert (st.st_dev, st.st_ino) == (outside.st_dev, outside.st_ino)
    # a segment opened through .. is the same file, checked the same way
    p = m.path(".id", "..", sc.key_name(PKEY), str(world.pshmid))
    assert os.stat(p).st_ino == world.pshmid
    res, _ = m.script(["open", p, "r"], ["fstat", p], uid=USER)
    assert res[0] == "EACCES" and res[1]["ino"] == world.pshmid
    world.check_unchanged()


# -- wrong types ---------------------------------------------------------------

WRONG_TYPES = [
    # directories opened for writing: the kernel's EISDIR
    both(["open", "{root}", os.O_WRONLY], "EISDIR"),
    both(["open", "{key}", os.O_RDWR], "EISDIR"),
    both(["open", "{iddir}", os.O_WRONLY], "EISDIR"),
    both(["open", "{anondir}", os.O_RDWR], "EISDIR"),
    # files as directories: the kernel's ENOTDIR
    both(["open", "{seg}", os.O_RDONLY | os.O_DIRECTORY], "ENOTDIR"),
    both(["open", "{ctl}", os.O_RDONLY | os.O_DIRECTORY], "ENOTDIR"),
    both(["listdir", "{seg}"], "ENOTDIR"),
    both(["listdir", "{status}"], "ENOTDIR"),
    both(["stat", "{seg}/x"], "ENOTDIR"),
    both(["stat", "{ctl}/"], "ENOTDIR"),
    both(["rmdir", "{seg}"], "ENOTDIR"),
    both(["rmdir", "{seg_id}"], "ENOTDIR"),
    both(["rmdir", "{ctl}"], "ENOTDIR"),
    both(["rmdir", "{status}"], "ENOTDIR"),
    # rmdir of the directories shmfs owns
    both(["rmdir", "{key}"], "ENOTEMPTY"),
    both(["rmdir", "{anondir}"], "ENOTEMPTY"),
    both(["rmdir", "{iddir}"], "EPERM"),
    # unlink of a directory: the kernel's EISDIR; of a fixed node: EPERM
    both(["unlink", "{key}"], "EISDIR"),
    both(["unlink", "{iddir}"], "EISDIR"),
    both(["unlink", "{anondir}"], "EISDIR"),
    both(["unlink", "{ctl}"], "EPERM"),
    both(["unlink", "{status}"], "EPERM"),
    both(["unlink", "{table}"], "EPERM"),
    both(["unlink", "{seg_id}"], "EPERM"),
    # readlink of anything but .table: the kernel's EINVAL
    both(["readlink", "{seg}"], "EINVAL"),
    both(["readlink", "{ctl}"], "EINVAL"),
    both(["readlink", "{status}"], "EINVAL"),
    both(["readlink", "{key}"], "EINVAL"),
    both(["readlink", "{root}"], "EINVAL"),
    # new nodes of any type: EPERM, also with a key's or a shmid's name
    both(["mkfifo", "{root}/fifo"], "EPERM"),
    both(["mkfifo", "{key}/fifo"], "EPERM"),
    both(["mkfifo", "{iddir}/123"], "EPERM"),
    both(["mkfifo", "{root}/0x00001234"], "EPERM"),
    both(["mknod", "{root}/null", stat.S_IFCHR | 0o666, 1, 3], "EPERM"),
    both(["mknod", "{key}/1", stat.S_IFREG | 0o600, 0, 0], "EPERM"),
    both(["mknod", "{root}/sock", stat.S_IFSOCK | 0o600, 0, 0], "EPERM"),
    both(["mknod", "{root}/0x00001234", stat.S_IFREG | 0o600, 0, 0], "EPERM"),
    both(["mkdir", "{root}/0x00001234"], "EPERM"),
    both(["mkdir", "{key}/d"], "EPERM"),
    both(["mkdir", "{iddir}/{pshmid}"], "EEXIST"),
    both(["mkdir", "{root}/0x00000bad"], "EEXIST"),
    both(["mkdir", "{iddir}"], "EEXIST"),
    both(["symlink", "/etc/passwd", "{root}/passwd"], "EPERM"),
    both(["symlink", "/etc/passwd", "{key}/1"], "EPERM"),
    both(["symlink", "{seg}", "{iddir}/1"], "EPERM"),
    both(["symlink", "{outfile}", "{root}/0x00001234"], "EPERM"),
    both(["symlink", "/etc/passwd", "{seg}"], "EEXIST"),
    both(["mkfifo", "{seg}"], "EEXIST"),
    # hard links and renames across the mount: the kernel's EXDEV
    both(["link", "{seg}", "{out}/hard"], "EXDEV"),
    both(["link", "{outfile}", "{root}/hard"], "EXDEV"),
    both(["link", "{outfile}", "{key}/5"], "EXDEV"),
    both(["link", "{seg}", "{key}/5"], "EPERM"),
    both(["link", "{seg}", "{root}/0x00001234"], "EPERM"),
    both(["rename", "{seg}", "{out}/moved"], "EXDEV"),
    both(["rename", "{outfile}", "{root}/0x00001234"], "EXDEV"),
    both(["rename", "{outfile}", "{seg}"], "EXDEV"),
    # size and times of the fixed nodes
    both(["truncate", "{ctl}", 0], "EPERM"),
    both(["truncate", "{ctl}", 10], "EPERM"),
    both(["truncate", "{status}", 0], "EPERM"),
    both(["truncate", "{key}", 0], "EISDIR"),
    both(["utime", "{ctl}", 12345], "EPERM"),
    both(["utime", "{status}", 12345], "EPERM"),
    both(["utime", "{key}", 12345], "EPERM"),
    both(["utime", "{seg}", 12345], "EPERM"),
]


@pytest.mark.parametrize("who", WHO)
def test_wrong_node_types(shmfs, world, who):
    check_table(shmfs, world, who, WRONG_TYPES)
    assert os.path.exists(world.paths["outfile"])
    assert os.listdir(world.out) == ["file"]


# -- sizes ---------------------------------------------------------------------

SIZE_MAX = (1 << 64) - 1
SHM_NORESERVE = 0o10000


@pytest.mark.parametrize("who", WHO)
def test_shmget_sizes_at_and_past_the_limits(shmfs_factory, who):
    """0, 1, shmmax, shmmax+1, 2^63, SIZE_MAX for a new key, an existing
    key and IPC_PRIVATE: EINVAL outside [shmmin, shmmax], and a failed
    shmget leaves no segment and takes no memory."""
    shmmax = 1 << 20
    m = shmfs_factory(["-o", "shmmax=1M"])
    w = World(m)
    try:
        check_sizes(m, w, who, shmmax)
    finally:
        w.close()


def check_sizes(m, w, who, shmmax):
    base = w.stats()
    table = [
        both(["shmget", 0x5001, 0, IPC_CREAT | 0o600], "EINVAL"),
        both(["shmget", 0x5001, shmmax + 1, IPC_CREAT | 0o600], "EINVAL"),
        both(["shmget", 0x5001, 1 << 63, IPC_CREAT | 0o600], "EINVAL"),
        both(["shmget", 0x5001, SIZE_MAX, IPC_CREAT | 0o600], "EINVAL"),
        both(["shmget", 0x5001, SIZE_MAX - 4095, IPC_CREAT | 0o600], "EINVAL"),
        both(["shmget", sc.IPC_PRIVATE, SIZE_MAX, 0o600], "EINVAL"),
        both(["shmget", sc.IPC_PRIVATE, 0, 0o600], "EINVAL"),
        both(["shmget", sc.IPC_PRIVATE, shmmax + 1, 0o600], "EINVAL"),
        # an existing key: any size up to its segsz, 0 included
        both(["shmget", KEY, SIZE + 1, 0o600], "EINVAL"),
        both(["shmget", KEY, SIZE_MAX, 0o600], "EINVAL"),
        both(["shmget", KEY, 1 << 63, IPC_CREAT], "EINVAL"),
        both(["shmget", KEY, 0, 0], "OK:%d" % w.shmid),
        both(["shmget", KEY, SIZE, 0o400], "OK:%d" % w.shmid),
        both(["shmget", KEY, SIZE_MAX, IPC_CREAT | IPC_EXCL], "EEXIST"),
        # the owner's bits of a 0600 segment: uid 1000 is other
        (["shmget", PKEY, 0, 0o600], "OK:%d" % w.pshmid, "EACCES"),
    ]
    check_table(m, w, who, table)
    assert w.stats()["memory"] == base["memory"]
    # the edges that succeed: 1 byte and shmmax exactly
    got = run_calls(m, who, [["shmget", 0x5002, 1, IPC_CREAT | 0o600],
                             ["shmget", 0x5003, shmmax, IPC_CREAT | 0o600]],
                    w.paths)
    assert [g.startswith("OK:") for g in got] == [True, True], got
    one, big = (int(g[3:]) for g in got)
    assert w.c.stat(one)["segsz"] == 1 and w.c.stat(big)["segsz"] == shmmax
    assert os.stat(m.seg_path(0x5002, one)).st_size == 1
    assert w.stats()["pages"] == base["pages"] + 1 + shmmax // sc.PAGE_SIZE
    w.c.rmid(one)
    w.c.rmid(big)
    w.check_unchanged()


def test_shmget_beyond_what_the_host_can_commit_fails_as_on_the_kernel(
        shmfs, world):
    """With the host's limits, shmmax is near 2^64: a segment that size
    passes the size check and is larger than any file (EINVAL, as the
    kernel's shmem file setup says); 2^62 bytes are more than RAM and swap
    under the default overcommit policy (ENOMEM).  Nothing is taken."""
    info = world.c.info()
    if info["shmmax"] < 1 << 63:
        pytest.skip("the host's shmmax is %d" % info["shmmax"])
    with open("/proc/sys/vm/overcommit_memory") as f:
        if f.read().strip() != "0":
            pytest.skip("vm.overcommit_memory is not 0")
    table = [both(["shmget", 0x5004, info["shmmax"], IPC_CREAT | 0o600],
                  "EINVAL"),
             both(["shmget", sc.IPC_PRIVATE, 1 << 62, 0o600], "ENOMEM")]
    check_table(shmfs, world, "root", table)
    check_table(shmfs, world, "user", table)
    # SHM_NORESERVE asks for no reservation: a sparse 1 TiB segment is
    # made, as the kernel makes it, and takes no memory
    base = world.stats()["memory"]
    got = run_calls(shmfs, "user", [["shmget", sc.IPC_PRIVATE, 1 << 40,
                                     SHM_NORESERVE | 0o600]], world.paths)
    assert got[0].startswith("OK:"), got
    big = int(got[0][3:])
    assert world.c.stat(big)["segsz"] == 1 << 40
    assert world.stats()["memory"] == base
    world.c.rmid(big)


# -- offsets -------------------------------------------------------------------

@pytest.mark.parametrize("who", WHO)
def test_offsets_negative_huge_and_across_the_end(shmfs, world, who):
    tail = PATTERN[SIZE - 3:].hex()
    crossing = sc.PAGE_SIZE - (SIZE - 3)
    table = [
        # negative offsets never reach the daemon: the kernel's EINVAL
        both(["pread", "{seg}", -1, 1], "EINVAL"),
        both(["pwrite", "{seg}", -1, "00"], "EINVAL"),
        both(["pread", "{seg}", -(1 << 62), 1], "EINVAL"),
        both(["seek_read", "{seg}", -1], "EINVAL"),
        both(["pread", "{seg}", (1 << 63) - 1, 1], "EINVAL"),
        # at or past shm_segsz: reads give 0 bytes, writes EPERM (the
        # memory is sealed at its size)
        both(["pread", "{seg}", SIZE, 1], "OK:0"),
        both(["pread", "{seg}", SIZE + 1, 100], "OK:0"),
        both(["pread", "{seg}", 1 << 62, 1], "OK:0"),
        both(["pread", "{seg}", (1 << 63) - 2, 1], "OK:0"),
        both(["seek_read", "{seg}", 1 << 62], "OK:0"),
        both(["pwrite", "{seg}", SIZE, "00"], "EPERM"),
        both(["pwrite", "{seg}", SIZE + 4096, "00"], "EPERM"),
        both(["pwrite", "{seg}", 1 << 32, "00"], "EPERM"),
        both(["pwrite", "{seg}", 1 << 62, "00"], "EPERM"),
        both(["pwrite", "{seg}", (1 << 63) - 2, "00"], "EPERM"),
        both(["seek_write", "{seg}", 1 << 62], "EPERM"),
        # across the end: cut short, at shm_segsz in the arena, at the
        # last page boundary before it with passthrough (the same bytes
        # again, so that nothing changes)
        both(["pread", "{seg}", SIZE - 3, 100], "OK:3"),
        both(["pwrite", "{seg}", SIZE - 3, tail + "ffffff"],
             "OK:%d" % (crossing if world.stats()["passthrough"] else 3)),
        both(["pread", "{seg}", 0, 1 << 20], "OK:%d" % SIZE),
        # sizes: only shm_segsz itself (a no-op)
        both(["truncate", "{seg}", SIZE], "OK"),
        both(["ftruncate", "{seg}", SIZE], "OK"),
        both(["truncate", "{seg}", 1 << 62], "EPERM"),
        both(["ftruncate", "{seg}", SIZE + 1], "EPERM"),
        both(["ftruncate", "{seg}", -1], "EINVAL"),
        both(["truncate", "{seg}", (1 << 63) - 1], "EPERM"),
        # fallocate(2): the daemon has no such operation (not in shmfs.1)
        both(["fallocate", "{seg}", 0, 0, 10], "ENOTSUP"),
        both(["fallocate", "{seg}", FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
              0, SIZE], "ENOTSUP"),
        both(["fallocate", "{seg}", 0, 1 << 62, 1], "ENOTSUP"),
        both(["fallocate", "{seg}", 0, -1, 1], "EINVAL"),
        # a segment the caller may not read or write
        (["pread", "{priv}", 0, 1], "OK:1", "EACCES"),
        (["pwrite", "{priv}", 1 << 62, "00"], "EPERM", "EACCES"),
        (["truncate", "{priv}", 0], "EPERM", "EPERM"),
    ]
    check_table(shmfs, world, who, table)


# -- open flags ----------------------------------------------------------------

ACCMODES = {"O_RDONLY": os.O_RDONLY, "O_WRONLY": os.O_WRONLY,
            "O_RDWR": os.O_RDWR}
EXTRAS = {
    "": 0, "O_TRUNC": os.O_TRUNC, "O_APPEND": os.O_APPEND,
    "O_CREAT": os.O_CREAT, "O_CREAT|O_EXCL": os.O_CREAT | os.O_EXCL,
    "O_DIRECTORY": os.O_DIRECTORY, "O_NOFOLLOW": os.O_NOFOLLOW,
    "O_NONBLOCK": os.O_NONBLOCK, "O_SYNC": os.O_SYNC, "O_DIRECT": os.O_DIRECT,
    "O_PATH": os.O_PATH, "O_TMPFILE": os.O_TMPFILE,
    "O_NOATIME": os.O_NOATIME,
    "attach": ATTACH, "attach|O_TRUNC": ATTACH | os.O_TRUNC,
    "attach|O_PATH": ATTACH | os.O_PATH,
}
NODES = {"seg": "file", "seg_id": "file", "priv": "file", "ctl": "ctl",
         "status": "status", "root": "dir", "key": "dir", "iddir": "dir"}


def expect_open(who, node, acc, extra):
    """What open(2) of node with acc|extra must give, and why."""
    kind = NODES[node]
    flags = ACCMODES[acc] | EXTRAS[extra]
    denied = node == "priv" and who == "user"
    if flags & os.O_PATH:
        return "OK"  # never reaches the daemon, opens nothing
    if flags & os.O_TMPFILE == os.O_TMPFILE:
        if acc == "O_RDONLY":
            return "EINVAL"  # the kernel: O_TMPFILE needs write access
        # not in shmfs.1: the daemon has no tmpfile operation
        return "ENOTSUP" if kind == "dir" else "ENOTDIR"
    if flags & os.O_CREAT and flags & os.O_EXCL:
        return "EEXIST"
    if flags & os.O_DIRECTORY:
        return "ENOTDIR" if kind != "dir" else (
            "OK" if acc == "O_RDONLY" else "EISDIR")
    if kind == "dir":
        if acc != "O_RDONLY" or flags & (os.O_TRUNC | os.O_CREAT):
            return "EISDIR"
        if flags & os.O_NOATIME and who == "user":
            return "EPERM"  # the kernel: O_NOATIME only for the owner
        if flags & os.O_DIRECT:
            return "EINVAL"  # the kernel: directories have no direct I/O
        return "OK"
    if flags & os.O_NOATIME and who == "user":
        return "EPERM"  # the kernel: O_NOATIME only for the file's owner
    if kind == "file":
        if flags & os.O_TRUNC:
            return "EPERM"  # shmfs.1: O_TRUNC on a segment, any mode
        if denied:
            return "EACCES"
        if flags & ATTACH == ATTACH:
            return "EPROTO"  # an attach without a session
        return "OK"
    if kind == "status":
        if acc != "O_RDONLY" or flags & os.O_TRUNC:
            return "EACCES"
        return "OK"
    # .ctl: any mode; O_TRUNC is not in shmfs.1 and changes nothing
    return "OK"


@pytest.mark.parametrize("who", WHO)
def test_every_open_flag_combination(shmfs, world, who):
    table = []
    for node in NODES:
        for acc in ACCMODES:
            for extra in EXTRAS:
                want = expect_open(who, node, acc, extra)
                table.append((["open", "{%s}" % node,
                               ACCMODES[acc] | EXTRAS[extra]], want, want))
    check_table(shmfs, world, who, table)
    assert os.stat(world.paths["ctl"]).st_size == 0


# -- xattrs --------------------------------------------------------------------

XATTR_NODES = ["{seg}", "{mine}", "{ctl}", "{status}", "{root}", "{key}",
               "{iddir}"]


def xattr_table():
    table = []
    for p in XATTR_NODES:
        for name in ("user.shm.mode", "user.shm.nattch", "user.shm.key",
                     "user.shm.pids", "user.shm.new", "user.shm."):
            # shmfs.1: EPERM for names in user.shm.
            table += [both(["setxattr", p, name, "30373737", 0], "EPERM"),
                      both(["setxattr", p, name, "", os.XATTR_CREATE], "EPERM"),
                      both(["setxattr", p, name, "31", os.XATTR_REPLACE],
                           "EPERM"),
                      both(["removexattr", p, name], "EPERM")]
        for name in ("user.other", "user.shmfs.stats", "user.shmfs.requests",
                     "user.shm", "user.SHM.mode", "x"):
            # shmfs.1: ENOTSUP for any other name
            table += [both(["setxattr", p, name, "31", 0], "ENOTSUP"),
                      both(["removexattr", p, name], "ENOTSUP")]
        for name in ("trusted.x", "security.x", "trusted.overlay.opaque"):
            # root's reach the daemon (ENOTSUP); a user's are refused by
            # the kernel (EPERM)
            table += [(["setxattr", p, name, "79", 0], "ENOTSUP", "EPERM"),
                      (["removexattr", p, name], "ENOTSUP", "EPERM")]
        # values the kernel checks itself before asking the daemon
        table += [
            both(["setxattr", p, "security.capability", "31", 0], "EINVAL"),
            both(["setxattr", p, "system.posix_acl_access", "31", 0],
                 "EINVAL"),
            # the owner may remove an ACL: the daemon has none to remove
            (["removexattr", p, "system.posix_acl_access"], "ENOTSUP",
             "ENOTSUP" if p == "{mine}" else "EPERM"),
            both(["setxattr", p, "", "31", 0], "ERANGE"),
            both(["setxattr", p, "user." + "a" * 251, "31", 0], "ERANGE"),
            both(["setxattr", p, "user.shm.mode", "31", 0x100], "EINVAL"),
            both(["setxattr_big", p, "user.shm.mode", 65537], "E2BIG"),
            both(["setxattr_big", p, "user.other", 65536], "ENOTSUP"),
        ]
    return table


@pytest.mark.parametrize("who", WHO)
def test_xattr_writes(shmfs, world, who):
    check_table(shmfs, world, who, xattr_table())


# -- odd modes and owners ------------------------------------------------------

ODD_MODES = [0o4755, 0o2755, 0o1777, 0o7777, 0o4000, 0o1000, 0o6666, 0o3777]


def setattr_table():
    table = []
    for mode in ODD_MODES:
        # shmfs.1: EPERM unless owner, creator or root; then EINVAL for
        # bits beyond 0777
        table += [(["chmod", "{seg}", mode], "EINVAL", "EPERM"),
                  (["chmod", "{priv}", mode], "EINVAL", "EPERM"),
                  both(["chmod", "{mine}", mode], "EINVAL")]
    for p in ("{ctl}", "{status}", "{root}", "{key}", "{iddir}", "{anondir}"):
        # shmfs.1: EPERM on any node that is not a segment
        table += [both(["chmod", p, 0o777], "EPERM"),
                  both(["chmod", p, 0o4755], "EPERM"),
                  both(["chown", p, USER, USER], "EPERM"),
                  both(["chown", p, -1, -1], "EPERM"),
                  both(["chown", p, 0, 0], "EPERM")]
    table += [
        # chown(-1, -1) changes nothing: allowed to anyone, as on Linux
        both(["chown", "{seg}", -1, -1], "OK"),
        both(["chown", "{priv}", -1, -1], "OK"),
        both(["chown", "{mine}", -1, -1], "OK"),
        # a stranger's chown, whatever the ids
        (["chown", "{priv}", USER, -1], None, "EPERM"),
        (["chown", "{seg}", -1, USER], None, "EPERM"),
        (["chown", "{seg}", USER, USER], None, "EPERM"),
        (["chown", "{seg}", 0, 0], None, "EPERM"),
        (["chmod", "{seg}", 0o666], None, "EPERM"),
        (["chmod", "{seg}", 0o777], None, "EPERM"),
        (["chmod", "{priv}", 0o600], None, "EPERM"),
        both(["utime", "{mine}", 1], "EPERM"),
        both(["truncate", "{mine}", 0], "EPERM"),
    ]
    return table


@pytest.mark.parametrize("who", WHO)
def test_setattr_with_odd_modes_and_owners(shmfs, world, who):
    table = [row for row in setattr_table()
             if (row[1] if who == "root" else row[2]) is not None]
    check_table(shmfs, world, who, table)


def test_file_type_bits_in_chmod_are_dropped_by_the_kernel(shmfs, world):
    """chmod(2) keeps only 07777 of its mode: 0170777 is chmod 0777, and
    the segment stays a regular file; the owner can do it, a stranger
    cannot."""
    p = world.paths["mine"]
    res, _ = shmfs.script(["chmod", p, "170777"], ["fstat", p], uid=USER)
    assert res[0] == 0
    assert stat.S_ISREG(res[1]["mode"]) and stat.S_IMODE(res[1]["mode"]) == 0o777
    res, _ = shmfs.script(["chmod", p, "140640"], ["chmod", world.paths["seg"],
                                                  "100600"], uid=USER)
    assert res == [0, "EPERM"]
    st = world.c.stat(world.mshmid)
    assert st["mode"] == 0o640
    assert stat.S_ISREG(os.stat(p).st_mode)
    assert world.c.stat(world.shmid) == world.before["stat"][world.shmid]


# -- ioctls --------------------------------------------------------------------

FS_IOC_GETFLAGS, FS_IOC_SETFLAGS = 0x80086601, 0x40086602
FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR = 0x801C581F, 0x401C5820
FS_IOC_GETVERSION = 0x80087601
# ioctl types the VFS answers itself (FIONREAD, FIGETBSZ, FIFREEZE, ...)
VFS_TYPES = {0x00, 0x54, 0x58, 0x66, 0x94, 0x15, 0x76}
PROTO = [(1, sc.HELLO.size), (2, 24), (3, 104), (4, 16), (5, 16), (6, 16),
         (7, 8), (8, 8), (9, sc.HELLO.size)]


def _ioc(d, nr, size, typ=ord("S")):
    return (d << 30) | (size << 16) | (typ << 8) | nr


def random_ioctls(n, seed):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        cmd = rng.getrandbits(32)
        if (cmd >> 8) & 0xFF not in VFS_TYPES:
            out.append(cmd)
    return out


def ioctl_table():
    table = []
    nodes = [("{ctl}", os.O_RDWR), ("{seg}", os.O_RDWR),
             ("{status}", os.O_RDONLY), ("{root}", os.O_RDONLY),
             ("{key}", os.O_RDONLY), ("{iddir}", os.O_RDONLY)]
    for p, fl in nodes:
        # shmfs.1: ENOTTY for an unknown request or a wrong size, and for
        # any request on anything but .ctl
        for cmd in random_ioctls(40, zlib.crc32(p.encode())):
            table.append(both(["ioctl", p, fl, cmd, 16384], "ENOTTY"))
        for cmd in (FS_IOC_GETFLAGS, FS_IOC_FSGETXATTR, FS_IOC_GETVERSION):
            table.append(both(["ioctl", p, fl, cmd, 4096], "ENOTTY"))
        # setting the inode flags (immutable, append-only): the kernel
        # lets only the owner ask, and the daemon has no such request
        for cmd in (FS_IOC_SETFLAGS, FS_IOC_FSSETXATTR):
            table.append((["ioctl", p, fl, cmd, 4096], "ENOTTY", "EPERM"))
        if p != "{ctl}":
            for nr, size in PROTO:
                table.append(both(["ioctl", p, fl, _ioc(3, nr, size), size],
                                  "ENOTTY"))
    real = dict(PROTO)
    for nr, size in PROTO + [(0, 8), (10, 8), (255, 8)]:
        for d in (0, 1, 2, 3):
            for sz in sorted({0, 1, size - 1, size, size + 1, 2 * size,
                              16383}):
                if (d, sz) != (3, real.get(nr)):
                    table.append(both(["ioctl", "{ctl}", os.O_RDWR,
                                       _ioc(d, nr, sz), 16384], "ENOTTY"))
        # the request number with another type letter
        table.append(both(["ioctl", "{ctl}", os.O_RDWR,
                           _ioc(3, nr, size, ord("s")), 16384], "ENOTTY"))
    return table


@pytest.mark.parametrize("who", WHO)
def test_ioctls_with_wrong_numbers_sizes_and_nodes(shmfs, world, who):
    check_table(shmfs, world, who, ioctl_table())


def _payload(rng, size, steer_ids):
    b = bytearray(rng.getrandbits(8) for _ in range(size))
    if steer_ids and rng.random() < 0.5:
        b[0:4] = rng.choice(steer_ids).to_bytes(4, "little", signed=True)
    return b


@pytest.mark.parametrize("who", WHO)
def test_random_control_payloads_leave_the_table_consistent(shmfs, world, who):
    """Random bytes as every request of the protocol, half of them aimed at
    live shmids: each gets an answer, the daemon keeps serving, and its
    table stays consistent.  A stranger's requests change nothing of
    root's segments."""
    rng = random.Random(1234 if who == "root" else 4321)
    ids = world.shmids + [0, -1, (1 << 31) - 1]
    calls = []
    for _ in range(60):
        for nr, size in PROTO:
            b = _payload(rng, size, ids)
            if nr == 2:
                # shmget: keep keys away from the world's, sizes small or huge
                b[0:4] = rng.choice([0x7000 + rng.randrange(8), 0]).to_bytes(4, "little")
                if rng.random() < 0.7:
                    b[8:16] = rng.randrange(1, 1 << 16).to_bytes(8, "little")
            if nr in (3,) and rng.random() < 0.7:
                b[4:8] = rng.choice([0, 1, 2, 3, 11, 12, 13, 14, 15, 4, -1,
                                     (1 << 31) - 1]).to_bytes(4, "little",
                                                               signed=True)
            cmd = int.from_bytes(b[4:8], "little", signed=True)
            if nr == 3 and who == "root" and cmd in (0, 1, 11):
                # root's IPC_RMID, IPC_SET, SHM_LOCK really change the world
                b[0:4] = (-5).to_bytes(4, "little", signed=True)
            if nr in (5, 6) and rng.random() < 0.5:
                b[0:8] = rng.randrange(4).to_bytes(8, "little")
            calls.append(["ctl_raw", _ioc(3, nr, size), bytes(b).hex()])
    got = run_calls(shmfs, who, calls, world.paths)
    allowed = {"OK", "EINVAL", "EACCES", "EPERM", "ENOENT", "EEXIST",
               "ENOSPC", "ENOMEM", "ESRCH", "ENOTTY"}
    assert set(got) <= allowed, sorted(set(got) - allowed)
    assert "OK" in got and "EINVAL" in got
    m, c = shmfs, world.c
    assert m.alive()
    # the table agrees with itself
    info = c.shm_info()
    lines = sc.read_status(m.root).splitlines()[1:]
    assert len(lines) == info["used_ids"]
    total = 0
    for line in lines:
        d = sc.parse_status_line(line)
        st = c.stat(d["shmid"])
        assert st["nattch"] == 0 and st["segsz"] == d["segsz"]
        assert os.stat(m.id_path(d["shmid"])).st_size == d["segsz"]
        total += st["nattch"]
    stats = world.stats()
    assert stats["attaches"] == total == 0
    assert stats["shmids"] == info["used_ids"]
    # root's own segments: untouched by anyone's random requests (uid
    # 1000 owns "mine" and may well have removed or changed it)
    for s in world.shmids:
        if who == "root" or s != world.mshmid:
            assert c.stat(s) == world.before["stat"][s]
    with open(m.id_path(world.shmid), "rb") as f:
        assert f.read() == PATTERN
    new = c.shmget(0x600D, 4096, IPC_CREAT | IPC_EXCL | 0o600)
    c.rmid(new)


# -- the runner, as another user -----------------------------------------------

def main(argv):
    spec = json.loads(argv[1])
    json.dump([do_call(c, spec["paths"]) for c in spec["calls"]], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
