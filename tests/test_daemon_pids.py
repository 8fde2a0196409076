"""user.shm.pids: who is attached, kept exact like nattch (issue 6)."""

import os
import signal
import time

import shmfs_client as sc
from shmfs_client import IPC_CREAT, catch

KEY = 0x51D5


def pids(shmfs, shmid):
    v = os.getxattr(shmfs.id_path(shmid), "user.shm.pids").decode()
    return dict((int(p), int(n)) for p, n in
                (w.split(":") for w in v.split())) if v else {}


def nattch(client, shmid):
    return client.stat(shmid)["nattch"]


def test_pids_lists_every_attacher_with_its_count(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    assert pids(shmfs, shmid) == {}
    a = client.attach(shmid)
    b = client.attach(shmid)
    assert pids(shmfs, shmid) == {os.getpid(): 2}
    a.detach()
    assert pids(shmfs, shmid) == {os.getpid(): 1}
    b.detach()
    assert pids(shmfs, shmid) == {}


def _fork_with_protocol(client, then):
    """fork() as libshmfs does it: counted before fork returns."""
    token, _ = client.fork_prepare()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            client.fork_child(token)
            os.write(w, b"x")
            then()
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"x"     # the child has claimed
    os.close(r)
    return pid


def test_pids_follow_fork_exit_kill_and_exec(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    a = client.attach(shmid)
    me = os.getpid()

    child = _fork_with_protocol(client, lambda: time.sleep(30))
    assert pids(shmfs, shmid) == {me: 1, child: 1}
    assert nattch(client, shmid) == 2
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    assert pids(shmfs, shmid) == {me: 1}

    child = _fork_with_protocol(client, lambda: os._exit(0))
    os.waitpid(child, 0)
    assert pids(shmfs, shmid) == {me: 1}

    child = _fork_with_protocol(
        client, lambda: os.execv("/bin/true", ["true"]))
    os.waitpid(child, 0)
    assert pids(shmfs, shmid) == {me: 1}
    assert nattch(client, shmid) == 1
    a.detach()
    assert pids(shmfs, shmid) == {}


def test_pids_only_for_root_and_the_owner(shmfs, client):
    """The kernel shows no attacher's pid to anyone: read permission
    (IPC_STAT) is not enough, only root, uid and cuid may read them."""
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    a = client.attach(shmid)
    path = shmfs.id_path(shmid)

    def user_reads():
        return shmfs.as_user(["getfattr", "--only-values", "-n",
                              "user.shm.pids", path], uid=1000, gid=1000)

    r = user_reads()
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    client.set(shmid, 0, 0, 0o666)     # may IPC_STAT, may not see who
    r = user_reads()
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    client.set(shmid, 1000, 1000, 0o600)   # the owner
    r = user_reads()
    assert r.returncode == 0 and r.stdout == "%d:1" % os.getpid(), r
    a.detach()
    assert catch(os.getxattr, path, "user.shm.pids") is None


def test_a_refused_pids_read_costs_the_daemon_no_process_table_read(shmfs):
    """Naming a pending fork's child reads its parent's children from the
    host; a caller refused the answer is refused before that: another
    user's reads, as many as it likes, make the daemon read nothing."""
    from test_tally_counts import Steps
    s = Steps(shmfs)
    kid = None
    try:
        shmid = s.value("get", KEY)
        s("at", shmid)
        kid = s.value("fork")           # never claims: its fork pends
        s.value("stat", shmid)          # the parent's own request
        c = shmfs.client()
        try:
            c.set(shmid, 0, 0, 0o666)   # anyone may IPC_STAT, not see who
        finally:
            c.close()
        before = shmfs.stats()["children_reads"]
        assert pids(shmfs, shmid) == {s.pid: 1, kid: 1}
        mine = shmfs.stats()["children_reads"]
        assert mine > before            # root's answer needed the host's
        path = shmfs.id_path(shmid)
        r = shmfs.as_user(["sh", "-c", 'for i in 1 2 3 4 5 6 7 8; do '
                           'getfattr -n user.shm.pids "$0" || :; done',
                           path], uid=1000, gid=1000)
        assert r.stderr.count("Permission denied") == 8, r
        assert shmfs.stats()["children_reads"] == mine
        s("kill", kid)
        kid = None
        s("dt")
    finally:
        if kid:
            os.kill(kid, signal.SIGKILL)
        s.close()
