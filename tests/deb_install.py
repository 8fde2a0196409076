"""The Debian packages (debian/, make check-deb): built with
dpkg-buildpackage from a copy of the checkout, lintian-clean, installed
with dpkg, then used as a Debian user would (shmfs, man shmfs, pkg-config
--libs shmfs, mount -t fuse.shmfs on a temporary directory, a program
built against libshmfs-dev, the preload library), and purged: nothing
they installed is left.  It installs into the machine's /usr for real,
so `make check-deb` runs it on its own, outside the pytest run of tests/
that check-asan and check-valgrind repeat (its name is not test_*.py);
a machine that has these packages installed already is left alone."""

import glob
import os
import re
import subprocess
import sys
import tempfile
import time

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)
from stress import ismounted  # noqa: E402
from test_lib import EXAMPLE_OUTPUT  # noqa: E402

PACKAGES = ("shmfs", "libshmfs1", "libshmfs-dev")
MULTIARCH = subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"],
                           capture_output=True, text=True).stdout.strip()
LIB = "/usr/lib/" + MULTIARCH
PRELOAD = LIB + "/shmfs/libshmfs-preload.so"

# What each package must hold (beyond /usr/share/doc/PKG).
EXPECTED = {
    "shmfs": ["/usr/bin/shmfs", "/usr/share/man/man1/shmfs.1.gz",
              "/usr/share/man/man7/shmfs.7.gz",
              "/lib/systemd/system/shmfs@.service",
              "/usr/share/doc/shmfs/examples/shm.mount",
              "/usr/share/doc/shmfs/README.gz"],
    "libshmfs1": [LIB + "/libshmfs.so.1", PRELOAD],
    "libshmfs-dev": ["/usr/include/shmfs.h", LIB + "/libshmfs.so",
                     LIB + "/libshmfs.a", LIB + "/pkgconfig/shmfs.pc",
                     "/usr/share/man/man3/libshmfs.3.gz"],
}


def run(argv, timeout=300, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(argv, timeout=timeout, stdin=subprocess.DEVNULL,
                          **kw)


def dpkg(*args):
    """dpkg, waiting while another dpkg or apt holds its lock."""
    deadline = time.monotonic() + 300
    while True:
        r = run(["dpkg"] + list(args))
        if r.returncode == 0 or "lock" not in r.stderr or \
                time.monotonic() > deadline:
            return r
        time.sleep(2)


def installed(pkg):
    r = run(["dpkg-query", "-W", "-f=${Status}", pkg])
    return r.returncode == 0 and "installed" in r.stdout.split()


def deb_files(deb):
    """The paths a .deb installs (not its directories)."""
    out = run(["dpkg-deb", "-c", deb], check=True).stdout
    paths = []
    for line in out.splitlines():
        w = line.split(None, 5)
        if w[0].startswith("d"):
            continue
        paths.append(w[5].split(" -> ")[0][1:])
    return paths


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    for p in PACKAGES:
        if installed(p) or run(["dpkg-query", "-W", p]).returncode == 0:
            pytest.skip("%s is on this machine already: not touched" % p)
    out = tmp_path_factory.mktemp("debs")
    t = time.monotonic()
    r = run(["sh", os.path.join(REPO, "scripts", "deb.sh"), str(out)],
            timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    print("deb: built in %.1f s" % (time.monotonic() - t))
    found = {}
    for p in PACKAGES:
        f = glob.glob(str(out / ("%s_*.deb" % p)))
        assert len(f) == 1, (p, os.listdir(out))
        found[p] = f[0]
    found["lintian"] = (out / "lintian.txt").read_text()
    return found


def shmfs_paths():
    """Every path named after shmfs in the places a package writes to."""
    r = run(["find", "/etc", "/usr", "/lib/systemd", "/var/lib/dpkg/info",
             "/var/lib/systemd", "-xdev", "-iname", "*shmfs*"])
    return set(r.stdout.split("\n")) - {""}


@pytest.fixture(scope="module")
def system(debs):
    """The packages installed for the module; purged at its end (also
    when a test failed), and the purge checked by the last test."""
    before = {p: [f for f in deb_files(debs[p]) if os.path.lexists(f)]
              for p in PACKAGES}
    assert before == {p: [] for p in PACKAGES}, \
        "files of the packages are on the machine already: %s" % before
    state = {"purged": False, "paths": shmfs_paths()}
    r = dpkg("-i", *[debs[p] for p in PACKAGES])
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        yield state
    finally:
        if not state["purged"]:
            dpkg("-P", *PACKAGES)


def test_lintian_reports_no_error(debs):
    errors = [l for l in debs["lintian"].splitlines() if l.startswith("E:")]
    assert errors == [], debs["lintian"]


def test_each_package_holds_what_a_debian_user_expects(debs):
    for p, want in EXPECTED.items():
        have = deb_files(debs[p])
        missing = [w for w in want if w not in have]
        assert not missing, (p, missing, have)
    info = run(["dpkg-deb", "-f", debs["libshmfs-dev"], "Depends"]).stdout
    assert re.search(r"libshmfs1 \(= 0\.1\.0\)", info), info
    info = run(["dpkg-deb", "-f", debs["shmfs"], "Depends"]).stdout
    assert "fuse3" in info and "libfuse3-3" in info, info
    # the shared library is known to dpkg-shlibdeps by its symbols file
    r = run(["dpkg-deb", "--ctrl-tarfile", debs["libshmfs1"]])
    ctrl = subprocess.run(["tar", "-tf", "-"], input=r.stdout,
                          capture_output=True, text=True).stdout
    assert "./symbols" in ctrl.split(), ctrl


def test_installed_daemon_man_pages_and_pkg_config(system):
    r = run(["shmfs", "--version"])
    assert r.returncode == 0 and "shmfs version 0.1.0" in r.stdout + r.stderr
    assert run(["sh", "-c", "command -v shmfs"]).stdout.strip() in \
        ("/usr/bin/shmfs", "/bin/shmfs")
    for page, sec in (("shmfs", "1"), ("libshmfs", "3")):
        r = run(["man", "-w", sec, page])
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().startswith("/usr/share/man/man%s/" % sec)
        r = run(["man", "-P", "cat", sec, page],
                env=dict(os.environ, MANWIDTH="80", LANG="C.UTF-8"))
        assert r.returncode == 0 and "SYNOPSIS" in r.stdout, r.stderr
    env = dict(os.environ)
    env.pop("PKG_CONFIG_PATH", None)
    r = run(["pkg-config", "--libs", "shmfs"], env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["-lshmfs"]
    r = run(["pkg-config", "--modversion", "shmfs"], env=env)
    assert r.stdout.strip() == "0.1.0"


def test_mount_t_fuse_shmfs_fstab_and_a_program_built_against_the_packages(system, tmp_path):
    mnt = tempfile.mkdtemp(prefix="shmfs-deb-")
    os.chmod(mnt, 0o755)
    env = dict(os.environ, SHMFS_ROOT=mnt)
    env.pop("PKG_CONFIG_PATH", None)
    env.pop("LD_PRELOAD", None)
    pid = None
    try:
        r = run(["mount", "-t", "fuse.shmfs", "shmfs", mnt, "-o",
                 "allow_other"])
        assert r.returncode == 0, r.stderr
        assert ismounted(mnt)
        table = os.readlink(os.path.join(mnt, ".table"))
        pid = int(table.rsplit(".", 1)[1])
        assert os.readlink("/proc/%d/exe" % pid) == "/usr/bin/shmfs"
        # a program built with pkg-config against libshmfs-dev
        flags = run(["pkg-config", "--cflags", "--libs", "shmfs"],
                    env=env).stdout.split()
        exe = str(tmp_path / "shmfs_example")
        r = run(["cc", "-Wall", "-Wextra", "-Werror", "-o", exe,
                 os.path.join(REPO, "examples", "shmfs_example.c")] + flags)
        assert r.returncode == 0, r.stderr
        r = run([exe], env=env)
        assert r.returncode == 0, r.stderr
        assert re.fullmatch(EXAMPLE_OUTPUT, r.stdout), r.stdout
        needed = run(["ldd", exe]).stdout
        m = re.search(r"libshmfs\.so\.1 => (\S+)", needed)
        assert m and os.path.realpath(m.group(1)) == LIB + "/libshmfs.so.1", \
            needed
        # an unmodified SysV program through the preload library
        r = run(["ipcmk", "-M", "4096"], env=dict(env, LD_PRELOAD=PRELOAD))
        assert r.returncode == 0, r.stderr
        shmid = int(r.stdout.split()[-1])
        assert os.path.exists(os.path.join(mnt, ".id", str(shmid)))
        r = run(["umount", mnt])
        assert r.returncode == 0, r.stderr
        assert not ismounted(mnt)
        deadline = time.monotonic() + 30
        while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists("/proc/%d" % pid), "daemon still running"
        # a line in fstab (here an fstab of the test's own: mount -T)
        fstab = tmp_path / "fstab"
        fstab.write_text("shmfs %s fuse.shmfs allow_other,shmmni=64 0 0\n" % mnt)
        r = run(["mount", "-T", str(fstab), mnt])
        assert r.returncode == 0, r.stderr
        assert ismounted(mnt)
        pid = int(os.readlink(os.path.join(mnt, ".table")).rsplit(".", 1)[1])
        r = run(["ipcs", "-m", "-l"], env=dict(env, LD_PRELOAD=PRELOAD))
        assert re.search(r"max number of segments = 64$", r.stdout, re.M), \
            r.stdout + r.stderr
        r = run(["umount", mnt])
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 30
        while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists("/proc/%d" % pid), "daemon still running"
    finally:
        if ismounted(mnt):
            run(["umount", "-l", mnt])
        if pid and os.path.exists("/proc/%d" % pid):
            os.kill(pid, 9)
        if pid:
            try:
                os.unlink("/run/shmfs/table.%d" % pid)
            except OSError:
                pass
        os.rmdir(mnt)


def test_purge_leaves_nothing_behind(debs, system):
    files = {p: deb_files(debs[p]) for p in PACKAGES}
    r = dpkg("-P", *PACKAGES)
    system["purged"] = True
    assert r.returncode == 0, r.stdout + r.stderr
    for p in PACKAGES:
        assert run(["dpkg-query", "-W", p]).returncode != 0, \
            "%s still known to dpkg" % p
        left = [f for f in files[p] if os.path.lexists(f)]
        assert left == [], (p, left)
        assert glob.glob("/var/lib/dpkg/info/%s.*" % p) == []
        assert glob.glob("/var/lib/dpkg/info/%s:*" % p) == []
    for d in ("/usr/share/doc/shmfs", "/usr/share/doc/libshmfs1",
              "/usr/share/doc/libshmfs-dev", LIB + "/shmfs",
              "/etc/systemd/system/multi-user.target.wants/shm.mount"):
        assert not os.path.lexists(d), d
    env = dict(os.environ)
    env.pop("PKG_CONFIG_PATH", None)
    assert run(["pkg-config", "--exists", "shmfs"], env=env).returncode != 0
    assert shmfs_paths() == system["paths"]
