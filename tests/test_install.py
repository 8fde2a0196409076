"""make install and make uninstall, and mounting the installed daemon the
way any file system is mounted: mount -t fuse.shmfs, a line in fstab,
the mount.fuse.shmfs helper, umount.  test_lib.py builds its own program
against a DESTDIR install with PREFIX=/usr; here the layout itself, the
example program built with pkg-config against PREFIX=/usr/local, and a
real install to /usr/local inside a private mount namespace (a tmpfs
hides the machine's /usr/local there, so nothing is left installed)."""

import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap

import pytest

from test_lib import (EXAMPLE_OUTPUT, build_dir, lib_env, run, sanitize_flags,
                      sanitizer_runtimes)

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)

# What `make install PREFIX=/usr/local` puts under DESTDIR: path -> mode,
# or -> "link:TARGET" for a symbolic link.
LAYOUT = {
    "usr/local/bin/shmfs": 0o755,
    "usr/local/lib/libshmfs.so.1": 0o755,
    "usr/local/lib/libshmfs.so": "link:libshmfs.so.1",
    "usr/local/lib/libshmfs.a": 0o644,
    "usr/local/lib/libshmfs-preload.so": 0o755,
    "usr/local/include/shmfs.h": 0o644,
    "usr/local/lib/pkgconfig/shmfs.pc": 0o644,
    "usr/local/share/man/man1/shmfs.1": 0o644,
    "usr/local/share/man/man3/libshmfs.3": 0o644,
    "usr/local/share/man/man7/shmfs.7": 0o644,
    # mount(8) looks for mount.TYPE helpers in /sbin only.
    "sbin/mount.fuse.shmfs": "link:/sbin/mount.fuse3",
}


def make(*args, timeout=600):
    r = subprocess.run(["make", "-C", REPO, "--no-print-directory",
                        "B=%s" % build_dir()] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, "make %s failed:\n%s%s" % (
        " ".join(args), r.stdout, r.stderr)
    return r


def tree(top):
    """Every non-directory under top: relative path -> mode or link."""
    found = {}
    for d, dirs, files in os.walk(top):
        for n in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, top)
            st = os.lstat(p)
            found[rel] = ("link:" + os.readlink(p)) if stat.S_ISLNK(st.st_mode) \
                else stat.S_IMODE(st.st_mode)
    return found


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    d = tmp_path_factory.mktemp("destdir")
    make("install", "DESTDIR=%s" % d, "PREFIX=/usr/local")
    return d


# -- the layout ----------------------------------------------------------------

def test_install_lays_out_exactly_the_files(dest):
    assert tree(dest) == LAYOUT
    build = build_dir()
    for rel, src in (("usr/local/bin/shmfs", "shmfs"),
                     ("usr/local/lib/libshmfs.so.1", "libshmfs.so.1"),
                     ("usr/local/lib/libshmfs-preload.so",
                      "libshmfs-preload.so")):
        with open(dest / rel, "rb") as a, open(os.path.join(build, src),
                                               "rb") as b:
            assert a.read() == b.read(), rel
    pc = (dest / "usr/local/lib/pkgconfig/shmfs.pc").read_text()
    assert "prefix=/usr/local\n" in pc
    assert "libdir=/usr/local/lib\n" in pc
    assert "includedir=/usr/local/include\n" in pc
    for page in ("usr/local/share/man/man1/shmfs.1",
                 "usr/local/share/man/man3/libshmfs.3",
                 "usr/local/share/man/man7/shmfs.7"):
        r = subprocess.run(["man", "--warnings", "-l", "-P", "cat",
                            dest / page], capture_output=True, text=True,
                           env=dict(os.environ, MANWIDTH="80"))
        assert r.returncode == 0 and r.stderr == "", (page, r.stderr)


def test_uninstall_removes_exactly_what_install_put(tmp_path):
    d = tmp_path / "dest"
    make("install", "DESTDIR=%s" % d, "PREFIX=/usr/local")
    # Files of others beside ours stay.
    others = ["usr/local/bin/other", "usr/local/lib/libother.so",
              "usr/local/include/other.h", "sbin/mount.fuse.other",
              "usr/local/lib/pkgconfig/other.pc"]
    for rel in others:
        (d / rel).write_text("not shmfs's\n")
    make("uninstall", "DESTDIR=%s" % d, "PREFIX=/usr/local")
    assert sorted(tree(d)) == sorted(others)


def test_no_mount_helper_when_its_directory_is_empty(tmp_path):
    d = tmp_path / "dest"
    make("install", "DESTDIR=%s" % d, "PREFIX=/opt/shmfs",
         "MOUNT_HELPER_DIR=")
    assert sorted(tree(d)) == sorted(
        rel.replace("usr/local", "opt/shmfs") for rel in LAYOUT
        if not rel.startswith("sbin/"))
    make("uninstall", "DESTDIR=%s" % d, "PREFIX=/opt/shmfs",
         "MOUNT_HELPER_DIR=")
    assert tree(d) == {}


# -- the example, built with pkg-config against the staged install -----------

def pkg_config(d, prefix, *args):
    env = dict(os.environ,
               PKG_CONFIG_LIBDIR=str(d / prefix / "lib/pkgconfig"),
               PKG_CONFIG_PATH="",
               PKG_CONFIG_SYSROOT_DIR=str(d))
    r = subprocess.run(["pkg-config"] + list(args) + ["shmfs"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_example_builds_with_pkg_config_and_runs(dest, shmfs, tmp_path):
    lib = dest / "usr/local/lib"
    cflags = pkg_config(dest, "usr/local", "--cflags")
    libs = pkg_config(dest, "usr/local", "--libs")
    assert cflags == ["-I%s" % (dest / "usr/local/include")]
    assert libs == ["-L%s" % lib, "-lshmfs"]
    exe = tmp_path / "shmfs_example"
    r = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", "-o", exe,
                        os.path.join(REPO, "examples", "shmfs_example.c")] +
                       sanitize_flags(str(lib / "libshmfs.so.1")) +
                       cflags + libs, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = run([exe], lib_env(shmfs.root, LD_LIBRARY_PATH=str(lib)))
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(EXAMPLE_OUTPUT, r.stdout), r.stdout
    assert r.stderr == ""
    needed = subprocess.run(["readelf", "-d", exe], capture_output=True,
                            text=True).stdout
    assert "Shared library: [libshmfs.so.1]" in needed


# -- mounting the installed daemon like any file system ------------------------

# Runs inside `unshare -m`: everything it mounts, the tmpfs over
# /usr/local included, lives in that namespace only.  It prints one line
# per step; on any failure it still unmounts, stops every daemon it
# started and uninstalls.
MOUNT_SCRIPT = textwrap.dedent(r'''
    import os, re, signal, subprocess, sys, time
    repo, build, mnt, work, runtimes = sys.argv[1:6]
    daemons = set()
    # An ASan build of the library loads only after its runtime.
    PRELOAD = " ".join(runtimes.split() + ["/usr/local/lib/libshmfs-preload.so"])

    def sh(*argv, env=None):
        r = subprocess.run(argv, capture_output=True, text=True, env=env,
                           timeout=60)
        if r.returncode != 0:
            raise SystemExit("%s: %d %s%s" % (" ".join(argv), r.returncode,
                                              r.stdout, r.stderr))
        return r.stdout

    def mounted():
        with open("/proc/self/mountinfo") as f:
            for ln in f:
                w = ln.split()
                # mountinfo writes a space as \040 (a tab, a newline so)
                if re.sub(r"\\([0-3][0-7]{2})",
                          lambda m: chr(int(m.group(1), 8)), w[4]) == mnt:
                    sep = w.index("-")
                    return w[sep + 1], w[sep + 2], w[5], w[sep + 3]
        return None

    def daemon():
        # .table -> /run/shmfs/table.PID names the daemon
        pid = int(os.readlink(os.path.join(mnt, ".table")).rsplit(".", 1)[1])
        daemons.add(pid)
        return pid

    def check_mounted(what, shmmni):
        m = mounted()
        assert m is not None, what + ": not mounted"
        fstype, source, mntopts, superopts = m
        pid = daemon()
        limit = sh("cat", "/proc/sys/kernel/shmmni",
                   env=dict(os.environ, LD_PRELOAD=PRELOAD, SHMFS_ROOT=mnt,
                            ASAN_OPTIONS="detect_leaks=0")).strip()
        print(what, fstype, source, "allow_other" in superopts.split(","),
              "shmmni=" + limit, flush=True)
        return pid

    def check_unmounted(what, pid):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        else:
            raise SystemExit(what + ": daemon %d still running" % pid)
        daemons.discard(pid)
        print(what, "unmounted" if mounted() is None else "STILL MOUNTED",
              flush=True)

    try:
        sh("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/usr/local")
        # The helper link goes beside the others in /usr/local/sbin, not in
        # the machine's /sbin: mount(8) below finds /sbin/mount.fuse, and
        # the link is run by its full name.
        sh("make", "-C", repo, "--no-print-directory", "B=" + build,
           "install", "PREFIX=/usr/local", "MOUNT_HELPER_DIR=/usr/local/sbin")

        sh("mount", "-t", "fuse.shmfs", "shmfs", mnt,
           "-o", "allow_other,shmmni=1024")
        pid = check_mounted("mount -t", "1024")
        sh("umount", mnt)
        check_unmounted("umount", pid)

        fstab = os.path.join(work, "fstab")
        with open(fstab, "w") as f:
            f.write("shmfs %s fuse.shmfs allow_other,shmmni=1024 0 0\n" % mnt)
        sh("mount", "--bind", fstab, "/etc/fstab")
        sh("mount", mnt)
        pid = check_mounted("fstab", "1024")
        sh("umount", mnt)
        check_unmounted("umount", pid)

        # As mount(8) runs it: no PATH in the environment.
        sh("/usr/local/sbin/mount.fuse.shmfs", "shmfs", mnt,
           "-o", "rw,allow_other,shmmni=77", env={})
        pid = check_mounted("helper", "77")
        sh("umount", mnt)
        check_unmounted("umount", pid)

        sh("make", "-C", repo, "--no-print-directory", "B=" + build,
           "uninstall", "PREFIX=/usr/local", "MOUNT_HELPER_DIR=/usr/local/sbin")
        left = [os.path.join(d, n) for d, _, files in os.walk("/usr/local")
                for n in files]
        print("uninstalled, left:", left, flush=True)
    finally:
        if mounted() is not None:
            subprocess.run(["umount", "-l", mnt])
        for pid in daemons:
            try:
                os.kill(pid, signal.SIGKILL)
                print("killed daemon", pid, flush=True)
            except ProcessLookupError:
                pass
''')


def test_mount_fstab_helper_and_umount_of_the_installed_daemon(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    for tool in ("unshare", "mount", "umount"):
        if shutil.which(tool) is None:
            pytest.skip("no " + tool)
    if not os.path.exists("/sbin/mount.fuse") and \
            not os.path.exists("/sbin/mount.fuse.shmfs"):
        pytest.skip("no /sbin/mount.fuse: mount(8) cannot run FUSE helpers")
    if not os.path.exists("/etc/fstab"):
        pytest.skip("no /etc/fstab to bind a test fstab over")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private",
                            "mount", "-t", "tmpfs", "tmpfs", "/usr/local"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("no private mount namespace here: " + probe.stderr.strip())
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    os.chmod(tmp_path, 0o755)
    script = tmp_path / "mount.py"
    script.write_text(MOUNT_SCRIPT)
    asan = [p for n, p in sanitizer_runtimes(
        os.path.join(build_dir(), "libshmfs-preload.so")).items()
        if n == "libasan"]
    r = subprocess.run(["unshare", "--mount", "--propagation", "private",
                        sys.executable, script, REPO, build_dir(), mnt,
                        tmp_path, " ".join(asan)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [
        "mount -t fuse.shmfs shmfs True shmmni=1024",
        "umount unmounted",
        "fstab fuse.shmfs shmfs True shmmni=1024",
        "umount unmounted",
        "helper fuse.shmfs shmfs True shmmni=77",
        "umount unmounted",
        "uninstalled, left: []",
    ]
    # Nothing of it is visible out here.
    assert not os.path.ismount(mnt)
    assert not os.path.exists("/usr/local/sbin/mount.fuse.shmfs")
