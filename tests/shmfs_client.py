#!/usr/bin/python3
"""A pure standard-library client of the shmfs wire protocol.

It speaks include/shmfs_proto.h directly so the tests need no C library:
ioctls on MNT/.ctl (the .ctl descriptors a process opened are its session;
a child forked without the fork protocol starts one with SHMFS_IOC_SESSION);
attach = open MNT/.id/<shmid> with O_NONBLOCK|O_NOFOLLOW, mmap it, close
the descriptor; detach = munmap, then SHMFS_IOC_DETACH.  Failures raise
OSError with the errno the daemon answered.

As a script it runs commands in one process and prints one line each
(the result as JSON, or "ERR <ERRNO-NAME>"), so a test can run it as
another user with setpriv:

    python3 tests/shmfs_client.py ROOT get 0x1234 4096 01600 -- stat @ -- pid

"@" stands for the shmid of the last successful get (or the last attach).
Exit status: 0 when every command succeeded, 1 otherwise, 2 on usage errors.
"""

import ctypes
import errno
import fcntl
import json
import os
import resource
import struct
import sys
import time

# Linux's SysV constants.
IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_EXCL = 0o2000
IPC_RMID = 0
IPC_SET = 1
IPC_STAT = 2
IPC_INFO = 3
SHM_LOCK = 11
SHM_UNLOCK = 12
SHM_STAT = 13
SHM_INFO = 14
SHM_STAT_ANY = 15
SHM_DEST = 0o1000
SHM_LOCKED = 0o2000

# From include/shmfs_proto.h.
PROTO_VERSION = 3
CTL_NAME = ".ctl"
ID_DIR = ".id"
STATUS_NAME = "status"
ATTACH_FLAGS = os.O_NONBLOCK | os.O_NOFOLLOW
ID_SHIFT = 15
MAX_SLOTS = 1 << ID_SHIFT

# Struct layouts, native byte order and alignment ('@'), field for field.
HELLO = struct.Struct("@IIiIII")  # version, page_size, daemon_pid, sid, gen, flags
GET = struct.Struct("@iiQii")
DS = struct.Struct("@iiIIIIIIQqqqiiQ")
DS_FIELDS = ("key", "shmid", "uid", "gid", "cuid", "cgid", "mode", "seq",
             "segsz", "atime", "dtime", "ctime", "cpid", "lpid", "nattch")
INFO = struct.Struct("@QQQQQ")
INFO_FIELDS = ("shmmax", "shmmin", "shmmni", "shmseg", "shmall")
SHM_INFO_S = struct.Struct("@iiQQQQQ")
SHM_INFO_FIELDS = ("used_ids", "pad", "shm_tot", "shm_rss", "shm_swp",
                   "swap_attempts", "swap_successes")
CTL_HEAD = struct.Struct("@iiiiQ")  # id, cmd, ret, pad, memlock
UNION_SIZE = max(DS.size, INFO.size, SHM_INFO_S.size)
CTL_SIZE = CTL_HEAD.size + UNION_SIZE
FORK = struct.Struct("@QII")
DETACH = struct.Struct("@ii")
ACCESS = struct.Struct("@ii")

assert (HELLO.size, GET.size, DS.size, INFO.size, SHM_INFO_S.size, CTL_SIZE,
        FORK.size, DETACH.size, ACCESS.size) == (24, 24, 80, 40, 48, 104, 16, 8, 8)

# The published table (.table): header, key buckets, one entry per slot.
TABLE_MAGIC = 0x53484D54
TABLE_VERSION = 2
TABLE_BUCKETS = 1 << 16
TABLE_SESSIONS = 1 << 16
TABLE_HOLDERS = 1 << 20
TABLE_HEAD = struct.Struct("@IIIIiIII")
TABLE_ENTRY_HEAD = struct.Struct("@IIII")  # seq, live, key_next, perm_gen
TABLE_ENTRY_TAIL = struct.Struct("@QQiI")  # base, base_stamp, base_lpid, holders
TABLE_ENTRY_SIZE = TABLE_ENTRY_HEAD.size + DS.size + TABLE_ENTRY_TAIL.size
TABLE_ENTRIES_OFF = TABLE_HEAD.size + 4 * TABLE_BUCKETS
TABLE_SESSION = struct.Struct("@Ii")  # gen, pid
TABLE_SESSIONS_OFF = TABLE_ENTRIES_OFF + MAX_SLOTS * TABLE_ENTRY_SIZE
TABLE_HOLDER = struct.Struct("@IIII")  # sid, gen, rec, next
TABLE_HOLDERS_OFF = TABLE_SESSIONS_OFF + TABLE_SESSIONS * TABLE_SESSION.size
TABLE_SIZE = TABLE_HOLDERS_OFF + TABLE_HOLDERS * TABLE_HOLDER.size


def _iowr(nr, size):
    return (3 << 30) | (size << 16) | (ord("S") << 8) | nr


IOC_HELLO = _iowr(1, HELLO.size)
IOC_GET = _iowr(2, GET.size)
IOC_CTL = _iowr(3, CTL_SIZE)
IOC_FORK = _iowr(4, FORK.size)
IOC_FORK_CHILD = _iowr(5, FORK.size)
IOC_FORK_ABORT = _iowr(6, FORK.size)
IOC_ACCESS = _iowr(7, ACCESS.size)
IOC_DETACH = _iowr(8, DETACH.size)
IOC_SESSION = _iowr(9, HELLO.size)

TABLE_NAME = ".table"
# The root's own nodes; .table (a symlink) is there only when the daemon
# publishes its table.
TALLY_DIR = ".tally"
TALLY_SIZE = 4096
TALLY_MAGIC = 0x53484D43
FIXED_NODES = {CTL_NAME, ID_DIR, STATUS_NAME, TALLY_DIR}
OPTIONAL_NODES = {TABLE_NAME}

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                       ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
PROT_READ, PROT_WRITE, MAP_SHARED = 1, 2, 1

# Everything of ours that holds a descriptor on a mount, so a test fixture
# can close what a failing test left open before it unmounts.
_open_objects = []


def close_all(root=None):
    """Detach/close every Client and Attachment (of one root, or all)."""
    # attachments first: their detach needs the session still open
    for obj in sorted(_open_objects, key=lambda o: isinstance(o, Client)):
        if root is None or obj.root == root:
            try:
                obj.close()
            except OSError:
                # a dead mount: the close's FLUSH fails (ENOTCONN), the
                # descriptor is gone all the same, and the teardown that
                # called this must still unmount
                if obj in _open_objects:
                    _open_objects.remove(obj)


def s32(v):
    """A key as the C int the kernel uses: 0xdeadbeef -> -559038737."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def key_name(key):
    """The key directory name: 0x%08x of the key as unsigned."""
    return "0x%08x" % (key & 0xFFFFFFFF)


_ERRNO_NAMES = dict(errno.errorcode)
_ERRNO_NAMES.update({errno.EOPNOTSUPP: "ENOTSUP", errno.EAGAIN: "EAGAIN",
                     errno.EDEADLK: "EDEADLK"})


def errno_name(e):
    """errno number -> name, with one fixed name for aliases (ENOTSUP)."""
    return _ERRNO_NAMES.get(e, str(e))


def slot_of(shmid):
    return shmid & (MAX_SLOTS - 1)


def seq_of(shmid):
    return shmid >> ID_SHIFT


def catch(fn, *args, **kw):
    """fn(*args) -> errno name of the OSError it raised, or None."""
    try:
        fn(*args, **kw)
    except OSError as e:
        return errno_name(e.errno)
    return None


def key_dirs(root):
    """The key directories in the root, without the fixed nodes."""
    return sorted(n for n in os.listdir(root)
                  if n not in FIXED_NODES and n not in OPTIONAL_NODES)


def wait_gone(path, timeout=2.0):
    """Poll until stat(path) fails; return the errno name (None if it
    never went).  For names whose removal the kernel learns of
    asynchronously (a release after close, a dentry invalidation)."""
    deadline = time.monotonic() + timeout
    while True:
        e = catch(os.stat, path)
        if e is not None or time.monotonic() > deadline:
            return e
        time.sleep(0.005)


def memlock_limit():
    """RLIMIT_MEMLOCK soft limit in bytes; UINT64_MAX for unlimited."""
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    return (1 << 64) - 1 if soft == resource.RLIM_INFINITY else soft


def _ioctl(fd, req, buf):
    fcntl.ioctl(fd, req, buf, True)
    return buf


class Client:
    """One open descriptor on ROOT/.ctl (O_CLOEXEC), as libshmfs keeps.
    A process's session lasts while it has any of these open; closing the
    last one detaches whatever the process still has attached."""

    def __init__(self, root):
        self.root = root
        self.fd = os.open(os.path.join(root, CTL_NAME), os.O_RDWR | os.O_CLOEXEC)
        _open_objects.append(self)

    def close(self):
        """End of (this descriptor's part of) the session.  Mappings of
        attachments made through it are left alone."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
        if self in _open_objects:
            _open_objects.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- requests ---------------------------------------------------------

    def hello(self):
        buf = _ioctl(self.fd, IOC_HELLO, bytearray(HELLO.size))
        version, page_size, daemon_pid, sid, gen, _ = HELLO.unpack(buf)
        return {"version": version, "page_size": page_size,
                "daemon_pid": daemon_pid, "sid": sid, "gen": gen}

    def session(self):
        """SHMFS_IOC_SESSION: start a session on an inherited descriptor
        (a child forked without the fork protocol)."""
        buf = _ioctl(self.fd, IOC_SESSION, bytearray(HELLO.size))
        version, page_size, daemon_pid, sid, gen, _ = HELLO.unpack(buf)
        return {"version": version, "page_size": page_size,
                "daemon_pid": daemon_pid, "sid": sid, "gen": gen}

    def shmget(self, key, size, flags=0):
        buf = bytearray(GET.pack(s32(key), s32(flags), size, -1, 0))
        _ioctl(self.fd, IOC_GET, buf)
        return GET.unpack(buf)[3]

    def ctl(self, id, cmd, uid=0, gid=0, mode=0, memlock=None):
        """Raw shmctl: returns (ret, the reply union's bytes).  memlock is
        the caller's RLIMIT_MEMLOCK soft limit (SHM_LOCK), ours by default."""
        if memlock is None:
            memlock = memlock_limit()
        ds = DS.pack(0, 0, uid, gid, 0, 0, mode, 0, 0, 0, 0, 0, 0, 0, 0)
        buf = bytearray(CTL_HEAD.pack(id, cmd, -1, 0, memlock) + ds +
                        bytes(UNION_SIZE - DS.size))
        _ioctl(self.fd, IOC_CTL, buf)
        ret = CTL_HEAD.unpack_from(buf)[2]
        return ret, bytes(buf[CTL_HEAD.size:])

    def _ds(self, id, cmd):
        ret, u = self.ctl(id, cmd)
        d = dict(zip(DS_FIELDS, DS.unpack_from(u)))
        d["ret"] = ret
        return d

    def stat(self, shmid):
        """IPC_STAT -> dict of the shmid_ds fields (and 'ret')."""
        return self._ds(shmid, IPC_STAT)

    def shm_stat(self, index, any=False):
        """SHM_STAT / SHM_STAT_ANY of a slot index; 'ret' is the shmid."""
        return self._ds(index, SHM_STAT_ANY if any else SHM_STAT)

    def set(self, shmid, uid, gid, mode):
        """IPC_SET of uid, gid and mode."""
        return self.ctl(shmid, IPC_SET, uid=uid, gid=gid, mode=mode)[0]

    def rmid(self, shmid):
        return self.ctl(shmid, IPC_RMID)[0]

    def info(self):
        """IPC_INFO -> dict of the limits; 'ret' is the highest used index."""
        ret, u = self.ctl(0, IPC_INFO)
        d = dict(zip(INFO_FIELDS, INFO.unpack_from(u)))
        d["ret"] = ret
        return d

    def shm_info(self):
        """SHM_INFO -> dict; 'ret' is the highest used index."""
        ret, u = self.ctl(0, SHM_INFO)
        d = dict(zip(SHM_INFO_FIELDS, SHM_INFO_S.unpack_from(u)))
        del d["pad"]
        d["ret"] = ret
        return d

    def lock(self, shmid, memlock=None, claim=None):
        """SHM_LOCK with our RLIMIT_MEMLOCK soft limit set to memlock
        bytes for the call (it must fit under the hard limit), as the
        kernel and the daemon read it; claim is what the request's
        memlock field says, which the daemon must ignore (ours by
        default)."""
        if memlock is None:
            return self.ctl(shmid, SHM_LOCK, memlock=claim)[0]
        old = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (memlock, old[1]))
        try:
            return self.ctl(shmid, SHM_LOCK, memlock=claim)[0]
        finally:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, old)

    def unlock(self, shmid):
        return self.ctl(shmid, SHM_UNLOCK)[0]

    def detach_id(self, shmid):
        """SHMFS_IOC_DETACH: one attach of shmid by this process ends."""
        _ioctl(self.fd, IOC_DETACH, bytearray(DETACH.pack(shmid, 0)))
        return 0

    def detach_tally(self, shmid):
        """SHMFS_IOC_DETACH with SHMFS_DETACH_TALLY: this process took one
        attach of shmid from its record itself (the daemon settles)."""
        _ioctl(self.fd, IOC_DETACH, bytearray(DETACH.pack(shmid, 1)))
        return 0

    def access(self, shmid, mask):
        """SysV permission check of mask (4 r, 2 w, 1 x); raises EACCES."""
        _ioctl(self.fd, IOC_ACCESS, bytearray(ACCESS.pack(shmid, mask)))
        return 0

    def fork_prepare(self):
        """SHMFS_IOC_FORK -> (token, count)."""
        buf = _ioctl(self.fd, IOC_FORK, bytearray(FORK.size))
        token, count, _ = FORK.unpack(buf)
        return token, count

    def fork_child(self, token):
        _ioctl(self.fd, IOC_FORK_CHILD, bytearray(FORK.pack(token, 0, 0)))

    def fork_abort(self, token):
        _ioctl(self.fd, IOC_FORK_ABORT, bytearray(FORK.pack(token, 0, 0)))

    def attach(self, shmid, rdonly=False, path=None):
        """shmat: returns an Attachment (its mapping and this session)."""
        return Attachment(self, shmid, rdonly=rdonly, path=path)


def id_path(root, shmid):
    return os.path.join(root, ID_DIR, str(shmid))


def seg_path(root, key, shmid):
    return os.path.join(root, key_name(key), str(shmid))


class Attachment:
    """shmat through a Client's session: open .id/<shmid> with the attach
    flags, mmap MAP_SHARED, close the descriptor.  detach() = munmap, then
    SHMFS_IOC_DETACH on the session's descriptor.

    The mapping is made with libc mmap through ctypes (Python's mmap module
    would keep a dup of the descriptor open).  No descriptor stays open:
    tests that need one open the file themselves.
    """

    def __init__(self, client, shmid, rdonly=False, path=None):
        self.client = client
        self.root = client.root
        self.shmid = shmid
        self.rdonly = rdonly
        self.addr = None
        flags = (os.O_RDONLY if rdonly else os.O_RDWR) | ATTACH_FLAGS
        fd = os.open(path or id_path(self.root, shmid), flags)
        try:
            self.size = os.fstat(fd).st_size
            self.maplen = max(PAGE_SIZE, -(-self.size // PAGE_SIZE) * PAGE_SIZE)
            prot = PROT_READ | (0 if rdonly else PROT_WRITE)
            addr = _libc.mmap(None, self.maplen, prot, MAP_SHARED, fd, 0)
            if addr in (None, _MAP_FAILED):
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
            self.addr = addr
        except BaseException:
            os.close(fd)
            # the daemon counted the open as an attach; undo it as shmat would
            try:
                client.detach_id(shmid)
            except OSError:
                pass
            raise
        os.close(fd)
        _open_objects.append(self)

    def read(self, off=0, n=None):
        if n is None:
            n = self.size - off
        assert 0 <= off and off + n <= self.maplen
        return ctypes.string_at(self.addr + off, n)

    def write(self, off, data):
        assert not self.rdonly and 0 <= off and off + len(data) <= self.maplen
        ctypes.memmove(self.addr + off, bytes(data), len(data))

    def unmap(self):
        if self.addr is not None:
            addr, self.addr = self.addr, None
            if _libc.munmap(addr, self.maplen) != 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
        if self in _open_objects:
            _open_objects.remove(self)

    def detach(self):
        """shmdt: munmap, then tell the daemon (synchronously)."""
        if self.addr is None:
            return
        self.unmap()
        if self.client.fd is not None:
            self.client.detach_id(self.shmid)

    def close(self):
        """Cleanup for fixtures: detach, ignoring a session already gone."""
        try:
            self.detach()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.detach()


def attach(root, shmid, rdonly=False, path=None):
    """Attach with a session of its own (a new .ctl descriptor), as a
    process that uses nothing else would; the Attachment's detach()
    leaves the session open (close it with a.client.close())."""
    c = Client(root)
    try:
        return Attachment(c, shmid, rdonly=rdonly, path=path)
    except BaseException:
        c.close()
        raise


# -- the published table (.table) ---------------------------------------------

def table_bucket(key):
    return (((key & 0xFFFFFFFF) * 2654435761) & 0xFFFFFFFF) >> 16 & (TABLE_BUCKETS - 1)


class Table:
    """A reader of the published table file (outside the mount)."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def close(self):
        os.close(self.fd)

    def header(self):
        vals = TABLE_HEAD.unpack(os.pread(self.fd, TABLE_HEAD.size, 0))
        return dict(zip(("magic", "version", "page_size", "max_slots",
                         "daemon_pid", "key_seq", "shmseg", "alive"),
                        vals))

    def bucket(self, key):
        off = TABLE_HEAD.size + 4 * table_bucket(key)
        return struct.unpack("@I", os.pread(self.fd, 4, off))[0]

    def entry(self, slot, tries=1000):
        """One entry read under its seqlock -> dict (seq, live, key_next,
        perm_gen, ds, base, base_stamp, base_lpid, holders)."""
        off = TABLE_ENTRIES_OFF + slot * TABLE_ENTRY_SIZE
        def seq_now():
            return TABLE_ENTRY_HEAD.unpack_from(
                os.pread(self.fd, TABLE_ENTRY_HEAD.size, off))[0]

        for _ in range(tries):
            # seq before and after, each a read of its own: one read of
            # the whole entry may copy its end before its start
            first = seq_now()
            raw = os.pread(self.fd, TABLE_ENTRY_SIZE, off)
            seq, live, key_next, perm_gen = TABLE_ENTRY_HEAD.unpack_from(raw)
            again = seq_now()
            if seq % 2 == 0 and first == seq and again == seq:
                ds = dict(zip(DS_FIELDS, DS.unpack_from(raw, TABLE_ENTRY_HEAD.size)))
                tail = TABLE_ENTRY_TAIL.unpack_from(
                    raw, TABLE_ENTRY_HEAD.size + DS.size)
                return dict({"seq": seq, "live": live, "key_next": key_next,
                             "perm_gen": perm_gen, "ds": ds},
                            **dict(zip(("base", "base_stamp", "base_lpid",
                                        "holders"), tail)))
        raise RuntimeError("table entry %d never stable" % slot)

    def session(self, sid):
        """sessions[sid] -> (gen, pid); (0, 0) for none."""
        off = TABLE_SESSIONS_OFF + sid * TABLE_SESSION.size
        return TABLE_SESSION.unpack(os.pread(self.fd, TABLE_SESSION.size, off))

    def holder(self, idx):
        """holders[idx] -> (sid, gen, rec, next)."""
        off = TABLE_HOLDERS_OFF + idx * TABLE_HOLDER.size
        return TABLE_HOLDER.unpack(os.pread(self.fd, TABLE_HOLDER.size, off))

    def chain(self, key):
        """Slots on the key's chain, in order."""
        out, nxt = [], self.bucket(key)
        while nxt and len(out) < MAX_SLOTS:
            out.append(nxt - 1)
            nxt = self.entry(nxt - 1)["key_next"]
        return out


# -- the status file and the kernel's own format ----------------------------

# /proc/sysvipc/shm, ipc/shm.c sysvipc_shm_proc_show() on 64-bit.
STATUS_HEADER = ("       key      shmid perms                  size  cpid  lpid"
                 " nattch   uid   gid  cuid  cgid      atime      dtime      ctime"
                 "                   rss                  swap\n")
STATUS_FORMAT = ("{:10d} {:10d}  {:4o} {:21d} {:5d} {:5d}  {:5d} {:5d} {:5d}"
                 " {:5d} {:5d} {:10d} {:10d} {:10d} {:21d} {:21d}\n")
STATUS_FIELDS = ("key", "shmid", "mode", "segsz", "cpid", "lpid", "nattch",
                 "uid", "gid", "cuid", "cgid", "atime", "dtime", "ctime",
                 "rss", "swap")


def parse_status_line(line):
    f = line.split()
    if len(f) != len(STATUS_FIELDS):
        raise ValueError("status line has %d fields: %r" % (len(f), line))
    vals = [int(x, 8) if name == "mode" else int(x)
            for name, x in zip(STATUS_FIELDS, f)]
    return dict(zip(STATUS_FIELDS, vals))


def format_status_line(d):
    return STATUS_FORMAT.format(*(d[n] for n in STATUS_FIELDS))


def read_status(root):
    with open(os.path.join(root, STATUS_NAME), "rb") as f:
        return f.read().decode()


# -- script ------------------------------------------------------------------

def _num(s):
    return int(s, 0)


def _mode(s):
    return int(s, 8)


def _usage():
    sys.stderr.write(
        "usage: shmfs_client.py ROOT CMD [ARGS] [-- CMD [ARGS]]...\n"
        "  hello | pid | info | shm_info | sleep SECONDS | wait (a line on stdin)\n"
        "  get KEY SIZE FLAGS(octal)   stat ID   shm_stat IDX   shm_stat_any IDX\n"
        "  set ID UID GID MODE(octal)  rmid ID   lock ID [MEMLOCK [CLAIM]] unlock ID\n"
        "  access ID MASK   attach ID [ro|rw]   detach   detach_id ID\n"
        "  read OFF LEN (from the last attach, hex)   write OFF HEXDATA\n"
        "  fstat PATH   open PATH r|w|rw   chmod PATH MODE   chown PATH UID GID\n"
        "  unlink PATH   faccess PATH MASK   getxattr PATH NAME\n"
        "ID may be @ for the last shmid got or attached.\n")
    sys.exit(2)


def _run_one(ctx, cmd, args):
    cl = ctx["client"]

    def ident(s):
        return ctx["last"] if s == "@" else _num(s)

    def need(n):
        if len(args) < n:
            raise ValueError("%s needs %d arguments" % (cmd, n))

    if cmd == "pid":
        return os.getpid()
    if cmd == "sleep":
        need(1)
        time.sleep(float(args[0]))
        return 0
    if cmd == "wait":
        sys.stdout.flush()
        sys.stdin.readline()
        return 0
    if cmd == "hello":
        return cl.hello()
    if cmd == "get":
        need(3)
        ctx["last"] = cl.shmget(_num(args[0]), _num(args[1]), _mode(args[2]))
        return ctx["last"]
    if cmd == "stat":
        need(1)
        return cl.stat(ident(args[0]))
    if cmd in ("shm_stat", "shm_stat_any"):
        need(1)
        return cl.shm_stat(_num(args[0]), any=cmd == "shm_stat_any")
    if cmd == "set":
        need(4)
        return cl.set(ident(args[0]), _num(args[1]), _num(args[2]),
                      _mode(args[3]))
    if cmd == "rmid":
        need(1)
        return cl.rmid(ident(args[0]))
    if cmd == "info":
        return cl.info()
    if cmd == "shm_info":
        return cl.shm_info()
    if cmd == "lock":
        need(1)
        return cl.lock(ident(args[0]),
                       memlock=_num(args[1]) if len(args) > 1 else None,
                       claim=_num(args[2]) if len(args) > 2 else None)
    if cmd == "unlock":
        need(1)
        return cl.unlock(ident(args[0]))
    if cmd == "access":
        need(2)
        return cl.access(ident(args[0]), _num(args[1]))
    if cmd == "attach":
        need(1)
        shmid = ident(args[0])
        a = cl.attach(shmid, rdonly="ro" in args[1:])
        ctx["attaches"].append(a)
        ctx["last"] = shmid
        return {"shmid": shmid, "size": a.size}
    if cmd == "detach_id":
        need(1)
        return cl.detach_id(ident(args[0]))
    if cmd == "detach":
        ctx["attaches"].pop().detach()
        return 0
    if cmd == "read":
        need(2)
        return ctx["attaches"][-1].read(_num(args[0]), _num(args[1])).hex()
    if cmd == "write":
        need(2)
        ctx["attaches"][-1].write(_num(args[0]), bytes.fromhex(args[1]))
        return 0
    if cmd == "fstat":
        need(1)
        st = os.stat(args[0])
        return {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid,
                "size": st.st_size, "ino": st.st_ino, "nlink": st.st_nlink}
    if cmd == "open":
        need(2)
        fl = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}[args[1]]
        os.close(os.open(args[0], fl))
        return 0
    if cmd == "chmod":
        need(2)
        os.chmod(args[0], _mode(args[1]))
        return 0
    if cmd == "chown":
        need(3)
        os.chown(args[0], _num(args[1]), _num(args[2]))
        return 0
    if cmd == "unlink":
        need(1)
        os.unlink(args[0])
        return 0
    if cmd == "faccess":
        need(2)
        return os.access(args[0], _num(args[1]))
    if cmd == "getxattr":
        need(2)
        return os.getxattr(args[0], args[1]).decode()
    raise ValueError("unknown command %r" % cmd)


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        _usage()
    root = argv[1]
    cmds, cur = [], []
    for a in argv[2:]:
        if a == "--":
            if cur:
                cmds.append(cur)
            cur = []
        else:
            cur.append(a)
    if cur:
        cmds.append(cur)
    if not cmds:
        _usage()
    ctx = {"client": None, "last": None, "attaches": []}
    status = 0
    for cmd in cmds:
        try:
            if ctx["client"] is None and cmd[0] not in ("pid", "sleep", "wait"):
                ctx["client"] = Client(root)
            out = json.dumps(_run_one(ctx, cmd[0], cmd[1:]))
        except OSError as e:
            out = "ERR " + errno_name(e.errno)
            status = 1
        except ValueError as e:
            sys.stderr.write("shmfs_client: %s\n" % e)
            sys.exit(2)
        print(out, flush=True)
    for a in reversed(ctx["attaches"]):
        a.detach()
    if ctx["client"] is not None:
        ctx["client"].close()
    return status


class Errno(str):
    """An errno name as a script result, e.g. Errno('EACCES') == 'EACCES'."""


def parse_output(text):
    """The script's stdout -> list of results (JSON values or Errno)."""
    res = []
    for line in text.splitlines():
        if line.startswith("ERR "):
            res.append(Errno(line[4:]))
        else:
            res.append(json.loads(line))
    return res


def script_path():
    """This file, or the world-readable copy conftest made of it for
    programs run as another user (env SHMFS_CLIENT)."""
    return os.environ.get("SHMFS_CLIENT") or os.path.abspath(__file__)


def script_argv(root, *cmds):
    """argv to run this file as a script; cmds are lists of words."""
    argv = [sys.executable, script_path(), root]
    for i, c in enumerate(cmds):
        if i:
            argv.append("--")
        argv.extend(str(w) for w in c)
    return argv


if __name__ == "__main__":
    sys.exit(main(sys.argv))
