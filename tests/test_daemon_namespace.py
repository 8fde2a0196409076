"""The namespace, stat of every node, ls -l / stat / getfattr output, xattrs,
and the status file against the kernel's own /proc/sysvipc/shm."""

import ctypes
import os
import re
import stat
import subprocess
import time

import pytest

import shmfs_client as sc
from shmfs_client import IPC_CREAT, IPC_PRIVATE, catch
from conftest import sysv_now

KEY = 0x162E
XATTRS = ["user.shm.atime", "user.shm.cgid", "user.shm.cpid", "user.shm.ctime",
          "user.shm.cuid", "user.shm.dtime", "user.shm.key", "user.shm.lpid",
          "user.shm.mode", "user.shm.nattch", "user.shm.pids", "user.shm.segsz",
          "user.shm.shmid"]


def expected_xattrs(st, pids=""):
    return {
        "user.shm.pids": pids,
        "user.shm.key": sc.key_name(st["key"]),
        "user.shm.shmid": str(st["shmid"]),
        "user.shm.segsz": str(st["segsz"]),
        "user.shm.cpid": str(st["cpid"]),
        "user.shm.lpid": str(st["lpid"]),
        "user.shm.nattch": str(st["nattch"]),
        "user.shm.cuid": str(st["cuid"]),
        "user.shm.cgid": str(st["cgid"]),
        "user.shm.atime": str(st["atime"]),
        "user.shm.dtime": str(st["dtime"]),
        "user.shm.ctime": str(st["ctime"]),
        "user.shm.mode": "0%o" % st["mode"],
    }


# -- the fixed nodes ---------------------------------------------------------

def test_empty_root_lists_only_fixed_nodes(shmfs):
    names = set(os.listdir(shmfs.root))
    assert names - sc.OPTIONAL_NODES == sc.FIXED_NODES
    assert os.listdir(shmfs.path(".id")) == []
    assert not os.path.exists(shmfs.path(".table")) or \
        os.path.islink(shmfs.path(".table"))


def test_root_is_dir_0755_root_owned(shmfs):
    st = os.stat(shmfs.root)
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_ctl_node_is_regular_0666_size_0(shmfs):
    st = os.stat(shmfs.path(".ctl"))
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o666
    assert st.st_size == 0
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_id_dir_is_0755(shmfs):
    st = os.stat(shmfs.path(".id"))
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o755


def test_status_is_regular_0444_size_0(shmfs):
    st = os.stat(shmfs.path("status"))
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o444
    assert st.st_size == 0


def test_status_cannot_be_opened_for_writing(shmfs):
    assert catch(os.open, shmfs.path("status"), os.O_WRONLY) in ("EACCES", "EPERM", "EROFS")


def test_unknown_names_are_enoent(shmfs, client):
    client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    for p in ["nosuch", "0x00000001", "0x0000162e/12345", ".id/12345",
              ".id/nosuch", "0x0000162e/nosuch", "0x162e", ".ctl/x"]:
        assert catch(os.stat, shmfs.path(p)) in ("ENOENT", "ENOTDIR"), p
    assert catch(os.stat, shmfs.path("nosuch")) == "ENOENT"
    assert catch(os.stat, shmfs.path(".id/12345")) == "ENOENT"


# -- key directories and segment files ---------------------------------------

def test_key_dir_exists_while_it_holds_a_segment(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    d = shmfs.path("0x0000162e")
    st = os.stat(d)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert os.listdir(d) == [str(shmid)]
    assert "0x0000162e" in os.listdir(shmfs.root)
    assert os.listdir(shmfs.path(".id")) == [str(shmid)]
    client.rmid(shmid)
    assert not os.path.exists(d)
    assert "0x0000162e" not in os.listdir(shmfs.root)
    assert os.listdir(shmfs.path(".id")) == []


def test_segment_file_stat_maps_shmid_ds(shmfs, client):
    shmid = client.shmget(KEY, 4097, IPC_CREAT | 0o640)
    client.set(shmid, 1000, 1001, 0o640)
    st = os.stat(shmfs.seg_path(KEY, shmid))
    ds = client.stat(shmid)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (1000, 1001)
    assert st.st_size == 4097
    assert st.st_ino == shmid
    assert st.st_nlink == 1
    # atime and dtime are 0 until set: the file shows the creation there
    assert ds["atime"] == 0 and ds["dtime"] == 0
    assert int(st.st_ctime) == ds["ctime"]
    assert st.st_atime == st.st_mtime == st.st_ctime


def test_new_segment_lists_with_the_time_it_was_made(shmfs, client):
    """ls -l of a segment made a second ago does not say Jan 1 1970 (the
    xattrs keep the SysV zeros)."""
    before = sysv_now()
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    p = shmfs.seg_path(KEY, shmid)
    st = os.stat(p)
    assert before <= st.st_mtime <= sysv_now()
    assert before <= st.st_atime <= sysv_now()
    assert os.getxattr(p, "user.shm.atime") == b"0"
    assert os.getxattr(p, "user.shm.dtime") == b"0"
    r = subprocess.run(["ls", "-l", "--time-style=+%Y", p],
                       capture_output=True, text=True, check=True)
    assert " %s " % time.strftime("%Y") in r.stdout, r.stdout


def test_segment_file_times_follow_attach_and_detach(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    p = shmfs.seg_path(KEY, shmid)
    a = client.attach(shmid)
    st = os.stat(p)
    ds = client.stat(shmid)
    assert ds["atime"] > 0 and st.st_atime == ds["atime"]
    assert ds["dtime"] == 0 and st.st_mtime == ds["ctime"]
    a.detach()
    st = os.stat(p)
    ds = client.stat(shmid)
    assert ds["dtime"] > 0 and st.st_mtime == ds["dtime"]
    assert st.st_ctime == ds["ctime"]
    assert st.st_atime_ns % 1000000000 == 0  # whole seconds


def test_id_index_is_the_same_inode_as_the_segment_file(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    a = os.stat(shmfs.seg_path(KEY, shmid))
    b = os.stat(shmfs.id_path(shmid))
    assert (a.st_ino, a.st_dev, a.st_size, a.st_mode) == \
        (b.st_ino, b.st_dev, b.st_size, b.st_mode)


def test_id_index_lists_every_live_shmid(shmfs, client):
    ids = {client.shmget(IPC_PRIVATE, 4096, 0o600) for _ in range(3)}
    ids.add(client.shmget(KEY, 4096, IPC_CREAT | 0o600))
    assert set(os.listdir(shmfs.path(".id"))) == {str(i) for i in ids}
    assert sc.key_dirs(shmfs.root) == ["0x00000000", "0x0000162e"]


def test_stat_stays_fresh_without_cache(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    p = shmfs.seg_path(KEY, shmid)
    os.stat(p)
    client.set(shmid, 7, 8, 0o604)  # behind the kernel's back
    st = os.stat(p)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (7, 8, 0o604)
    with client.attach(shmid):
        assert os.getxattr(p, "user.shm.nattch") == b"1"
    assert os.getxattr(p, "user.shm.nattch") == b"0"


# -- tools' output ----------------------------------------------------------

def test_ls_l_shows_mode_owner_size_and_name(shmfs, client):
    shmid = client.shmget(KEY, 4097, IPC_CREAT | 0o640)
    client.set(shmid, 1000, 1000, 0o640)
    out = subprocess.run(["ls", "-ln", "--time-style=+%s", shmfs.path("0x0000162e")],
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("total")
    f = lines[1].split()
    ctime = client.stat(shmid)["ctime"]
    assert f[0] == "-rw-r-----"
    # never detached: the modification time shows the creation (ctime)
    assert f[1:7] == ["1", "1000", "1000", "4097", str(ctime), str(shmid)]
    out = subprocess.run(["ls", "-l", "--time-style=+%s", "-c", shmfs.path("0x0000162e")],
                         capture_output=True, text=True, check=True).stdout
    f = out.splitlines()[1].split()
    assert f[5] == str(ctime)
    out = subprocess.run(["ls", "-i", shmfs.path("0x0000162e")],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(shmid), str(shmid)]


def test_ls_la_root_shows_fixed_nodes(shmfs, client):
    client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    out = subprocess.run(["ls", "-la", shmfs.root], capture_output=True,
                         text=True, check=True).stdout
    rows = {l.split()[-1]: l.split() for l in out.splitlines()[1:]}
    assert rows[".ctl"][0] == "-rw-rw-rw-" and rows[".ctl"][4] == "0"
    assert rows["status"][0] == "-r--r--r--"
    assert rows[".id"][0] == "drwxr-xr-x"
    assert rows["0x0000162e"][0] == "drwxr-xr-x"
    assert rows["0x0000162e"][2:4] == ["root", "root"]


def test_stat_tool_output(shmfs, client):
    shmid = client.shmget(KEY, 10, IPC_CREAT | 0o604)
    with client.attach(shmid):
        pass
    ds = client.stat(shmid)
    out = subprocess.run(["stat", "-c", "%F|%a|%u|%g|%s|%i|%h|%X|%Y|%Z",
                          shmfs.seg_path(KEY, shmid)],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().split("|") == [
        "regular file", "604", "0", "0", "10", str(shmid), "1",
        str(ds["atime"]), str(ds["dtime"]), str(ds["ctime"])]


def test_getfattr_dump_shows_every_shmid_ds_field(shmfs, client):
    shmid = client.shmget(KEY, 4097, IPC_CREAT | 0o640)
    with client.attach(shmid):
        pass
    a = client.attach(shmid)
    ds = client.stat(shmid)
    p = shmfs.seg_path(KEY, shmid)
    r = subprocess.run(["getfattr", "-d", "-m", "-", "--absolute-names", p],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "# file: " + p
    got = {}
    for line in lines[1:]:
        m = re.fullmatch(r'([^=]+)="(.*)"', line)
        assert m, line
        got[m.group(1)] = m.group(2)
    assert got == expected_xattrs(ds, "%d:1" % os.getpid())
    assert got["user.shm.nattch"] == "1"
    assert got["user.shm.lpid"] == str(os.getpid())
    assert got["user.shm.key"] == "0x0000162e"
    assert got["user.shm.mode"] == "0640"
    a.detach()


def test_listxattr_names_exactly_the_fields(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    assert sorted(os.listxattr(shmfs.seg_path(KEY, shmid))) == XATTRS
    for name in XATTRS:
        v = os.getxattr(shmfs.id_path(shmid), name)
        assert v or name == "user.shm.pids", name    # nobody is attached
        assert not v.endswith(b"\n") and not v.endswith(b"\0"), (name, v)


def test_getxattr_unknown_name_is_enodata(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    p = shmfs.seg_path(KEY, shmid)
    assert catch(os.getxattr, p, "user.shm.nosuch") == "ENODATA"
    assert catch(os.getxattr, p, "user.other") == "ENODATA"


def test_xattr_mode_shows_shm_dest_after_rmid(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    a = client.attach(shmid)
    client.rmid(shmid)
    fd = os.open(shmfs.id_path(shmid), os.O_RDONLY)
    try:
        assert os.getxattr(fd, "user.shm.mode") == b"01600"
        assert os.getxattr(fd, "user.shm.key") == b"0x00000000"
    finally:
        os.close(fd)
    assert os.getxattr(shmfs.id_path(shmid), "user.shm.nattch") == b"1"
    a.detach()


def test_xattr_of_negative_key_is_unsigned_hex(shmfs, client):
    shmid = client.shmget(0xCAFEF00D, 4096, IPC_CREAT | 0o600)
    assert os.getxattr(shmfs.id_path(shmid), "user.shm.key") == b"0xcafef00d"


# -- the status file ----------------------------------------------------------

def kernel_status_line(size, mode, attach_and_rmid=False):
    """Make a segment in the kernel itself, return its /proc/sysvipc/shm line."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    libc.shmdt.argtypes = [ctypes.c_void_p]
    shmid = libc.shmget(IPC_PRIVATE, ctypes.c_size_t(size), IPC_CREAT | mode)
    if shmid < 0:
        pytest.skip("kernel shmget failed: errno %d" % ctypes.get_errno())
    addr = None
    try:
        if attach_and_rmid:
            addr = libc.shmat(shmid, None, 0)
            assert addr not in (None, ctypes.c_void_p(-1).value)
            libc.shmctl(shmid, 0, None)
        with open("/proc/sysvipc/shm") as f:
            lines = f.readlines()
    finally:
        if addr is not None:
            libc.shmdt(addr)
        libc.shmctl(shmid, 0, None)
    header = lines[0]
    for line in lines[1:]:
        if line.split()[1] == str(shmid):
            return header, line
    pytest.fail("kernel segment %d not in /proc/sysvipc/shm" % shmid)


def column_ends(line):
    return [m.end() for m in re.finditer(r"\S+", line)]


def test_status_header_equals_kernel_header(shmfs):
    header, _ = kernel_status_line(4096, 0o600)
    text = sc.read_status(shmfs.root)
    assert text == header
    assert header == sc.STATUS_HEADER


def test_status_line_has_kernel_columns_and_widths(shmfs, client):
    header, kline = kernel_status_line(4097, 0o600)
    # our model of the kernel's format reproduces the kernel's own line
    assert sc.format_status_line(sc.parse_status_line(kline)) == kline
    shmid = client.shmget(KEY, 4097, IPC_CREAT | 0o600)
    lines = sc.read_status(shmfs.root).splitlines(True)
    assert lines[0] == header
    assert len(lines) == 2
    line = lines[1]
    assert line.endswith("\n")
    d = sc.parse_status_line(line)
    assert sc.format_status_line(d) == line
    assert len(line) == len(kline)
    assert column_ends(line) == column_ends(kline)
    ds = client.stat(shmid)
    for f in sc.STATUS_FIELDS:
        if f not in ("rss", "swap"):
            assert d[f] == ds[f], f
    assert d["swap"] == 0


def test_status_line_of_removed_attached_segment_matches_kernel(shmfs, client):
    _, kline = kernel_status_line(8192, 0o600, attach_and_rmid=True)
    k = sc.parse_status_line(kline)
    assert (k["key"], k["mode"], k["nattch"]) == (0, 0o1600, 1)
    shmid = client.shmget(KEY, 8192, IPC_CREAT | 0o600)
    a = client.attach(shmid)
    client.rmid(shmid)
    lines = sc.read_status(shmfs.root).splitlines(True)
    assert len(lines) == 2, "removed-but-attached segment must be listed"
    d = sc.parse_status_line(lines[1])
    assert sc.format_status_line(d) == lines[1]
    assert (d["key"], d["shmid"], d["mode"], d["nattch"]) == (0, shmid, 0o1600, 1)
    assert d["lpid"] == os.getpid() and d["cpid"] == os.getpid()
    assert d["atime"] > 0
    assert column_ends(lines[1]) == column_ends(kline)
    a.detach()
    assert sc.read_status(shmfs.root) == sc.STATUS_HEADER


def test_status_lists_segments_in_slot_order_with_their_fields(shmfs, client):
    ids = [client.shmget(IPC_PRIVATE, 100 * (i + 1), 0o600) for i in range(4)]
    ids.append(client.shmget(sc.s32(0xDEADBEEF), 77, IPC_CREAT | 0o644))
    client.rmid(ids[1])  # a hole
    ids.pop(1)
    client.set(ids[0], 1000, 1001, 0o660)
    lines = sc.read_status(shmfs.root).splitlines(True)
    assert lines[0] == sc.STATUS_HEADER
    rows = [sc.parse_status_line(l) for l in lines[1:]]
    assert [sc.format_status_line(r) for r in rows] == lines[1:]
    assert sorted(r["shmid"] for r in rows) == sorted(ids)
    slots = [sc.slot_of(r["shmid"]) for r in rows]
    assert slots == sorted(slots)
    for r in rows:
        ds = client.stat(r["shmid"])
        for f in sc.STATUS_FIELDS:
            if f not in ("rss", "swap"):
                assert r[f] == ds[f], (f, r, ds)
    neg = [r for r in rows if r["key"] == sc.s32(0xDEADBEEF)]
    assert len(neg) == 1 and neg[0]["segsz"] == 77
    assert any(r["uid"] == 1000 and r["gid"] == 1001 for r in rows)


def test_status_readable_by_any_user(shmfs, client):
    client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    r = shmfs.as_user(["cat", shmfs.path("status")])
    assert r.returncode == 0, r.stderr
    assert r.stdout == sc.read_status(shmfs.root)
    assert len(r.stdout.splitlines()) == 2


# -- the published table (.table) ----------------------------------------------

def table_of(m):
    p = m.path(".table")
    if not os.path.lexists(p):
        pytest.skip("the daemon publishes no table on this host")
    return p


def test_table_is_a_symlink_to_a_valid_table(shmfs):
    p = table_of(shmfs)
    st = os.lstat(p)
    assert stat.S_ISLNK(st.st_mode)
    target = os.readlink(p)
    assert os.path.isabs(target)
    assert not target.startswith(shmfs.root + "/")  # never on the mount itself
    t = sc.Table(target)
    try:
        h = t.header()
    finally:
        t.close()
    assert h["magic"] == sc.TABLE_MAGIC
    assert h["version"] == sc.TABLE_VERSION
    assert h["page_size"] == os.sysconf("SC_PAGE_SIZE")
    assert h["max_slots"] == sc.MAX_SLOTS
    # readers follow the holder's life, which outlives every server
    assert h["daemon_pid"] == shmfs.holder_pid
    tst = os.stat(target)
    assert tst.st_size == sc.TABLE_SIZE
    assert tst.st_mode & 0o022 == 0, "table writable by others"


def test_table_entries_match_ipc_stat(shmfs, client):
    t = sc.Table(os.readlink(table_of(shmfs)))
    try:
        shmid = client.shmget(KEY, 5000, IPC_CREAT | 0o640)
        a = client.attach(shmid)
        e = t.entry(sc.slot_of(shmid))
        assert e["live"] == 1
        assert e["ds"] == {k: v for k, v in client.stat(shmid).items() if k != "ret"}
        assert sc.slot_of(shmid) in t.chain(KEY)
        a.detach()
        assert t.entry(sc.slot_of(shmid))["ds"]["nattch"] == 0
        client.rmid(shmid)
        assert t.entry(sc.slot_of(shmid))["live"] == 0
        assert sc.slot_of(shmid) not in t.chain(KEY)
    finally:
        t.close()


def test_table_readable_by_other_users(shmfs, client):
    target = os.readlink(table_of(shmfs))
    r = shmfs.as_user(["head", "-c", "4", target])
    assert r.returncode == 0, r.stderr
