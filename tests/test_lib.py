"""libshmfs as its users meet it: the example program, a program built
with pkg-config against an installed copy, unmodified SysV programs under
LD_PRELOAD (no shm syscall reaches the kernel; results equal the kernel's),
and the errors a program sees with no daemon (ENOSYS) or a dead one
(ENOTCONN)."""

import errno
import os
import random
import re
import subprocess

import pytest

from conftest import kill_daemon_under

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
SHM_SYSCALLS = ("shmget", "shmat", "shmdt", "shmctl")


# -- helpers -------------------------------------------------------------------

def build_dir():
    return os.path.abspath(os.environ.get("SHMFS_BUILD") or
                           os.path.join(REPO, "build"))


def built(build, *parts):
    path = os.path.join(build, *parts)
    if not os.path.exists(path):
        pytest.fail("%s is not built (run make all)" % path, pytrace=False)
    return path


def sanitizer_runtimes(obj):
    """{name: path} of the sanitizer runtimes a shared object needs; an
    ASan-built library only loads when libasan comes first."""
    out = subprocess.run(["ldd", obj], capture_output=True, text=True).stdout
    return {m.group(1): m.group(2) for m in
            re.finditer(r"\b(lib(?:a|ub)san)\.so\S* => (\S+)", out)}


def no_leak_check(env):
    """LeakSanitizer cannot run under ptrace, nor where clone is refused."""
    opts = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "detect_leaks=0"
    return env


def preload_env(build, root, **extra):
    lib = built(build, "libshmfs-preload.so")
    pre = [p for n, p in sanitizer_runtimes(lib).items() if n == "libasan"]
    env = dict(os.environ, LD_PRELOAD=" ".join(pre + [lib]))
    env.pop("SHMFS_DEBUG", None)
    if root is None:
        env.pop("SHMFS_ROOT", None)
    else:
        env["SHMFS_ROOT"] = root
    env.update(extra)
    return env


def lib_env(root, **extra):
    env = dict(os.environ, SHMFS_ROOT=root)
    env.pop("SHMFS_DEBUG", None)
    env.update(extra)
    return env


def run(argv, env, timeout=120, **kw):
    return subprocess.run([str(a) for a in argv], env=env, capture_output=True,
                          text=True, timeout=timeout, **kw)


def strace_calls(argv, env, tmp_path, timeout=120):
    """Runs argv under strace -f for the four shm syscalls; returns the
    CompletedProcess and the syscall lines strace saw."""
    log = tmp_path / "strace.log"
    r = run(["strace", "-f", "-qq", "-o", log,
             "-e", "trace=" + ",".join(SHM_SYSCALLS)] + argv,
            no_leak_check(dict(env)), timeout)
    calls = [line for line in log.read_text().splitlines()
             if re.search(r"\b(%s)\(" % "|".join(SHM_SYSCALLS), line)]
    return r, calls


def kernel_key():
    """A key with no kernel segment (nor key + 1), for running a program on
    the kernel."""
    with open("/proc/sysvipc/shm") as f:
        used = {int(line.split()[0]) for line in f.readlines()[1:]}
    while True:
        key = random.randrange(0x10000000, 0x7ffffff0)
        if key not in used and key + 1 not in used:
            return key


def visible_names(root):
    return sorted(n for n in os.listdir(root) if not n.startswith("."))


# -- the example ---------------------------------------------------------------

EXAMPLE_OUTPUT = r"""created key 0x5348464d shmid (\d+)
parent wrote: hello through shmfs
nattch after shmat: 1
child read: hello through shmfs
nattch in the child: 2
nattch after the child exited: 1
nattch after shmdt: 0
removed shmid \1
"""


def test_example_runs_a_segment_through_its_life(shmfs):
    r = run([built(shmfs.build, "progs", "shmfs_example")], lib_env(shmfs.root))
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(EXAMPLE_OUTPUT, r.stdout), r.stdout
    assert r.stderr == ""
    # Removed and detached: nothing left under the mount.
    assert visible_names(shmfs.root) == ["status"]
    assert os.listdir(shmfs.path(".id")) == []


def test_example_with_its_own_key_leaves_the_mount_clean(shmfs):
    ex = built(shmfs.build, "progs", "shmfs_example")
    for key in ("0x1", "0x7fffffff"):
        r = run([ex, key], lib_env(shmfs.root))
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("created key %#010x " % int(key, 16))
    assert visible_names(shmfs.root) == ["status"]


# -- installed copy, pkg-config ------------------------------------------------

HELLO_C = r"""
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <shmfs.h>

int main(void)
{
	struct shmid_ds ds;
	int id = shmfs_shmget(IPC_PRIVATE, 100, IPC_CREAT | 0600);
	char *p;

	if (id < 0) {
		printf("shmget: %s\n", strerror(errno));
		return 1;
	}
	p = shmfs_shmat(id, NULL, 0);
	if (p == (void *)-1)
		return 2;
	strcpy(p, "installed");
	if (shmfs_shmctl(id, IPC_STAT, &ds) != 0 || ds.shm_nattch != 1 ||
	    ds.shm_segsz != 100)
		return 3;
	if (shmfs_shmdt(p) != 0 || shmfs_shmdt(p) != -1 || errno != EINVAL)
		return 4;
	if (shmfs_shmctl(id, IPC_RMID, NULL) != 0)
		return 5;
	printf("installed ok\n");
	return 0;
}
"""


def makefile_version():
    with open(os.path.join(REPO, "Makefile")) as f:
        return re.search(r"^VERSION\s*:?=\s*(\S+)", f.read(), re.M).group(1)


def sanitize_flags(lib):
    rt = sanitizer_runtimes(lib)
    return (["-fsanitize=address"] if "libasan" in rt else []) + \
        (["-fsanitize=undefined"] if "libubsan" in rt else [])


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """make install DESTDIR=... PREFIX=/usr, once for this module."""
    dest = tmp_path_factory.mktemp("destdir")
    build = build_dir()
    r = subprocess.run(["make", "-C", REPO, "--no-print-directory", "install",
                        "DESTDIR=%s" % dest, "PREFIX=/usr", "B=%s" % build],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, "make install failed:\n" + r.stdout + r.stderr
    return dest


def pkg_config(dest, *args):
    env = dict(os.environ,
               PKG_CONFIG_LIBDIR=str(dest / "usr/lib/pkgconfig"),
               PKG_CONFIG_PATH="",
               PKG_CONFIG_SYSROOT_DIR=str(dest),
               # -I/usr/include and -L/usr/lib are system paths: keep them so
               # that the sysroot prefix reaches the compiler.
               PKG_CONFIG_ALLOW_SYSTEM_CFLAGS="1",
               PKG_CONFIG_ALLOW_SYSTEM_LIBS="1")
    r = subprocess.run(["pkg-config"] + list(args) + ["shmfs"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_installed_files_and_exports(installed):
    lib = installed / "usr/lib"
    assert os.readlink(lib / "libshmfs.so") == "libshmfs.so.1"
    for f in ("libshmfs.so.1", "libshmfs.a", "libshmfs-preload.so",
              "pkgconfig/shmfs.pc"):
        assert (lib / f).is_file(), f
    assert (installed / "usr/include/shmfs.h").is_file()
    assert (installed / "usr/share/man/man3/libshmfs.3").is_file()
    dyn = subprocess.run(["readelf", "-d", lib / "libshmfs.so.1"],
                         capture_output=True, text=True).stdout
    assert "Library soname: [libshmfs.so.1]" in dyn

    def exported(path):
        out = subprocess.run(["nm", "-D", "--defined-only", path],
                             capture_output=True, text=True).stdout
        return {ln.split()[-1].split("@")[0] for ln in out.splitlines()
                if ln.split()[1:2] and ln.split()[1] in "TDBWVRi"}

    api = {"shmfs_shmget", "shmfs_shmat", "shmfs_shmdt", "shmfs_shmctl"}
    assert exported(lib / "libshmfs.so.1") == api
    assert {"shmget", "shmat", "shmdt", "shmctl"} <= \
        exported(lib / "libshmfs-preload.so")
    assert pkg_config(installed, "--modversion") == [makefile_version()]


def test_program_built_with_pkg_config_runs(installed, shmfs, tmp_path):
    src = tmp_path / "hello.c"
    src.write_text(HELLO_C)
    lib = installed / "usr/lib"
    cflags = pkg_config(installed, "--cflags")
    libs = pkg_config(installed, "--libs")
    assert cflags == ["-I%s" % (installed / "usr/include")]
    assert libs == ["-L%s" % lib, "-lshmfs"]
    san = sanitize_flags(str(lib / "libshmfs.so.1"))
    exe = tmp_path / "hello"
    r = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", "-o", exe, src] +
                       san + cflags + libs, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = run([exe], lib_env(shmfs.root, LD_LIBRARY_PATH=str(lib)))
    assert (r.returncode, r.stdout, r.stderr) == (0, "installed ok\n", "")

    # The static library, with what pkg-config --static adds.
    exe_a = tmp_path / "hello-static"
    static = pkg_config(installed, "--static", "--libs")
    r = subprocess.run(["cc", "-o", exe_a, src] + san + cflags +
                       [str(lib / "libshmfs.a")] +
                       [f for f in static if f not in ("-lshmfs",)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = run([exe_a], lib_env(shmfs.root))
    assert (r.returncode, r.stdout, r.stderr) == (0, "installed ok\n", "")
    assert visible_names(shmfs.root) == ["status"]


def test_header_works_from_cplusplus(installed, tmp_path):
    src = tmp_path / "t.cc"
    src.write_text('#include <shmfs.h>\n'
                   'int main() { return shmfs_shmdt(nullptr) == -1 ? 0 : 1; }\n')
    lib = installed / "usr/lib"
    r = subprocess.run(["c++", "-Wall", "-Werror", "-o", tmp_path / "t", src] +
                       sanitize_flags(str(lib / "libshmfs.so.1")) +
                       pkg_config(installed, "--cflags", "--libs"),
                       capture_output=True, text=True)
    if r.returncode != 0 and "not found" in r.stderr:
        pytest.skip("no C++ compiler")
    assert r.returncode == 0, r.stderr


# -- unmodified programs under LD_PRELOAD --------------------------------------

def test_preload_keeps_every_shm_call_out_of_the_kernel(shmfs, tmp_path):
    plain = built(shmfs.build, "progs", "sysv_plain")
    key = "0x5eed0001"
    # The same program on the kernel: strace must see its calls, or the
    # check below would prove nothing.
    if os.path.exists("/proc/sysvipc/shm"):
        kkey = "%#x" % kernel_key()
        r, calls = strace_calls([plain, "life", kkey], dict(os.environ),
                                tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert len(calls) > 10, calls

    r, calls = strace_calls([plain, "life", key],
                            preload_env(shmfs.build, shmfs.root), tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) > 10 and all(ln.startswith("ok ") for ln in lines), \
        r.stdout
    assert calls == []


def test_preload_segment_is_a_file_under_the_mount(shmfs, tmp_path):
    plain = built(shmfs.build, "progs", "sysv_plain")
    r, calls = strace_calls([plain, "keep", "0x1234", "kept in shmfs"],
                            preload_env(shmfs.build, shmfs.root), tmp_path)
    assert r.returncode == 0, r.stderr
    assert calls == []
    shmid = int(r.stdout)
    path = shmfs.path("0x00001234", shmid)
    with open(path, "rb") as f:
        assert f.read(14) == b"kept in shmfs\0"
    assert os.stat(path).st_size == 4096
    # A second program finds it by key, through the mount.
    r = run([plain, "get", "0x1234"], preload_env(shmfs.build, shmfs.root))
    assert r.stdout == "shmid %d\n" % shmid
    os.unlink(path)     # IPC_RMID
    assert visible_names(shmfs.root) == ["status"]


def test_preload_results_equal_the_kernels(shmfs):
    """Everything sysv_semantics prints (results, errno names, IPC_STAT
    fields, nattch across fork, exec, SHM_REMAP, SHM_RDONLY faults) is the
    same under libshmfs-preload.so as on the kernel."""
    sem = built(shmfs.build, "progs", "sysv_semantics")
    if not os.path.exists("/proc/sysvipc/shm"):
        pytest.skip("no kernel SysV shm to compare with")
    key = "%#x" % kernel_key()
    ref = run([sem, key], dict(os.environ))
    assert ref.returncode == 0, ref.stderr
    r = run([sem, key], preload_env(shmfs.build, shmfs.root))
    assert r.returncode == 0, r.stderr

    def faults(out):
        # AddressSanitizer turns the expected SIGSEGV into exit status 1.
        return out.replace("rdonly: child exit 1\n",
                           "rdonly: child killed by SEGV\n").splitlines()

    assert faults(r.stdout) == faults(ref.stdout)


@pytest.mark.parametrize("args", [
    ["many", "2000"],
    ["threads", "8", "300", "40"],
    ["forkfail"],
    ["overlap"],
    ["closeall"],
], ids=["2000-attaches-and-fork", "threads-and-forks", "failed-fork",
        "attach-over-attachments", "child-closes-every-descriptor"])
def test_preload_under_load(shmfs, args):
    env = preload_env(shmfs.build, shmfs.root, SHMFS_DEBUG="1")
    if args[0] == "forkfail":
        no_leak_check(env)
    r = run([built(shmfs.build, "progs", "sysv_stress")] + args, env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok "), r.stdout
    if args[0] not in ("overlap", "closeall"):
        # Debug mode names the mount and has nothing else to report: the
        # daemon counted for each fork what the library holds.
        assert [ln for ln in r.stderr.splitlines()
                if "]: using " not in ln] == []
    assert os.listdir(shmfs.path(".id")) == []


def test_shmseg_limit_is_emfile(shmfs_factory):
    m = shmfs_factory(opts=["-o", "shmseg=3"])
    r = run([built(m.build, "progs", "sysv_stress"), "many", "4"],
            preload_env(m.build, m.root))
    assert r.returncode == 1
    assert r.stdout == "FAIL shmat 3: %s\n" % os.strerror(errno.EMFILE)


# -- no daemon, dead daemon ----------------------------------------------------

def test_no_shmfs_at_root_is_enosys_and_debug_says_why(tmp_path):
    build = build_dir()
    plain = built(build, "progs", "sysv_plain")
    root = str(tmp_path)

    r, calls = strace_calls([plain, "get", "0x77"],
                            preload_env(build, root), tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (1, "errno ENOSYS\n", "")
    assert calls == []      # no fallback to the kernel

    r = run([plain, "get", "0x77"], preload_env(build, root, SHMFS_DEBUG="1"))
    assert r.stdout == "errno ENOSYS\n"
    why = r.stderr.splitlines()[0]
    assert why.startswith("libshmfs-preload[")
    assert "%s/.ctl: open: %s" % (root, os.strerror(errno.ENOENT)) in why
    assert "ENOSYS" in why

    # A .ctl that is not on FUSE.
    (tmp_path / ".ctl").write_text("")
    r = run([plain, "get", "0x77"], preload_env(build, root, SHMFS_DEBUG="1"))
    assert r.stdout == "errno ENOSYS\n"
    assert "%s/.ctl: not on a FUSE file system" % root in r.stderr

    # The library, not only the preload build, and the default /shm.
    ex = built(build, "progs", "shmfs_example")
    r = run([ex], lib_env(root, SHMFS_DEBUG="1"))
    assert r.returncode == 1
    assert r.stderr.startswith("libshmfs[")
    assert "shmfs_example: shmget: %s\n" % os.strerror(errno.ENOSYS) in r.stderr
    if not os.path.exists("/shm/.ctl"):
        env = preload_env(build, None, SHMFS_DEBUG="1")
        r = run([plain, "get", "0x77"], env)
        assert r.stdout == "errno ENOSYS\n"
        assert "/shm/.ctl: open: " in r.stderr


def test_dead_daemon_is_enotconn_and_shmdt_still_works(shmfs_factory):
    m = shmfs_factory(["-o", "no_failover"])
    rc, out, err = kill_daemon_under(
        m, [built(m.build, "progs", "sysv_plain"), "pause", "0x99"],
        "ready\n", env=preload_env(m.build, m.root))
    assert rc == 0, err
    assert out.splitlines() == [
        "memory: cached",
        "shmget: ENOTCONN",
        "shmctl: ENOTCONN",
        "shmat: ENOTCONN",
        "shmdt: ok",
    ]
