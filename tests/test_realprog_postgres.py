"""PostgreSQL, unmodified, on shmfs through libshmfs-preload.so.

With shared_memory_type = sysv, PostgreSQL keeps all its main shared
memory in one SysV segment, keyed by the data directory's inode, that
the postmaster creates and every backend inherits across fork; with
mmap (the default) it still makes a small SysV segment as an interlock.
On start it finds a segment left by a crashed server through
postmaster.pid and shmget, and judges it by IPC_STAT's shm_nattch: in use
(refuse to start) or abandoned (IPC_RMID it and go on).  On a clean stop
the postmaster detaches and removes its segment.

The servers run as an unprivileged user (tests/realprog.py, PgServer)
with a data directory and a unix socket in a temporary directory of
their own; the mount is the test's own daemon, with -o verbose so that a
request the daemon refuses shows in its log.
"""

import os
import re
import signal

import pytest

import shmfs_client
from conftest import DATA_PATHS, until
from realprog import kernel_segments, pg_bindir, pg_factory, sysv_maps  # noqa: F401

SHM_SYSCALL_RE = re.compile(r"\b(shmget|shmat|shmdt|shmctl)\(")


# -- helpers -------------------------------------------------------------------

def shm_calls(path):
    with open(path, errors="replace") as f:
        return [ln for ln in f.read().splitlines() if SHM_SYSCALL_RE.search(ln)]


def segments(root):
    """{key name: [shmid names]} of a mount."""
    return {k: sorted(os.listdir(os.path.join(root, k)))
            for k in shmfs_client.key_dirs(root)}


def attached_pids(root, key, shmid):
    """{pid: attaches} from the segment's user.shm.pids."""
    path = shmfs_client.seg_path(root, key, shmid)
    text = os.getxattr(path, "user.shm.pids").decode().strip()
    out = {}
    for item in re.split(r"[\s,]+", text):
        if item:
            pid, _, n = item.partition(":")
            out[int(pid)] = int(n or 1)
    return out


def maps_segment(pid, root, shmid):
    """Whether process pid has shmid of the mount at root mapped."""
    name = " %s/.id/%d\n" % (root, shmid)
    try:
        with open("/proc/%d/maps" % pid) as f:
            return any(ln.endswith(name) for ln in f)
    except OSError:
        return False


def ipc_stat(root, shmid):
    with shmfs_client.Client(root) as c:
        return c.stat(shmid)


def stat_errno(root, shmid):
    with shmfs_client.Client(root) as c:
        return shmfs_client.catch(c.stat, shmid)


def assert_nattch_is_the_servers(m, pg):
    """shm_nattch of the main segment equals the number of the server's
    processes, and user.shm.pids names exactly them (a backend or an
    autovacuum worker may come or go meanwhile: poll)."""
    key, shmid = pg.shm
    seen = {}

    def agree():
        procs = pg.pids()
        seen.update(procs=procs, nattch=ipc_stat(m.root, shmid)["nattch"],
                    pids=attached_pids(m.root, key, shmid))
        return procs == set(seen["pids"]) and \
            seen["nattch"] == sum(seen["pids"].values()) == len(procs) and \
            procs == pg.pids()

    assert until(agree, 10), seen


def assert_not_on_the_kernel(pg, kernel_before):
    """No kernel segment came with the server: none with its key, none
    made by one of its processes, no process of it maps one."""
    key = pg.shm[0]
    pids = pg.known_pids | pg.pids()
    new = [s for s in kernel_segments()
           if s["shmid"] not in {b["shmid"] for b in kernel_before} and
           (s["key"] == key or s["cpid"] in pids or s["lpid"] in pids)]
    assert new == [], new
    for pid in pids:
        assert sysv_maps(pid) == [], (pid, sysv_maps(pid))


def refused(m, pg):
    """The requests of the server's user the daemon refused (-o verbose
    logs each one); the test's own probes run as root."""
    return [ln for ln in m.stderr_text().splitlines()
            if " uid %d: " % pg.user.pw_uid in ln or "not logged" in ln]


def assert_gone(m, shmid):
    """The segment went (IPC_RMID by the postmaster: a segment nobody
    removes stays): no key directory, IPC_STAT says EINVAL, the daemon
    holds no attach."""
    assert segments(m.root) == {}
    assert stat_errno(m.root, shmid) == "EINVAL"
    st = m.stats_when(shmids=0, attaches=0)
    assert (st["shmids"], st["attaches"]) == (0, 0), st


@pytest.fixture(params=sorted(DATA_PATHS))
def mount(request, shmfs_factory):
    m = shmfs_factory(["-o", "verbose"] + DATA_PATHS[request.param])
    m.data_path = request.param
    return m


@pytest.fixture
def vmount(shmfs_factory):
    return shmfs_factory(["-o", "verbose"])


# -- the tests -------------------------------------------------------------------

def test_postgres_sysv_runs_pgbench_and_restarts(mount, pg_factory, tmp_path):
    """The main segment on shmfs: SQL and pgbench run, a clean stop
    removes the segment, the same data directory starts again."""
    m = mount
    kernel_before = kernel_segments()
    pg = pg_factory(m.root, m.build)
    strace_log = str(tmp_path / "strace.log")
    pg.start(strace_log=strace_log)

    key, shmid = pg.shm
    # PostgreSQL keys its segment with the data directory's inode.
    assert key == shmfs_client.s32(os.stat(pg.data).st_ino)
    assert segments(m.root) == {shmfs_client.key_name(key): [str(shmid)]}
    st = os.stat(shmfs_client.seg_path(m.root, key, shmid))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == \
        (pg.user.pw_uid, pg.user.pw_gid, 0o600)
    assert st.st_size > 16 << 20        # shared_buffers and the rest
    ds = ipc_stat(m.root, shmid)
    assert (ds["key"], ds["segsz"], ds["cpid"]) == (key, st.st_size, pg.pid)
    assert_nattch_is_the_servers(m, pg)
    assert_not_on_the_kernel(pg, kernel_before)

    assert pg.query("create table t (i int primary key, s text)") == ""
    pg.query("insert into t select g, md5(g::text) "
             "from generate_series(1, 10000) g")
    assert pg.query("select count(*), sum(i), min(s) < max(s) from t") == \
        "10000|50005000|t"

    pg.pgbench("-i", "-q", "-s", "1")
    r = pg.pgbench("-c", "4", "-j", "2", "-T", "3", "-n")
    done = int(re.search(r"actually processed: (\d+)", r.stdout).group(1))
    failed = int(re.search(r"failed transactions: (\d+)", r.stdout).group(1))
    assert done > 100 and failed == 0, r.stdout
    assert pg.query("select count(*) from pgbench_history") == str(done)
    assert_nattch_is_the_servers(m, pg)
    assert_not_on_the_kernel(pg, kernel_before)

    assert pg.stop() == 0
    assert pg.wait_gone(), pg.pids()
    assert_gone(m, shmid)
    # strace -f saw every process of the server: none made a shm syscall.
    assert shm_calls(strace_log) == []

    # The same data directory, started again.
    pg.start()
    key2, shmid2 = pg.shm
    assert key2 == key and shmid2 != shmid
    assert segments(m.root) == {shmfs_client.key_name(key): [str(shmid2)]}
    assert "database system was shut down at" in pg.log_text()
    assert pg.query("select count(*), sum(i) from t") == "10000|50005000"
    assert pg.query("select count(*) from pgbench_accounts") == "100000"
    assert_nattch_is_the_servers(m, pg)
    assert pg.stop() == 0
    assert pg.wait_gone(), pg.pids()
    assert_gone(m, shmid2)
    assert_not_on_the_kernel(pg, kernel_before)
    assert refused(m, pg) == []


def test_postgres_judges_a_crashed_servers_segment_by_nattch(vmount,
                                                             pg_factory):
    """A postmaster SIGKILLed with its children stopped leaves its segment
    attached: the next start reads shm_nattch through IPC_STAT and refuses.
    Once the children are gone, nattch reads 0: the next start removes the
    old segment (IPC_RMID), makes a new one and recovers."""
    m = vmount
    pg = pg_factory(m.root, m.build)
    pg.start()
    key, shmid = pg.shm
    pg.query("create table t as select g as i from generate_series(1, 1000) g")
    pg.query("checkpoint")

    children = pg.kill(signal.SIGKILL, stop_children=True)
    # A backend whose client has just gone may have detached (PostgreSQL
    # detaches at proc_exit) before its SIGSTOP took: it stops unattached.
    children = [p for p in children if maps_segment(p, m.root, shmid)]
    assert children, "the postmaster had no attached children"
    until(lambda: ipc_stat(m.root, shmid)["nattch"] == len(children), 5)
    assert ipc_stat(m.root, shmid)["nattch"] == len(children)
    assert set(attached_pids(m.root, key, shmid)) == set(children)

    log = pg.start_fails()
    assert "pre-existing shared memory block (key %s, ID %s) is still in " \
        "use" % pg.shm_text in log, log
    # The refused postmaster attached to look, and detached again.
    assert segments(m.root) == {shmfs_client.key_name(key): [str(shmid)]}
    assert until(lambda: ipc_stat(m.root, shmid)["nattch"] == len(children), 5)

    for p in children:
        os.kill(p, signal.SIGKILL)
        os.kill(p, signal.SIGCONT)
    assert pg.wait_gone(), pg.pids()
    # Nobody removed it: it stays, unattached.
    assert until(lambda: ipc_stat(m.root, shmid)["nattch"] == 0, 5), \
        ipc_stat(m.root, shmid)
    assert segments(m.root) == {shmfs_client.key_name(key): [str(shmid)]}

    pg.start()
    key2, shmid2 = pg.shm
    assert key2 == key and shmid2 != shmid
    assert stat_errno(m.root, shmid) == "EINVAL"       # IPC_RMID'd
    assert segments(m.root) == {shmfs_client.key_name(key): [str(shmid2)]}
    assert "not properly shut down; automatic recovery in progress" in \
        pg.log_text()
    assert pg.query("select count(*), sum(i) from t") == "1000|500500"
    assert_nattch_is_the_servers(m, pg)
    assert pg.stop() == 0
    assert pg.wait_gone(), pg.pids()
    assert_gone(m, shmid2)
    # shmget(IPC_CREAT | IPC_EXCL) of the old key may say EEXIST; nothing
    # else may fail
    assert [ln for ln in refused(m, pg) if "File exists" not in ln] == []


def test_postgres_mmap_interlock_and_sysv_dsm(vmount, pg_factory, tmp_path):
    """shared_memory_type = mmap (PostgreSQL's default) keeps only a small
    interlock segment in SysV; dynamic_shared_memory_type = sysv puts the
    dynamic segments (the control segment, a parallel query's) there too:
    parallel workers attach to them by shmid."""
    m = vmount
    kernel_before = kernel_segments()
    pg = pg_factory(m.root, m.build, shared_memory_type="mmap",
                    dynamic_shared_memory_type="sysv",
                    max_parallel_workers_per_gather=2,
                    parallel_setup_cost=0, parallel_tuple_cost=0,
                    min_parallel_table_scan_size=0)
    strace_log = str(tmp_path / "strace.log")
    pg.start(strace_log=strace_log)
    key, shmid = pg.shm
    segs = segments(m.root)
    main = shmfs_client.key_name(key)
    assert segs[main] == [str(shmid)]
    # the interlock: a PGShmemHeader, no more
    assert os.stat(shmfs_client.seg_path(m.root, key, shmid)).st_size < 4096
    # the dynamic shared memory control segment (and the cumulative
    # statistics' first dynamic area, made by the startup process), with
    # keys of their own: all of the server's
    assert len(segs) >= 2, segs
    # dsm_impl_sysv makes a segment with shmget and then attaches it: one
    # caught between the two reads nattch 0 for a moment
    with shmfs_client.Client(m.root) as c:
        for k, ids in segs.items():
            for i in ids:
                seen = {}

                def owned_and_attached():
                    ds = seen["ds"] = c.stat(int(i))
                    return ds["uid"] == pg.user.pw_uid and \
                        ds["mode"] & 0o777 == 0o600 and ds["nattch"] > 0
                assert until(owned_and_attached, 10), (k, seen)
    assert_nattch_is_the_servers(m, pg)
    assert_not_on_the_kernel(pg, kernel_before)

    pg.query("create table t as select g as i from generate_series(1, 200000) g")
    pg.query("analyze t")
    plan = pg.query("explain (analyze, costs off, timing off) "
                    "select count(*), sum(i) from t")
    assert re.search(r"Workers Launched: [12]", plan), plan
    assert pg.query("select count(*), sum(i) from t") == \
        "200000|20000100000"
    assert_not_on_the_kernel(pg, kernel_before)

    assert pg.stop() == 0
    assert pg.wait_gone(), pg.pids()
    assert_gone(m, shmid)
    assert shm_calls(strace_log) == []
    assert refused(m, pg) == []


def test_postgres_on_the_kernel_baseline(pg_factory, tmp_path):
    """The same server without the preload library: its segment is the
    kernel's, and strace sees its shm calls (what the checks above would
    see if any call escaped shmfs)."""
    if not os.path.exists("/proc/sysvipc/shm"):
        pytest.skip("this kernel has no SysV shared memory to compare with")
    pg = pg_factory(None)
    strace_log = str(tmp_path / "strace.log")
    pg.start(strace_log=strace_log)
    key, shmid = pg.shm
    mine = [s for s in kernel_segments() if s["shmid"] == shmid]
    assert [(s["key"], s["cpid"]) for s in mine] == [(key, pg.pid)]
    assert sysv_maps(pg.pid)
    assert pg.query("select 1") == "1"
    assert pg.stop() == 0
    assert pg.wait_gone()
    assert [s for s in kernel_segments() if s["shmid"] == shmid] == []
    calls = "\n".join(shm_calls(strace_log))
    for call in ("shmget", "shmat", "shmdt", "shmctl"):
        assert call + "(" in calls, calls
    assert "IPC_RMID" in calls, calls


def test_postgres_serves_across_daemon_kills_and_an_upgrade(
        shmfs_factory, pg_factory):
    """The shmfs server SIGKILLed three times and upgraded once while
    pgbench runs against PostgreSQL on shmfs: no transaction fails, the
    segment keeps its shmid and its nattch (the server's processes), a new
    connection starts (shmget and shmat of the existing segment), and a
    clean stop removes the segment."""
    import subprocess
    import threading
    import time
    m = shmfs_factory(["-o", "verbose"])
    pg = pg_factory(m.root, m.build)
    pg.start()
    m.expect_exit = -signal.SIGKILL  # the first kill is of the first server
    key, shmid = pg.shm
    pg.pgbench("-i", "-q", "-s", "1")
    out = {}

    def bench():
        out["r"] = pg.pgbench("-c", "4", "-j", "2", "-T", "8", "-n")
    t = threading.Thread(target=bench)
    t.start()
    servers = [m.server_pid()]
    try:
        for i in range(4):
            time.sleep(1.5)
            if i == 2:
                r = subprocess.run([os.path.join(m.build, "shmfs"),
                                    "--upgrade", m.root],
                                   capture_output=True, text=True, timeout=60)
                assert r.returncode == 0, r.stderr
            else:
                os.kill(m.server_pid(), signal.SIGKILL)
            assert until(lambda: m.server_pid() not in servers, 10)
            servers.append(m.server_pid())
            # a new connection: a backend forks and attaches meanwhile
            assert pg.query("select count(*) from pgbench_branches") == "1"
    finally:
        t.join()
    r = out["r"]
    done = int(re.search(r"actually processed: (\d+)", r.stdout).group(1))
    failed = int(re.search(r"failed transactions: (\d+)", r.stdout).group(1))
    assert done > 50 and failed == 0, r.stdout
    assert len(set(servers)) == 5
    assert pg.shm == (key, shmid)
    assert_nattch_is_the_servers(m, pg)
    assert pg.query("select count(*) from pgbench_history") == str(done)
    assert pg.stop() == 0
    assert pg.wait_gone(), pg.pids()
    assert_gone(m, shmid)
    assert refused(m, pg) == []
