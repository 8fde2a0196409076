"""The load test in short, and proofs that its checks can fail.

tests/stress.py is the load test itself (`make stress`, and a 10-second
form in `make check`); here it runs for a few seconds on the fixture's
daemon (so also under `make check-asan` and `make check-valgrind`), and
the checker and the stress program are shown to catch what they claim
to: an attach left behind, a removed segment still held, wrong data.

    SHMFS_SEED=N   the seed of the short load (printed on failure)
"""

import os
import random
import re
import subprocess

import pytest

import stress

PAGE = stress.PAGE


def _failed(res):
    return [n for n, ok, _ in res if not ok]


def test_short_load_keeps_every_invariant(shmfs):
    seed = int(os.environ.get("SHMFS_SEED") or random.randrange(1, 10**9))
    rss0 = stress.vm_kb(shmfs.proc.pid).get("VmRSS")
    secs = 4
    with stress.Watchdog(shmfs.root, shmfs.proc.pid,
                         stress.hang_limit(secs)) as wd:
        rc, out, result = stress.run_stress(shmfs.build, shmfs.root, 4, secs,
                                            seed, users=os.geteuid() == 0)
        res = [] if wd.fired else (
            stress.check_invariants(shmfs.root, shmfs.proc.pid, rss0) +
            stress.remove_all(shmfs.root))
    if wd.fired:
        pytest.fail("seed %d: the daemon hangs (deadlock):\n%s\n%s"
                    % (seed, wd.text(), out), pytrace=False)
    assert rc == 0 and result and result["violations"] == 0, \
        "seed %d:\n%s" % (seed, out)
    assert result["unexpected"] == 0 and result["ops"] > 0, out
    assert result["children"] > 0, out
    bad = ["%s: %s" % (n, d) for n, ok, d in res if not ok]
    assert not bad, "seed %d:\n%s" % (seed, "\n".join(bad))


def test_checker_flags_an_attach_left_behind(shmfs):
    """A client still attached to a removed segment: nattch, SHM_DEST,
    attaches and processes are all reported; once it is gone, nothing."""
    c = shmfs.client()
    shmid = c.shmget(0, 2 * PAGE, 0o1600)
    a = c.attach(shmid)
    a.write(0, b"left behind")
    c.rmid(shmid)
    bad = _failed(stress.check_invariants(shmfs.root, serve=False,
                                          settle_timeout=0.2))
    for name in ("nattch 0 on every status line",
                 "every removed segment freed (no SHM_DEST line)",
                 "stats attaches 0", "stats processes 0"):
        assert name in bad, bad
    a.detach()
    c.close()
    assert _failed(stress.check_invariants(shmfs.root)) == []
    assert _failed(stress.remove_all(shmfs.root)) == []


def test_stress_program_catches_wrong_data(shmfs):
    """-X makes each worker store one word no writer would: reported as
    wrong data, and the run fails."""
    rc, out, result = stress.run_stress(shmfs.build, shmfs.root, 2, 2, 5,
                                        extra=["-X", "-F"])
    assert rc == 1 and result["violations"] >= 1, out
    assert re.search(r"VIOLATION .*wrong data", out), out
    stress.remove_all(shmfs.root)


def _kernel_segments(keys):
    with open("/proc/sysvipc/shm") as f:
        lines = f.read().splitlines()[1:]
    return [int(l.split()[1]) for l in lines
            if l.split() and (int(l.split()[0]) & 0xffffffff) in keys]


def test_stress_program_finds_nothing_wrong_on_the_kernel():
    """The same load on the kernel's own SysV shm: its idea of the
    expected outcomes is Linux's (no violation, no unexpected errno)."""
    prog = stress.stress_prog(stress.default_build())
    if not os.path.exists(prog):
        pytest.skip("%s not built" % prog)
    base = 0x6b000000 + random.randrange(0x10000) * 0x200
    keys = set(range(base, base + 8)) | set(range(base + 0x100, base + 0x200))
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    argv = [prog, "-n", "4", "-t", "2", "-s", "3", "-b", hex(base)]
    if os.geteuid() == 0:
        argv.append("-u")
    try:
        r = subprocess.run(argv, env=env, capture_output=True, text=True,
                           timeout=120)
    finally:
        for shmid in _kernel_segments(keys):
            subprocess.run(["ipcrm", "-m", str(shmid)], capture_output=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "violations: 0" in r.stdout and "UNEXPECTED" not in r.stdout, \
        r.stdout
