"""Attach and detach: nattch, lpid, atime/dtime, plain opens, sessions
(the .ctl descriptor), exit, exec, fork, and IPC_RMID while attached."""

import errno
import os
import subprocess
import sys
import time

import shmfs_client as sc
from shmfs_client import IPC_CREAT, IPC_EXCL, IPC_PRIVATE, catch
from conftest import sysv_now

KEY = 0x5EED


def seg(client, size=4096, mode=0o600, key=KEY):
    return client.shmget(key, size, IPC_CREAT | mode)


def test_attach_counts_nattch_lpid_and_atime(client):
    shmid = seg(client)
    t0 = sysv_now()
    a = client.attach(shmid)
    st = client.stat(shmid)
    assert st["nattch"] == 1
    assert st["lpid"] == os.getpid()
    assert t0 <= st["atime"] <= sysv_now()
    assert st["dtime"] == 0
    b = client.attach(shmid, rdonly=True)
    assert client.stat(shmid)["nattch"] == 2
    b.detach()
    st = client.stat(shmid)
    assert st["nattch"] == 1
    assert t0 <= st["dtime"] <= sysv_now()
    a.detach()
    assert client.stat(shmid)["nattch"] == 0


def test_a_threads_attach_is_its_process_attach(client):
    """The daemon hears a thread's id: the attach is the process's (lpid
    is the process id), outlives the thread, and the process's main
    thread may end it."""
    import threading
    shmid = seg(client)
    got = {}

    def attach():
        got["tid"] = threading.get_native_id()
        got["a"] = client.attach(shmid)

    t = threading.Thread(target=attach)
    t.start()
    t.join()
    assert got["tid"] != os.getpid()
    st = client.stat(shmid)
    assert (st["nattch"], st["lpid"]) == (1, os.getpid())
    got["a"].detach()
    st = client.stat(shmid)
    assert (st["nattch"], st["lpid"]) == (0, os.getpid())


def test_atime_and_dtime_zero_until_first_attach_and_detach(client):
    shmid = seg(client)
    st = client.stat(shmid)
    assert (st["atime"], st["dtime"], st["lpid"]) == (0, 0, 0)
    a = client.attach(shmid)
    st = client.stat(shmid)
    assert st["atime"] != 0 and st["dtime"] == 0
    a.detach()
    assert client.stat(shmid)["dtime"] != 0


def test_atime_and_dtime_move_to_the_latest_attach_and_detach(client):
    shmid = seg(client)
    with client.attach(shmid):
        pass
    st1 = client.stat(shmid)
    time.sleep(1.05)
    with client.attach(shmid):
        st2 = client.stat(shmid)
        assert st2["atime"] > st1["atime"]
        assert st2["dtime"] == st1["dtime"]
    assert client.stat(shmid)["dtime"] > st1["dtime"]


def test_lpid_is_the_last_attaching_or_detaching_process(shmfs, client):
    shmid = seg(client)
    res, _ = shmfs.script(["pid"], ["attach", shmid], ["stat", shmid],
                          ["detach"], ["stat", shmid])
    pid = res[0]
    assert pid != os.getpid()
    assert res[2]["lpid"] == pid and res[2]["nattch"] == 1
    assert res[4]["lpid"] == pid and res[4]["nattch"] == 0
    st = client.stat(shmid)
    assert st["cpid"] == os.getpid()
    assert st["lpid"] == pid
    with client.attach(shmid):
        assert client.stat(shmid)["lpid"] == os.getpid()


def test_cpid_is_the_creator(shmfs, client):
    res, _ = shmfs.script(["pid"], ["get", hex(KEY), 4096, "01600"])
    pid, shmid = res
    assert client.stat(shmid)["cpid"] == pid
    with client.attach(shmid):
        assert client.stat(shmid)["cpid"] == pid


def test_plain_open_is_not_an_attach(shmfs, client):
    shmid = seg(client)
    fds = [os.open(shmfs.seg_path(KEY, shmid), os.O_RDWR),
           os.open(shmfs.id_path(shmid), os.O_RDONLY),
           os.open(shmfs.id_path(shmid), os.O_RDWR | os.O_NONBLOCK),
           os.open(shmfs.id_path(shmid), os.O_RDWR | os.O_NOFOLLOW)]
    try:
        st = client.stat(shmid)
        assert (st["nattch"], st["lpid"], st["atime"]) == (0, 0, 0)
    finally:
        for fd in fds:
            os.close(fd)
    st = client.stat(shmid)
    assert (st["nattch"], st["lpid"], st["dtime"]) == (0, 0, 0)
    r = subprocess.run(["cat", shmfs.seg_path(KEY, shmid)], capture_output=True)
    assert r.returncode == 0 and r.stdout == bytes(4096)
    assert client.stat(shmid)["nattch"] == 0


def test_attach_through_the_key_path_also_counts(shmfs, client):
    shmid = seg(client)
    a = client.attach(shmid, path=shmfs.seg_path(KEY, shmid))
    assert client.stat(shmid)["nattch"] == 1
    a.detach()
    assert client.stat(shmid)["nattch"] == 0


def test_attach_unknown_shmid_is_enoent(shmfs, client):
    assert catch(client.attach, 12345) == "ENOENT"


def test_attach_without_a_session_is_eproto(shmfs, client):
    shmid = seg(client)
    code = ("import os,sys\n"
            "fd = os.open(%r, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW)\n"
            % shmfs.id_path(shmid))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0
    assert "Errno %d]" % errno.EPROTO in r.stderr, r.stderr
    assert client.stat(shmid)["nattch"] == 0


def test_detach_of_a_shmid_not_attached_is_einval(shmfs, client):
    shmid = seg(client)
    assert catch(client.detach_id, shmid) == "EINVAL"
    a = client.attach(shmid)
    res, _ = shmfs.script(["detach_id", shmid])  # another process's attach
    assert res == ["EINVAL"]
    assert client.stat(shmid)["nattch"] == 1
    a.detach()
    assert catch(client.detach_id, shmid) == "EINVAL"
    assert catch(client.detach_id, 99999) == "EINVAL"
    assert client.stat(shmid)["nattch"] == 0


def test_each_detach_ends_one_attach(shmfs, client):
    shmid = seg(client)
    a = client.attach(shmid)
    b = client.attach(shmid)
    c = client.attach(shmid, rdonly=True)
    assert client.stat(shmid)["nattch"] == 3
    b.detach()
    assert client.stat(shmid)["nattch"] == 2
    a.write(0, b"still")   # the other mappings are untouched
    assert c.read(0, 5) == b"still"
    c.detach()
    a.detach()
    assert client.stat(shmid)["nattch"] == 0


def test_closing_the_last_ctl_descriptor_detaches_everything(shmfs, client):
    shmid = seg(client)
    other = shmfs.client()        # a second .ctl descriptor, same session
    a = client.attach(shmid)
    b = other.attach(shmid)
    a.write(0, b"kept")
    assert client.stat(shmid)["nattch"] == 2
    other.close()
    assert client.stat(shmid)["nattch"] == 2   # the session goes on
    client.close()
    with shmfs.client() as c:
        st = c.stat(shmid)
        assert st["nattch"] == 0
        assert st["dtime"] > 0
    # the mappings themselves stay usable until munmap
    assert a.read(0, 4) == b"kept" and b.read(0, 4) == b"kept"
    a.unmap()
    b.unmap()


def test_attach_descriptor_close_is_not_a_detach(shmfs, client):
    shmid = seg(client)
    fd = os.open(shmfs.id_path(shmid), os.O_RDWR | sc.ATTACH_FLAGS)
    assert client.stat(shmid)["nattch"] == 1
    os.close(fd)
    assert client.stat(shmid)["nattch"] == 1
    client.detach_id(shmid)
    assert client.stat(shmid)["nattch"] == 0


def test_exit_without_detach_counts_as_detach(shmfs, client):
    shmid = seg(client)
    res, _ = shmfs.script(["attach", shmid], ["attach", shmid, "ro"],
                          ["stat", shmid], ["sleep", 0])
    assert res[2]["nattch"] == 2
    # the script's own detach runs at its end; now make one that never does
    code = ("import os,sys; sys.path.insert(0,%r); import shmfs_client as sc;"
            "c=sc.Client(%r); a=c.attach(%d); b=c.attach(%d); os._exit(0)"
            % (os.path.dirname(sc.script_path()), shmfs.root, shmid, shmid))
    r = subprocess.run([sys.executable, "-c", code])
    assert r.returncode == 0
    st = client.stat(shmid)
    assert st["nattch"] == 0
    assert st["lpid"] not in (0, os.getpid())


def test_killed_process_counts_as_detach(shmfs, client):
    shmid = seg(client)
    p = subprocess.Popen(sc.script_argv(shmfs.root, ["attach", shmid], ["wait"]),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().startswith("{")
    assert client.stat(shmid)["nattch"] == 1
    p.kill()
    p.wait()
    assert client.stat(shmid)["nattch"] == 0


def test_exec_closes_cloexec_attach_as_detach(shmfs, client):
    shmid = seg(client)
    code = ("import os,sys; sys.path.insert(0,%r); import shmfs_client as sc;"
            "a=sc.attach(%r,%d); print('attached', flush=True);"
            "os.execv('/bin/sh', ['sh','-c','echo execed; read x'])"
            % (os.path.dirname(sc.script_path()), shmfs.root, shmid))
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "attached\n"
        assert p.stdout.readline() == "execed\n"
        # the mapping went at exec and the O_CLOEXEC .ctl descriptor closed
        assert client.stat(shmid)["nattch"] == 0
    finally:
        p.communicate("\n", timeout=10)


def test_fork_without_protocol_child_exit_detaches_nothing(shmfs, client):
    shmid = seg(client)
    a = client.attach(shmid)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(client.fd)   # the inherited session descriptor
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert client.stat(shmid)["nattch"] == 1
    a.detach()
    assert client.stat(shmid)["nattch"] == 0


def test_fork_protocol_counts_the_childs_attaches(shmfs, client):
    shmid = seg(client)
    a = client.attach(shmid)
    b = client.attach(shmid)
    token, count = client.fork_prepare()
    assert count == 2
    assert client.stat(shmid)["nattch"] == 4  # counted before fork returns
    r, w = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            os.close(w2)
            client.fork_child(token)
            os.write(w, b"c")
            os.read(r2, 1)
            a.detach()  # the child's own detach of its copy
            os.write(w, b"d")
            os.read(r2, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    os.close(r2)
    try:
        assert os.read(r, 1) == b"c"
        assert client.stat(shmid)["nattch"] == 4
        os.write(w2, b"g")
        assert os.read(r, 1) == b"d"
        assert client.stat(shmid)["nattch"] == 3
        os.write(w2, b"x")
    finally:
        os.close(w2)
        _, status = os.waitpid(pid, 0)
        os.close(r)
    assert status == 0
    # the child's exit released its remaining copy of b
    assert client.stat(shmid)["nattch"] == 2
    a.detach()
    b.detach()
    assert client.stat(shmid)["nattch"] == 0


def _in_child(fn):
    """Run fn() in a forked child; return its one-line result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            os.write(w, str(fn()).encode())
            code = 0
        except OSError as e:
            os.write(w, sc.errno_name(e.errno).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert status == 0
    return out


def test_forked_child_without_fork_child_has_no_session(shmfs, client):
    shmid = seg(client)

    def child():
        client.attach(shmid)
        return "attached"
    assert _in_child(child) == "EPROTO"
    assert client.stat(shmid)["nattch"] == 0


def test_session_ioctl_gives_a_forked_child_a_session(shmfs, client):
    shmid = seg(client)

    def child():
        client.session()
        client.attach(shmid)
        return client.stat(shmid)["nattch"]
    assert _in_child(child) == "1"
    # the child's exit ended its session and so its attach
    assert client.stat(shmid)["nattch"] == 0


def test_fork_child_gives_the_child_a_session(shmfs, client):
    shmid = seg(client)
    other = client.shmget(IPC_PRIVATE, 4096, 0o600)
    a = client.attach(other)
    token, count = client.fork_prepare()
    assert count == 1

    def child():
        client.fork_child(token)
        client.attach(shmid)
        return "%d %d" % (client.stat(shmid)["nattch"], client.stat(other)["nattch"])
    assert _in_child(child) == "1 2"
    # the child's exit ended its session: its attach and its copy of a's
    assert client.stat(shmid)["nattch"] == 0
    assert client.stat(other)["nattch"] == 1
    a.detach()


def test_fork_abort_undoes_the_counted_attaches(client):
    shmid = seg(client)
    a = client.attach(shmid)
    token, count = client.fork_prepare()
    assert count == 1
    assert client.stat(shmid)["nattch"] == 2
    client.fork_abort(token)
    assert client.stat(shmid)["nattch"] == 1
    a.detach()
    assert client.stat(shmid)["nattch"] == 0


# -- IPC_RMID while attached -------------------------------------------------

def test_rmid_while_attached_hides_name_at_once(shmfs, client):
    shmid = seg(client)
    a = client.attach(shmid)
    client.rmid(shmid)
    assert catch(os.stat, shmfs.seg_path(KEY, shmid)) == "ENOENT"
    assert not os.path.exists(shmfs.path(sc.key_name(KEY)))
    assert catch(os.stat, shmfs.path("0x00000000", shmid)) == "ENOENT"
    fd = os.open(shmfs.id_path(shmid), os.O_RDONLY)
    try:
        assert os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)
    assert os.stat(shmfs.id_path(shmid)).st_nlink == 0
    a.detach()


def test_rmid_while_attached_frees_the_key(shmfs, client):
    shmid = seg(client)
    a = client.attach(shmid)
    client.rmid(shmid)
    assert catch(client.shmget, KEY, 4096, 0o600) == "ENOENT"
    new = client.shmget(KEY, 8192, IPC_CREAT | IPC_EXCL | 0o600)
    assert new != shmid
    assert os.listdir(shmfs.path(sc.key_name(KEY))) == [str(new)]
    assert client.stat(shmid)["nattch"] == 1
    a.detach()
    assert client.stat(new)["segsz"] == 8192


def test_rmid_while_attached_ipc_stat_shows_dest_and_private_key(client):
    shmid = seg(client, mode=0o640)
    a = client.attach(shmid)
    client.rmid(shmid)
    st = client.stat(shmid)
    assert st["mode"] == 0o640 | sc.SHM_DEST
    assert st["key"] == IPC_PRIVATE
    assert st["nattch"] == 1
    assert st["segsz"] == 4096
    a.detach()


def test_rmid_while_attached_keeps_data(shmfs, client):
    shmid = seg(client, size=3 * 4096)
    a = client.attach(shmid)
    pattern = bytes(range(256)) * 48
    a.write(0, pattern)
    client.rmid(shmid)
    # a new attach by shmid still works and sees the data
    b = client.attach(shmid)
    assert b.read(0, len(pattern)) == pattern
    assert client.stat(shmid)["nattch"] == 2
    a.detach()
    assert client.stat(shmid)["nattch"] == 1
    assert b.read(0, len(pattern)) == pattern
    fd = os.open(shmfs.id_path(shmid), os.O_RDONLY)
    try:
        assert os.pread(fd, len(pattern), 0) == pattern
    finally:
        os.close(fd)
    b.detach()
    assert catch(client.stat, shmid) == "EINVAL"
    assert catch(client.attach, shmid) == "ENOENT"
    # (the name's timing: test_id_name_gone_as_soon_as_shmid_is_freed)
    assert sc.wait_gone(shmfs.id_path(shmid)) == "ENOENT"


def test_rmid_while_attached_by_other_process_frees_after_its_detach(shmfs, client):
    shmid = seg(client)
    p = subprocess.Popen(sc.script_argv(shmfs.root, ["attach", shmid],
                                        ["write", 0, "cafe"], ["wait"],
                                        ["read", 0, 2], ["detach"], ["wait"]),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith("{")
        assert p.stdout.readline() == "0\n"
        client.rmid(shmid)
        assert client.stat(shmid)["mode"] & sc.SHM_DEST
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline() == "0\n"         # wait
        assert p.stdout.readline() == '"cafe"\n'   # data kept
        assert p.stdout.readline() == "0\n"         # detach returned
        assert catch(client.stat, shmid) == "EINVAL"
        assert sc.read_status(shmfs.root) == sc.STATUS_HEADER
    finally:
        p.communicate("\n", timeout=10)


def test_rmid_with_only_a_plain_open_keeps_data_until_close(shmfs, client):
    shmid = seg(client)
    with client.attach(shmid) as a:
        a.write(0, b"kept")
    fd = os.open(shmfs.id_path(shmid), os.O_RDONLY)
    try:
        client.rmid(shmid)
        assert catch(os.stat, shmfs.seg_path(KEY, shmid)) == "ENOENT"
        assert os.pread(fd, 4, 0) == b"kept"
    finally:
        os.close(fd)
    # release of a plain open reaches the daemon asynchronously
    deadline = time.monotonic() + 5
    while catch(client.stat, shmid) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert catch(client.stat, shmid) == "EINVAL"
    assert sc.wait_gone(shmfs.id_path(shmid)) == "ENOENT"


def test_unlink_is_ipc_rmid(shmfs, client):
    shmid = seg(client)
    a = client.attach(shmid)
    a.write(0, b"abc")
    os.unlink(shmfs.seg_path(KEY, shmid))
    st = client.stat(shmid)
    assert st["mode"] & sc.SHM_DEST and st["key"] == 0
    assert a.read(0, 3) == b"abc"
    a.detach()
    assert catch(client.stat, shmid) == "EINVAL"


def test_second_rmid_of_removed_attached_segment_is_harmless(client):
    shmid = seg(client)
    a = client.attach(shmid)
    client.rmid(shmid)
    assert catch(client.rmid, shmid) is None
    assert client.stat(shmid)["nattch"] == 1
    a.detach()
    assert catch(client.stat, shmid) == "EINVAL"
