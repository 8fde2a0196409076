"""The daemon says what is wrong: one clear line for the usual mistakes,
and with -o verbose a line per error a client caused (issue 6)."""

import os
import subprocess
import tempfile

import conftest
import shmfs_client as sc
from shmfs_client import IPC_CREAT, catch


def run_daemon(*args, timeout=20):
    return subprocess.run([conftest.DAEMON] + list(args), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_missing_mount_point_is_named(tmp_path):
    mnt = str(tmp_path / "nosuch")
    r = run_daemon("-f", mnt)
    assert r.returncode == 2
    assert r.stderr.strip() == ("shmfs: mount point %s: No such file or "
                                "directory (create it first: mkdir -p)" % mnt)
    assert not os.path.exists(mnt)


def test_mount_point_that_is_a_file_is_named(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = run_daemon("-f", str(f))
    assert r.returncode == 2
    assert r.stderr.strip() == "shmfs: mount point %s is not a directory" % f


def test_busy_mount_point_is_named(shmfs):
    r = run_daemon("-f", shmfs.root)
    assert r.returncode == 1
    assert "a shmfs is already mounted there" in r.stderr
    assert "fusermount3 -u %s" % shmfs.root in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert shmfs.alive()                      # the first one is untouched


def test_not_root_is_named(as_user, tmp_path):
    os.chmod(str(tmp_path), 0o755)
    r = as_user([conftest.DAEMON, "-f", str(tmp_path)], uid=1000, gid=1000)
    assert r.returncode == 1
    assert r.stderr.strip() == ("shmfs: must run as root: it serves every "
                                "user and checks SysV permissions itself "
                                "(uid 1000)")


def test_missing_dev_fuse_is_named(tmp_path):
    # a private mount namespace whose /dev has no fuse node
    script = "mount -t tmpfs none /dev && exec %s -f %s" % (conftest.DAEMON,
                                                             tmp_path)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh",
                        "-c", script], capture_output=True, text=True,
                       timeout=20, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r
    assert r.stderr.strip().startswith("shmfs: /dev/fuse: No such file or "
                                       "directory (is the fuse module loaded?")


def test_bad_option_is_one_line_and_exit_2(tmp_path):
    r = run_daemon("-f", "-o", "shmmni=lots", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip() == ("shmfs: invalid shmmni 'lots': expected a "
                                "count from 1 to 32768")
    assert not os.path.ismount(str(tmp_path))


def test_verbose_logs_each_client_error(shmfs_factory):
    m = shmfs_factory(["-o", "verbose"])
    m.allow_stderr(r"shmfs: .* by pid \d+ uid \d+: .*")
    c = m.client()
    assert catch(c.shmget, 0x7777, 4096, 0) == "ENOENT"
    shmid = c.shmget(0x7777, 4096, IPC_CREAT | 0o600)
    assert catch(os.rename, m.seg_path(0x7777, shmid),
                 m.path("x")) == "EPERM"
    c.rmid(shmid)
    err = m.stderr_text()
    assert "shmfs: shmget by pid %d uid 0: No such file or directory" % \
        os.getpid() in err, err
    assert "rename" in err and "Operation not permitted" in err, err


def test_quiet_without_verbose(shmfs, client):
    assert catch(client.shmget, 0x7777, 4096, 0) == "ENOENT"
    assert "shmget" not in shmfs.stderr_text()
