"""What an operator runs: make run and make stop (scripts/run.sh,
scripts/stop.sh) on mount points with a space, a second run, a dead
mount, a busy mount; the daemon's own lookups of such a mount point; and
pkg-config on the uninstalled build.  Every mount is in a temporary
directory and is gone at the end of its test."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import conftest
from conftest import Mount, ismounted, until
from shmfs_client import IPC_CREAT

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
KEY = 0x5eed


def make(*args, timeout=600):
    """make in the checkout, as an operator types it: make run builds and
    mounts build/ (a plain build, whose preload library the demo's ipcmk
    can load, also during check-asan and check-valgrind)."""
    env = dict(os.environ)
    return subprocess.run(["make", "-s", "--no-print-directory", "-C", REPO] +
                          list(args), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=env)


def mount_dev(path):
    """major:minor of the topmost mount at path, from mountinfo."""
    dev = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            w = line.split()
            if conftest.mountinfo_unescape(w[4]) == path:
                dev = w[2]
    return dev


def daemon_pid(mnt):
    """The serving daemon's pid, from the .table link (table.PID)."""
    try:
        return int(os.readlink(os.path.join(mnt, ".table")).rsplit(".", 1)[1])
    except (OSError, ValueError, IndexError):
        return None


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def spaced():
    """A directory whose name has a space and a backslash (both escaped
    by mountinfo); anything still mounted under it is lazily unmounted
    at the end, and the test fails then."""
    top = tempfile.mkdtemp(prefix="shmfs-op-")
    os.chmod(top, 0o755)
    mnt = os.path.join(top, "a b\\c")
    left = []
    try:
        yield mnt
    finally:
        while ismounted(mnt):
            left.append(mnt)
            subprocess.run(["fusermount3", "-uz", mnt], capture_output=True)
        subprocess.run(["rm", "-rf", "--one-file-system", top])
    assert not left, "left mounted: %s" % left


def stop_and_wait(mnt):
    pid = daemon_pid(mnt)
    r = make("stop", "MNT=" + mnt)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not ismounted(mnt)
    if pid:
        assert until(lambda: gone(pid), 30), "daemon %d did not exit" % pid
    return r


def test_make_run_twice_and_stop_on_a_path_with_a_space(spaced):
    r = make("run", "MNT=" + spaced)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "not found" not in r.stdout + r.stderr
    assert "cannot lift" not in r.stderr, r.stderr
    assert "shmfs: mounted at %s" % spaced in r.stdout
    assert ismounted(spaced)
    keys = [k for k in os.listdir(spaced) if k.startswith("0x")]
    assert len(keys) == 1, keys  # the demo segment
    assert "Shared memory id:" in r.stdout
    assert "user.shm.segsz=\"8192\"" in r.stdout  # getfattr on the segment

    # a second run shows the mount and adds nothing to it
    r2 = make("run", "MNT=" + spaced)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert "already mounted at %s" % spaced in r2.stdout
    assert "something else" not in r2.stderr
    assert "ipcmk" not in r2.stdout
    assert [k for k in os.listdir(spaced) if k.startswith("0x")] == keys
    assert len(os.listdir(os.path.join(spaced, keys[0]))) == 1

    r3 = stop_and_wait(spaced)
    assert "shmfs: unmounted %s" % spaced in r3.stdout
    r4 = make("stop", "MNT=" + spaced)
    assert r4.returncode == 0 and "is not mounted" in r4.stdout


def test_daemon_lifts_the_dirty_limit_and_refuses_a_second_daemon_on_a_path_with_a_space(spaced):
    os.mkdir(spaced)
    m = Mount(mount=False)
    os.rmdir(m.root)
    m.root = spaced
    try:
        m.start()
        dev = mount_dev(spaced)
        assert dev is not None
        with open("/sys/class/bdi/%s/max_ratio" % dev) as f:
            assert f.read().strip() == "100"
        with open("/sys/class/bdi/%s/strict_limit" % dev) as f:
            assert f.read().strip() == "0"
        r = subprocess.run([conftest.DAEMON, "-f", spaced], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert r.returncode == 1
        assert "a shmfs is already mounted there" in r.stderr, r.stderr
        assert "cannot lift" not in m.stderr_text()
    finally:
        problems = m.teardown()
    assert not problems, problems


def killed_mount_at(path):
    """A shmfs mounted at path whose daemon is then SIGKILLed: a dead
    mount (ENOTCONN), as without a holder (no_failover).  The caller tears
    the Mount down."""
    os.mkdir(path)
    m = Mount(["-o", "no_failover"], mount=False)
    os.rmdir(m.root)
    m.root = path
    m.start()
    m.expect_exit = -signal.SIGKILL
    m.proc.kill()
    m.proc.wait()
    assert ismounted(path)
    with pytest.raises(OSError):
        os.stat(os.path.join(path, "status"))
    return m


def test_make_stop_removes_a_dead_mount(spaced):
    m = killed_mount_at(spaced)
    try:
        r = make("stop", "MNT=" + spaced)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "removed the dead mount at %s" % spaced in r.stdout
        assert not ismounted(spaced)
    finally:
        problems = m.teardown()
    assert not problems, problems


def test_make_run_replaces_a_dead_mount(spaced):
    m = killed_mount_at(spaced)
    try:
        r = make("run", "MNT=" + spaced)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "is a dead mount" in r.stdout
        assert "shmfs: mounted at %s" % spaced in r.stdout
        assert os.path.exists(os.path.join(spaced, "status"))
        stop_and_wait(spaced)
    finally:
        problems = m.teardown()
    assert not problems, problems


def test_make_stop_on_a_busy_mount_names_the_holder_and_the_lazy_unmount(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    seg = shmfs.seg_path(KEY, shmid)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import mmap, sys\n"
         "f = open(sys.argv[1], 'r+b')\n"
         "m = mmap.mmap(f.fileno(), 4096)\n"
         "f.close()\n"
         "print('ready', flush=True)\n"
         "sys.stdin.read()\n", seg],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "ready\n"
        client.close()  # the test's own client: only the holder is left
        r = make("stop", "MNT=" + shmfs.root)
        assert r.returncode != 0
        assert ismounted(shmfs.root)
        err = r.stderr
        assert "Device or resource busy" in err, err
        assert re.search(r"^  %d \(python3?[^)]*\): (open|mapping under) " %
                         holder.pid, err, re.M), err
        assert "fusermount3 -uz '%s'" % shmfs.root in err
        assert ".ctl and .id" in err
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_make_stop_leaves_a_mount_of_another_type_alone(tmp_path):
    d = str(tmp_path / "t")
    os.mkdir(d)
    subprocess.run(["mount", "-t", "tmpfs", "none", d], check=True)
    try:
        r = make("stop", "MNT=" + d)
        assert r.returncode != 0
        assert "is a tmpfs mount, not shmfs" in r.stderr
        assert ismounted(d)
        r = make("run", "MNT=" + d)
        assert r.returncode != 0
        assert "already a mount point of something else (tmpfs)" in r.stderr
    finally:
        subprocess.run(["umount", d], check=True)


def test_pkg_config_uses_the_uninstalled_build(shmfs, tmp_path):
    """README: PKG_CONFIG_PATH=build pkg-config shmfs, before make install,
    finds shmfs-uninstalled.pc: the build's library (with an rpath) and
    the checkout's header; a program built so runs as it is."""
    from test_lib import EXAMPLE_OUTPUT, lib_env, run, sanitize_flags
    env = dict(os.environ, PKG_CONFIG_PATH=conftest.BUILD)
    env.pop("PKG_CONFIG_DISABLE_UNINSTALLED", None)
    r = subprocess.run(["pkg-config", "--modversion", "shmfs"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0.1.0"
    r = subprocess.run(["pkg-config", "--cflags", "--libs", "shmfs"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    flags = r.stdout.split()
    libdir = [f[2:] for f in flags if f.startswith("-L")]
    incdir = [f[2:] for f in flags if f.startswith("-I")]
    assert len(libdir) == 1 and len(incdir) == 1, flags
    assert os.path.exists(os.path.join(libdir[0], "libshmfs.so.1"))
    assert os.path.exists(os.path.join(incdir[0], "shmfs.h"))
    exe = str(tmp_path / "shmfs_example")
    r = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", "-o", exe,
                        os.path.join(REPO, "examples", "shmfs_example.c")] +
                       sanitize_flags(os.path.join(libdir[0], "libshmfs.so.1")) +
                       flags, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = run([exe], lib_env(shmfs.root))  # no LD_LIBRARY_PATH: the rpath
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(EXAMPLE_OUTPUT, r.stdout), r.stdout


def test_pids_are_those_of_the_daemons_pid_namespace(shmfs):
    """shmfs.1, OPERATING A MOUNT, PID namespaces: a client in a PID
    namespace of its own is pid 1 there, and shmfs shows the pid the
    daemon's namespace gives it, in IPC_STAT, the xattrs and status."""
    import json
    import shmfs_client
    argv = ["unshare", "--pid", "--fork", "--kill-child"] + \
        shmfs_client.script_argv(shmfs.root, ["pid"],
                                 ["get", hex(KEY), "4096", "01600"],
                                 ["attach", "@"], ["stat", "@"], ["wait"])
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        inner = json.loads(p.stdout.readline())
        shmid = json.loads(p.stdout.readline())
        p.stdout.readline()  # attach
        ds = json.loads(p.stdout.readline())
        with open("/proc/%d/task/%d/children" % (p.pid, p.pid)) as f:
            outer = int(f.read().split()[0])
        assert inner == 1
        assert outer != 1
        assert ds["cpid"] == outer and ds["lpid"] == outer, ds
        seg = shmfs.seg_path(KEY, shmid)
        assert os.getxattr(seg, "user.shm.cpid") == str(outer).encode()
        assert os.getxattr(seg, "user.shm.pids").decode().startswith(
            "%d:" % outer)
        with open(shmfs.path("status")) as f:
            rows = [l.split() for l in f.read().splitlines()[1:]]
        assert [r[4] for r in rows if r[1] == str(shmid)] == [str(outer)]
    finally:
        out, err = p.communicate("\n", timeout=60)
    assert p.returncode == 0, err
