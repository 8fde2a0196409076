"""Operations with no SysV meaning: each refused with its documented errno,
the segment (data, size, mode, owner, times, names) untouched."""

import os
import subprocess

import pytest

import shmfs_client as sc
from shmfs_client import IPC_CREAT, catch


@pytest.fixture
def shmfs(shmfs_each_path):
    """Every test here runs on both data paths."""
    return shmfs_each_path

KEY = 0x0BAD
SIZE = 4097
PATTERN = bytes((i * 7 + 3) & 0xFF for i in range(SIZE))


@pytest.fixture
def seg(shmfs, client):
    """A segment full of PATTERN; after the test, checks nothing changed."""
    shmid = client.shmget(KEY, SIZE, IPC_CREAT | 0o640)
    with client.attach(shmid) as a:
        a.write(0, PATTERN)
    before = client.stat(shmid)
    names = sorted(os.listdir(shmfs.root))
    path = shmfs.seg_path(KEY, shmid)
    yield shmid, path
    after = client.stat(shmid)
    assert after == before, "segment attributes changed"
    with open(shmfs.id_path(shmid), "rb") as f:
        assert f.read() == PATTERN, "segment data changed"
    with client.attach(shmid, rdonly=True) as a:
        assert a.read() == PATTERN
    assert os.stat(path).st_size == SIZE
    assert sorted(os.listdir(shmfs.root)) == names
    assert os.listdir(shmfs.path(sc.key_name(KEY))) == [str(shmid)]
    assert shmfs.alive()


def test_rename_segment_is_eperm(shmfs, seg):
    shmid, p = seg
    d = os.path.dirname(p)
    assert catch(os.rename, p, os.path.join(d, "99")) == "EPERM"
    assert catch(os.rename, p, shmfs.path("0x00000001")) == "EPERM"
    assert catch(os.rename, p, shmfs.path("status")) == "EPERM"


def test_rename_key_dir_is_eperm(shmfs, seg):
    _, p = seg
    assert catch(os.rename, os.path.dirname(p), shmfs.path("0x00000002")) == "EPERM"


def test_rename_fixed_nodes_is_eperm(shmfs, seg):
    assert catch(os.rename, shmfs.path("status"), shmfs.path("st")) == "EPERM"
    assert catch(os.rename, shmfs.path(".ctl"), shmfs.path("c")) == "EPERM"


def test_link_is_eperm(shmfs, seg):
    shmid, p = seg
    assert catch(os.link, p, os.path.join(os.path.dirname(p), "1")) == "EPERM"
    assert catch(os.link, p, shmfs.path("hard")) == "EPERM"


def test_symlink_is_eperm(shmfs, seg):
    _, p = seg
    assert catch(os.symlink, p, shmfs.path("sym")) == "EPERM"
    assert catch(os.symlink, "x", os.path.join(os.path.dirname(p), "sym")) == "EPERM"


def test_mknod_is_eperm(shmfs, seg):
    _, p = seg
    assert catch(os.mknod, shmfs.path("node"), 0o600) == "EPERM"
    assert catch(os.mkfifo, shmfs.path("fifo")) == "EPERM"
    assert catch(os.mknod, os.path.join(os.path.dirname(p), "5")) == "EPERM"


def test_mkdir_of_non_key_is_eperm(shmfs, seg):
    assert catch(os.mkdir, shmfs.path("dir")) == "EPERM"
    assert catch(os.mkdir, shmfs.path(".id", "x")) == "EPERM"


def test_mkdir_of_key_name_creates_nothing(shmfs, seg, client):
    assert catch(os.mkdir, shmfs.path("0x00004321")) is not None
    assert not os.path.exists(shmfs.path("0x00004321"))
    assert catch(client.shmget, 0x4321, 1, 0) == "ENOENT"


def test_create_of_new_name_is_eperm(shmfs, seg):
    _, p = seg
    for q in (shmfs.path("new"), os.path.join(os.path.dirname(p), "123"),
              shmfs.path(".id", "123")):
        assert catch(os.open, q, os.O_CREAT | os.O_RDWR, 0o600) == "EPERM", q


def test_open_excl_creat_of_existing_segment_is_eexist(shmfs, seg):
    _, p = seg
    assert catch(os.open, p, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600) == "EEXIST"


def test_truncate_to_another_size_is_eperm(shmfs, seg):
    _, p = seg
    for size in (0, 1, SIZE - 1, SIZE + 1, 1 << 20):
        assert catch(os.truncate, p, size) == "EPERM", size
    fd = os.open(p, os.O_RDWR)
    try:
        assert catch(os.ftruncate, fd, 0) == "EPERM"
    finally:
        os.close(fd)


def test_truncate_to_segsz_is_a_no_op(shmfs, seg):
    _, p = seg
    os.truncate(p, SIZE)


def test_open_with_o_trunc_is_eperm(shmfs, seg):
    shmid, p = seg
    assert catch(os.open, p, os.O_RDWR | os.O_TRUNC) == "EPERM"
    assert catch(os.open, p, os.O_WRONLY | os.O_TRUNC) == "EPERM"
    assert catch(os.open, shmfs.id_path(shmid),
                 os.O_RDWR | os.O_TRUNC | sc.ATTACH_FLAGS) == "EPERM"


def test_shell_redirect_truncation_is_refused(shmfs, seg):
    _, p = seg
    r = subprocess.run(["sh", "-c", "echo hi > '%s'" % p], capture_output=True, text=True)
    assert r.returncode != 0
    assert "Operation not permitted" in r.stderr


def test_write_at_or_past_segsz_is_eperm(shmfs, seg):
    """A segment never grows: its memory is sealed at shm_segsz."""
    _, p = seg
    fd = os.open(p, os.O_RDWR)
    try:
        assert catch(os.pwrite, fd, b"x", SIZE) == "EPERM"
        assert catch(os.pwrite, fd, b"x", SIZE + 100000) == "EPERM"
    finally:
        os.close(fd)


def test_write_crossing_segsz_is_short(shmfs, seg):
    """Cut short, never past the end: at shm_segsz in the arena, at the
    last page boundary before it when the kernel writes to the sealed
    memfd itself (passthrough)."""
    _, p = seg
    fd = os.open(p, os.O_RDWR)
    try:
        start = sc.PAGE_SIZE - 4
        n = os.pwrite(fd, PATTERN[start:sc.PAGE_SIZE + 1] + b"more", start)
        want = 4 if shmfs.stats()["passthrough"] else SIZE - start
        assert n == want
    finally:
        os.close(fd)


def test_append_write_is_eperm(shmfs, seg):
    _, p = seg
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        assert catch(os.write, fd, b"x") == "EPERM"
    finally:
        os.close(fd)


@pytest.mark.parametrize("name,value,expect", [
    ("user.shm.mode", b"0777", "EPERM"),
    ("user.shm.nattch", b"5", "EPERM"),
    ("user.shm.key", b"0x00000001", "EPERM"),
    ("user.shm.new", b"1", "EPERM"),
    ("user.other", b"1", "ENOTSUP"),
    ("trusted.x", b"1", "ENOTSUP"),
])
def test_setxattr_is_refused(shmfs, seg, name, value, expect):
    _, p = seg
    assert catch(os.setxattr, p, name, value) == expect


def test_removexattr_is_refused(shmfs, seg):
    _, p = seg
    assert catch(os.removexattr, p, "user.shm.mode") == "EPERM"
    assert catch(os.removexattr, p, "user.shm.ctime") == "EPERM"
    assert catch(os.removexattr, p, "user.other") == "ENOTSUP"


def test_setfattr_tool_is_refused(shmfs, seg):
    _, p = seg
    r = subprocess.run(["setfattr", "-n", "user.shm.mode", "-v", "0777", p],
                       capture_output=True, text=True)
    assert r.returncode != 0


def test_touch_is_eperm(shmfs, seg):
    _, p = seg
    assert catch(os.utime, p, (12345, 12345)) == "EPERM"
    assert catch(os.utime, p, None) == "EPERM"
    r = subprocess.run(["touch", p], capture_output=True, text=True)
    assert r.returncode != 0
    assert "Operation not permitted" in r.stderr


@pytest.mark.parametrize("mode", [0o4755, 0o2640, 0o1640, 0o7777])
def test_chmod_with_bits_beyond_0777_is_einval(shmfs, seg, mode):
    _, p = seg
    assert catch(os.chmod, p, mode) == "EINVAL"


def test_rmdir_of_key_dir_is_enotempty(shmfs, seg):
    _, p = seg
    assert catch(os.rmdir, os.path.dirname(p)) == "ENOTEMPTY"


def test_fixed_nodes_cannot_be_removed(shmfs, seg):
    assert catch(os.unlink, shmfs.path(".ctl")) == "EPERM"
    assert catch(os.unlink, shmfs.path("status")) == "EPERM"
    assert catch(os.rmdir, shmfs.path(".id")) == "EPERM"


def test_chmod_chown_of_fixed_nodes_refused(shmfs, seg):
    for p in (shmfs.path(".ctl"), shmfs.path("status"), shmfs.path(".id"),
              shmfs.root):
        st = os.stat(p)
        assert catch(os.chmod, p, 0o777) is not None, p
        assert catch(os.chown, p, 1000, 1000) is not None, p
        st2 = os.stat(p)
        assert (st.st_mode, st.st_uid, st.st_gid) == \
            (st2.st_mode, st2.st_uid, st2.st_gid), p


def test_writing_status_is_refused(shmfs, seg):
    assert catch(os.open, shmfs.path("status"), os.O_RDWR) is not None
    assert catch(os.truncate, shmfs.path("status"), 0) is not None
    text = sc.read_status(shmfs.root)
    assert len(text.splitlines()) == 2


def test_unlink_of_unknown_names_is_enoent(shmfs, seg):
    shmid, p = seg
    assert catch(os.unlink, shmfs.path("nosuch")) == "ENOENT"
    assert catch(os.unlink, os.path.join(os.path.dirname(p), str(shmid + 1))) == "ENOENT"
    assert catch(os.rmdir, shmfs.path("0x00000077")) == "ENOENT"


def test_read_on_ctl_does_nothing_harmful(shmfs, seg):
    with open(shmfs.path(".ctl"), "rb") as f:
        assert f.read() == b""
    fd = os.open(shmfs.path(".ctl"), os.O_RDWR)
    try:
        catch(os.write, fd, b"junk")  # refused or ignored; never a crash
    finally:
        os.close(fd)
    assert os.stat(shmfs.path(".ctl")).st_size == 0


def test_bogus_ioctls_on_ctl_fail_cleanly(shmfs, seg):
    import fcntl
    fd = os.open(shmfs.path(".ctl"), os.O_RDWR)
    try:
        for nr in (0, 8, 99):
            req = sc._iowr(nr, 8)
            assert catch(fcntl.ioctl, fd, req, bytearray(8), True) is not None
        # the right number with the wrong size is another ioctl
        assert catch(fcntl.ioctl, fd, sc._iowr(2, 16), bytearray(16), True) is not None
    finally:
        os.close(fd)


def test_ioctls_on_segment_files_fail_cleanly(shmfs, seg, client):
    import fcntl
    shmid, p = seg
    fd = os.open(p, os.O_RDONLY)
    try:
        buf = bytearray(sc.GET.pack(0x1111, IPC_CREAT | 0o600, 4096, -1, 0))
        assert catch(fcntl.ioctl, fd, sc.IOC_GET, buf, True) is not None
    finally:
        os.close(fd)
    assert catch(client.shmget, 0x1111, 1, 0) == "ENOENT"
