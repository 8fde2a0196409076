"""Many processes at once: one segment per key, exactly one IPC_EXCL winner,
nattch exact under concurrent attach/detach, removal racing with use, and a
consistent table (namespace = status = SHM_INFO) afterwards."""

import multiprocessing
import os
import random
import subprocess
import time
import traceback


import shmfs_client as sc
from shmfs_client import IPC_CREAT, IPC_EXCL, IPC_PRIVATE, catch

NPROC = 12
CTX = multiprocessing.get_context("fork")


def _child(fn, i, args, q, barrier):
    # descriptors inherited from the test process are not ours to detach
    del sc._open_objects[:]
    try:
        barrier.wait(30)
        q.put((i, "ok", fn(i, *args)))
    except BaseException:
        q.put((i, "exc", traceback.format_exc()))
    finally:
        sc.close_all()


class Workers:
    """fn(i, *args) in n forked processes released together by a barrier."""

    def __init__(self, n, fn, *args):
        self.n = n
        self.q = CTX.Queue()
        barrier = CTX.Barrier(n)
        self.procs = [CTX.Process(target=_child, args=(fn, i, args, self.q, barrier))
                      for i in range(n)]
        for p in self.procs:
            p.start()

    def collect(self, timeout=120):
        """Results in worker order; fails on any worker's exception."""
        results = {}
        deadline = time.monotonic() + timeout
        try:
            while len(results) < self.n:
                left = deadline - time.monotonic()
                assert left > 0, "workers did not finish in %ds" % timeout
                i, kind, val = self.q.get(timeout=left)
                assert kind == "ok", "worker %d failed:\n%s" % (i, val)
                results[i] = val
        finally:
            for p in self.procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.kill()
                    p.join()
        return [results[i] for i in range(self.n)]


def run_workers(n, fn, *args, timeout=120):
    return Workers(n, fn, *args).collect(timeout)


def check_table_consistent(m, c):
    """Namespace, status file and SHM_INFO describe the same table."""
    info = c.shm_info()
    ids = sorted(int(x) for x in os.listdir(m.path(".id")))
    lines = sc.read_status(m.root).splitlines(True)
    assert lines[0] == sc.STATUS_HEADER
    rows = [sc.parse_status_line(l) for l in lines[1:]]
    assert sorted(r["shmid"] for r in rows) == ids
    assert info["used_ids"] == len(ids)
    by_key = {}
    for name in os.listdir(m.root):
        if name.startswith("0x"):
            files = os.listdir(m.path(name))
            assert files, "empty key directory %s" % name
            by_key[name] = files
            if name != "0x00000000":
                assert len(files) == 1, (name, files)
    for r in rows:
        if not r["mode"] & sc.SHM_DEST:
            assert str(r["shmid"]) in by_key[sc.key_name(r["key"])]
    return rows


# -- workers (run in forked children) ------------------------------------------

def _create_keys(i, root, keys, flags):
    c = sc.Client(root)
    order = list(keys)
    random.Random(i).shuffle(order)
    out = {}
    for k in order:
        try:
            out[k] = c.shmget(k, 4096, flags)
        except OSError as e:
            out[k] = sc.errno_name(e.errno)
    c.close()
    return os.getpid(), out


def _attach_loop(i, root, shmid, rounds, hold_q, go):
    c = sc.Client(root)
    for _ in range(rounds):
        a = c.attach(shmid)
        a.write(i, b"\x01")
        a.detach()
    a = c.attach(shmid)
    hold_q.put(os.getpid())
    go.wait(60)
    a.detach()
    c.close()
    return os.getpid()


def _create_remove(i, root, key, rounds):
    c = sc.Client(root)
    made = 0
    for _ in range(rounds):
        try:
            shmid = c.shmget(key, 4096, IPC_CREAT | 0o600)
        except OSError as e:
            assert sc.errno_name(e.errno) == "ENOSPC", e
            continue
        made += 1
        try:
            if random.random() < 0.5:
                with c.attach(shmid) as a:
                    a.write(0, b"x")
            c.rmid(shmid)
        except OSError as e:
            # someone else removed it first
            assert sc.errno_name(e.errno) in ("EINVAL", "ENOENT", "EIDRM"), e
    c.close()
    return made


def _attach_while_removed(i, root, shmid, rounds):
    c = sc.Client(root)
    ok = gone = 0
    for _ in range(rounds):
        try:
            a = c.attach(shmid)
        except OSError as e:
            assert sc.errno_name(e.errno) in ("ENOENT", "EINVAL", "EIDRM"), e
            gone += 1
            continue
        a.write(0, b"y")
        a.detach()
        ok += 1
    c.close()
    return ok, gone


def _mixed(i, root, rounds):
    c = sc.Client(root)
    rnd = random.Random(i)
    for n in range(rounds):
        op = rnd.randrange(6)
        key = 0x7000 + rnd.randrange(8)
        try:
            if op == 0:
                c.shmget(key, 4096, IPC_CREAT | 0o644)
            elif op == 1:
                c.rmid(c.shmget(key, 0, 0))
            elif op == 2:
                with c.attach(c.shmget(key, 0, 0)) as a:
                    a.write(0, b"m")
            elif op == 3:
                sc.read_status(root)
                os.listdir(root)
            elif op == 4:
                shmid = c.shmget(key, 0, 0)
                os.listxattr(sc.id_path(root, shmid))
                os.stat(sc.seg_path(root, key, shmid))
            else:
                c.shm_info()
                c.info()
        except OSError as e:
            assert sc.errno_name(e.errno) in ("ENOENT", "EINVAL", "EIDRM", "ENODATA"), \
                (op, e)
    c.close()
    return rounds


# -- tests ----------------------------------------------------------------------

def test_racing_creators_on_one_key_get_one_segment(shmfs, client):
    keys = [0x1000 + k for k in range(40)]
    res = run_workers(NPROC, _create_keys, shmfs.root, keys, IPC_CREAT | 0o600)
    for k in keys:
        got = {out[k] for _, out in res}
        assert len(got) == 1, (hex(k), got)
        shmid = got.pop()
        assert isinstance(shmid, int)
        st = client.stat(shmid)
        assert st["key"] == k
        assert st["cpid"] in {pid for pid, _ in res}
        assert os.listdir(shmfs.path(sc.key_name(k))) == [str(shmid)]
    assert client.shm_info()["used_ids"] == len(keys)
    check_table_consistent(shmfs, client)


def test_racing_exclusive_creators_exactly_one_wins(shmfs, client):
    keys = [0x2000 + k for k in range(40)]
    res = run_workers(NPROC, _create_keys, shmfs.root, keys,
                      IPC_CREAT | IPC_EXCL | 0o600)
    for k in keys:
        got = [out[k] for _, out in res]
        wins = [g for g in got if isinstance(g, int)]
        assert len(wins) == 1, (hex(k), got)
        assert sorted(g for g in got if not isinstance(g, int)) == \
            ["EEXIST"] * (NPROC - 1)
        winner = [pid for pid, out in res if isinstance(out[k], int)][0]
        assert client.stat(wins[0])["cpid"] == winner
    assert client.shm_info()["used_ids"] == len(keys)
    check_table_consistent(shmfs, client)


def test_racing_attach_detach_keeps_nattch_exact(shmfs, client):
    shmid = client.shmget(0x3000, 4096, IPC_CREAT | 0o600)
    hold_q = CTX.Queue()
    go = CTX.Event()
    n = 8
    w = Workers(n, _attach_loop, shmfs.root, shmid, 50, hold_q, go)
    try:
        pids = {hold_q.get(timeout=60) for _ in range(n)}
        st = client.stat(shmid)
        assert st["nattch"] == n
        assert st["lpid"] in pids
    finally:
        go.set()
        res = w.collect()
    assert set(res) == pids
    st = client.stat(shmid)
    assert st["nattch"] == 0
    assert st["lpid"] in pids
    with client.attach(shmid) as a:
        assert a.read(0, n) == b"\x01" * n


def test_racing_create_and_remove_of_one_key_leaves_a_sane_table(shmfs_factory):
    m = shmfs_factory(["-o", "shmmni=64"])
    c = m.client()
    made = run_workers(NPROC, _create_remove, m.root, 0x4000, 60)
    assert sum(made) > 0
    rows = check_table_consistent(m, c)
    live = [r for r in rows if r["key"] == 0x4000]
    assert len(live) <= 1
    assert all(r["nattch"] == 0 for r in rows)
    # nothing removed-but-attached may linger once everyone detached
    assert not [r for r in rows if r["mode"] & sc.SHM_DEST]
    for r in live:
        c.rmid(r["shmid"])
    assert c.shm_info()["used_ids"] == 0
    assert m.alive()


def test_racing_attach_against_rmid_frees_after_last_detach(shmfs, client):
    for round_ in range(3):
        shmid = client.shmget(IPC_PRIVATE, 4096, 0o600)
        # fork first, so no worker inherits the parent's attach
        w = Workers(6, _attach_while_removed, shmfs.root, shmid, 40)
        keep = client.attach(shmid)
        time.sleep(0.02)
        client.rmid(shmid)
        keep.detach()
        res = w.collect()
        assert sum(ok for ok, _ in res) > 0
        assert catch(client.stat, shmid) == "EINVAL"
        assert sc.wait_gone(shmfs.id_path(shmid)) == "ENOENT"
    assert client.shm_info()["used_ids"] == 0
    assert sc.read_status(shmfs.root) == sc.STATUS_HEADER


def test_racing_mixed_operations_daemon_survives(shmfs, client):
    run_workers(NPROC, _mixed, shmfs.root, 150)
    rows = check_table_consistent(shmfs, client)
    assert all(r["nattch"] == 0 for r in rows)
    for r in rows:
        client.rmid(r["shmid"])
    assert client.shm_info()["used_ids"] == 0
    assert shmfs.alive()


def test_racing_shell_tools_and_clients(shmfs, client):
    ids = [client.shmget(0x6000 + i, 4096, IPC_CREAT | 0o644) for i in range(10)]
    procs = [subprocess.Popen(["sh", "-c",
                               "for i in 1 2 3 4 5 6 7 8 9 10; do "
                               "ls -lR '%s' >/dev/null; cat '%s/status' >/dev/null;"
                               " getfattr -R -d -m - '%s' >/dev/null 2>&1; done"
                               % (shmfs.root, shmfs.root, shmfs.root)])
             for _ in range(4)]
    try:
        for _ in range(30):
            for shmid in ids:
                with client.attach(shmid) as a:
                    a.write(0, b"t")
    finally:
        for p in procs:
            p.wait(timeout=120)
    for shmid in ids:
        assert client.stat(shmid)["nattch"] == 0
    check_table_consistent(shmfs, client)
