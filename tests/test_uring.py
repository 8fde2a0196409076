"""-o uring: requests through FUSE over io_uring (src/uring.c), one ring
per CPU, with /dev/fuse kept for FUSE_INIT, forgets, interrupts and
notifications.  It turns on the fuse module's enable_uring for the whole
machine; the fixture puts back what was there.  Without failover only: a
request a dead server took from its ring could never be answered."""
import os
import subprocess

import pytest

import shmfs_client as sc
from conftest import DAEMON
from test_conform import (_diff, _expected_on_shmfs, _free_base, _prog,
                          _run_kernel, _run_shmfs)
from test_tally_counts import KEY, Steps

PARAM = "/sys/module/fuse/parameters/enable_uring"
URING = ["-o", "uring,no_failover"]


@pytest.fixture
def enable_uring():
    """The module parameter as it was, put back after the test.  Listed
    before shmfs_factory, so that it is put back after the mount is gone:
    the kernel refuses every ring command while it is off."""
    if not os.path.exists(PARAM):
        pytest.skip("this kernel's fuse has no io_uring (%s)" % PARAM)
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            if f.read().strip() != "0":
                pytest.skip("io_uring is disabled (kernel.io_uring_disabled)")
    except FileNotFoundError:
        pass
    with open(PARAM) as f:
        was = f.read().strip()
    yield was
    with open(PARAM, "w") as f:
        f.write(was)


def ring_requests(m):
    return m.stats()["ring_requests"]


def test_uring_needs_no_failover(tmp_path, enable_uring):
    r = subprocess.run([DAEMON, "-f", "-o", "uring", str(tmp_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "-o uring needs -o no_failover" in r.stderr
    assert not os.path.ismount(str(tmp_path))


def test_without_uring_nothing_comes_through_a_ring(shmfs):
    c = shmfs.client()
    shmid = c.shmget(KEY, 4096, sc.IPC_CREAT | 0o600)
    c.set(shmid, 0, 0, 0o640)
    assert ring_requests(shmfs) == 0


def test_calls_are_served_through_the_rings(enable_uring, shmfs_factory):
    """Creation, control calls, attach opens, the tree and the attributes
    all work with requests coming through the rings, and the rings carry
    them: the count of ring requests grows with the calls."""
    m = shmfs_factory(URING)
    with open(PARAM) as f:
        assert f.read().strip() == "Y"
    c = m.client()
    shmid = c.shmget(KEY, 8192, sc.IPC_CREAT | 0o600)
    before = ring_requests(m)
    for mode in (0o640, 0o600, 0o644):
        c.set(shmid, 0, 0, mode)
        assert c.stat(shmid)["mode"] & 0o777 == mode
    assert ring_requests(m) >= before + 3
    s = Steps(m)
    try:
        s("at", shmid)
        s("put", 0x42)
        assert s.value("stat", shmid) == 1
        a = c.attach(shmid)
        assert a.read(0, 4) == b"\x42" * 4
        a.detach()
        s("dt")
    finally:
        s.close()
    names = os.listdir(m.root)
    assert sc.key_name(KEY) in names
    st = os.stat(m.id_path(shmid))
    assert st.st_size == 8192 and st.st_mode & 0o777 == 0o644
    os.chmod(m.id_path(shmid), 0o600)
    assert c.stat(shmid)["mode"] & 0o777 == 0o600
    assert sc.catch(c.shmget, KEY, 8192, sc.IPC_CREAT | sc.IPC_EXCL |
                    0o600) == "EEXIST"
    c.rmid(shmid)
    assert sc.catch(c.stat, shmid) == "EINVAL"
    assert ring_requests(m) > before + 10


def test_sysv_conform_through_the_rings(enable_uring, shmfs_factory):
    """The conformance transcript over rings is the kernel's, as over
    /dev/fuse (test_conform.py)."""
    m = shmfs_factory(URING)
    prog = _prog(m.build, "sysv_conform")
    base = _free_base()
    kernel = _run_kernel([prog, hex(base)], base)
    before = ring_requests(m)
    on_shmfs = _run_shmfs([prog, hex(_free_base())], m)
    kernel = _expected_on_shmfs(kernel)
    if kernel != on_shmfs:
        pytest.fail(_diff(kernel, on_shmfs, "sysv_conform over io_uring"),
                    pytrace=False)
    assert ring_requests(m) > before + 100


def test_the_parameter_turned_off_under_the_mount_comes_back(
        enable_uring, shmfs_factory):
    """The kernel refuses every ring command while enable_uring is off, so
    a mount whose rings hold requests would hang if someone turned it off:
    the daemon turns it on again, says so, and every call is answered."""
    m = shmfs_factory(URING)
    c = m.client()
    shmid = c.shmget(KEY, 4096, sc.IPC_CREAT | 0o600)
    before = ring_requests(m)
    with open(PARAM, "w") as f:
        f.write("N")
    for mode in (0o640, 0o600, 0o644, 0o600):
        c.set(shmid, 0, 0, mode)
        assert c.stat(shmid)["mode"] & 0o777 == mode
    assert os.listdir(m.root)
    with open(PARAM) as f:
        assert f.read().strip() == "Y"
    assert ring_requests(m) > before
    assert "was turned off; turned on again" in m.stderr_text()
