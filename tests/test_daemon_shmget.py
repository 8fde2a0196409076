"""shmget and shmctl through the control node: creation rules, errno order,
ids, IPC_STAT/IPC_SET/IPC_RMID/IPC_INFO/SHM_INFO/SHM_STAT, times."""

import os
import time


import shmfs_client as sc
from shmfs_client import IPC_CREAT, IPC_EXCL, IPC_PRIVATE, catch
from conftest import sysv_now

KEY = 0x162E


def test_hello_reports_protocol_version_page_size_and_pid(shmfs, client):
    # the pid whose life the published table follows: the holder's
    h = client.hello()
    assert {k: h[k] for k in ("version", "page_size", "daemon_pid")} == {
        "version": sc.PROTO_VERSION,
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "daemon_pid": shmfs.holder_pid}
    # the session of this descriptor (open of .ctl): a sid and generation
    assert h["sid"] > 0 and h["gen"] > 0
    assert shmfs.holder_pid != shmfs.proc.pid


def test_shmget_without_ipc_creat_on_missing_key_is_enoent(client):
    assert catch(client.shmget, KEY, 4096, 0o600) == "ENOENT"
    assert catch(client.shmget, KEY, 0, 0) == "ENOENT"


def test_shmget_creates_segment_with_requested_size_and_mode(shmfs, client):
    before = sysv_now()
    shmid = client.shmget(KEY, 4097, IPC_CREAT | 0o640)
    after = sysv_now()
    assert shmid >= 0
    st = client.stat(shmid)
    assert st["key"] == KEY
    assert st["shmid"] == shmid
    assert st["segsz"] == 4097  # as asked, not page-rounded
    assert st["mode"] == 0o640
    assert (st["uid"], st["gid"], st["cuid"], st["cgid"]) == (0, 0, 0, 0)
    assert st["cpid"] == os.getpid()
    assert st["lpid"] == 0
    assert st["nattch"] == 0
    assert st["atime"] == 0 and st["dtime"] == 0
    assert before <= st["ctime"] <= after
    assert st["ret"] == 0
    assert os.path.isfile(shmfs.seg_path(KEY, shmid))


def test_shmget_keeps_only_permission_bits_of_flags(client):
    shmid = client.shmget(KEY, 100, IPC_CREAT | 0o4777)
    assert client.stat(shmid)["mode"] == 0o777


def test_shmget_existing_key_returns_same_shmid(client):
    shmid = client.shmget(KEY, 8192, IPC_CREAT | 0o600)
    assert client.shmget(KEY, 8192, IPC_CREAT | 0o600) == shmid
    assert client.shmget(KEY, 100, 0o600) == shmid
    assert client.shmget(KEY, 0, 0) == shmid
    assert client.stat(shmid)["segsz"] == 8192


def test_shmget_ipc_private_always_creates_new_segment(shmfs, client):
    ids = [client.shmget(IPC_PRIVATE, 4096, 0o600) for _ in range(5)]
    assert len(set(ids)) == 5
    for i in ids:
        assert client.stat(i)["key"] == 0
    assert sorted(os.listdir(shmfs.path("0x00000000"))) == \
        sorted(str(i) for i in ids)


def test_shmget_excl_on_live_key_is_eexist_before_size_check(client):
    client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    assert catch(client.shmget, KEY, 4096, IPC_CREAT | IPC_EXCL | 0o600) == "EEXIST"
    # a size that would be EINVAL still gives EEXIST first
    assert catch(client.shmget, KEY, 1 << 20, IPC_CREAT | IPC_EXCL | 0o600) == "EEXIST"


def test_shmget_size_larger_than_existing_segsz_is_einval(client):
    client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    assert catch(client.shmget, KEY, 4097, 0o600) == "EINVAL"
    assert catch(client.shmget, KEY, 4097, IPC_CREAT | 0o600) == "EINVAL"


def test_shmget_errno_order_eexist_then_einval_then_eacces(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    k = hex(KEY)
    res, _ = shmfs.script(["get", k, 4096, "03600"],   # EEXIST beats EACCES
                          ["get", k, 8192, "03600"],   # EEXIST beats EINVAL
                          ["get", k, 8192, "0600"],    # EINVAL beats EACCES
                          ["get", k, 4096, "0600"],    # EACCES
                          ["get", k, 4096, "0400"],    # EACCES (read asked)
                          ["get", k, 4096, "0"],       # nothing asked: passes
                          uid=1000)
    assert res == ["EEXIST", "EEXIST", "EINVAL", "EACCES", "EACCES", shmid]


def test_shmget_size_below_shmmin_or_above_shmmax_is_einval(shmfs_factory):
    m = shmfs_factory(["-o", "shmmin=100,shmmax=65536"])
    c = m.client()
    assert catch(c.shmget, KEY, 99, IPC_CREAT | 0o600) == "EINVAL"
    assert catch(c.shmget, KEY, 65537, IPC_CREAT | 0o600) == "EINVAL"
    assert catch(c.shmget, IPC_PRIVATE, 0, 0o600) == "EINVAL"
    assert catch(c.shmget, KEY, 99, 0o600) == "ENOENT"  # nothing was made
    assert c.stat(c.shmget(KEY, 100, IPC_CREAT | 0o600))["segsz"] == 100
    assert c.stat(c.shmget(IPC_PRIVATE, 65536, 0o600))["segsz"] == 65536


def test_shmget_size_zero_is_einval_on_create(client):
    assert catch(client.shmget, KEY, 0, IPC_CREAT | 0o600) == "EINVAL"
    assert catch(client.shmget, KEY, 0, 0) == "ENOENT"


def test_negative_key_round_trips(shmfs, client):
    key = sc.s32(0xDEADBEEF)
    shmid = client.shmget(key, 10, IPC_CREAT | 0o600)
    assert client.stat(shmid)["key"] == key
    assert client.shmget(0xDEADBEEF, 10, 0) == shmid
    assert os.listdir(shmfs.path("0xdeadbeef")) == [str(shmid)]


def test_stale_shmid_after_free_is_einval_and_name_gone(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    assert os.path.exists(shmfs.id_path(shmid))
    client.rmid(shmid)
    assert catch(client.stat, shmid) == "EINVAL"
    assert catch(client.rmid, shmid) == "EINVAL"
    assert catch(client.set, shmid, 0, 0, 0o600) == "EINVAL"
    assert catch(client.lock, shmid) == "EINVAL"
    assert catch(client.access, shmid, 4) == "EINVAL"
    assert catch(client.attach, shmid) == "ENOENT"
    assert catch(os.stat, shmfs.seg_path(KEY, shmid)) == "ENOENT"
    assert not os.path.exists(shmfs.path(sc.key_name(KEY)))
    assert str(shmid) not in os.listdir(shmfs.path(".id"))
    assert sc.wait_gone(shmfs.id_path(shmid)) == "ENOENT"


def test_id_name_gone_as_soon_as_shmid_is_freed(shmfs, client):
    """.id/<shmid> must not outlive the shmid, even for a moment and even
    when the kernel has the name cached from an earlier lookup."""
    late = []
    rounds = 1000
    for i in range(rounds):
        shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
        p = shmfs.id_path(shmid)
        assert os.path.exists(p)          # the kernel now caches the name
        if i % 2:
            a = client.attach(shmid)
            client.rmid(shmid)
            assert os.path.exists(p)      # removed but attached: still there
            a.detach()
        else:
            client.rmid(shmid)
        assert catch(client.stat, shmid) == "EINVAL"
        e = catch(os.stat, p)
        if e != "ENOENT":
            late.append((shmid, e))
    assert not late, "%d of %d freed shmids still resolved under .id/ " \
        "right after the free: %r" % (len(late), rounds, late[:5])


def test_stale_shmid_never_reaches_a_later_segment(shmfs, client):
    seen = set()
    for i in range(64):
        shmid = client.shmget(KEY, 4096, IPC_CREAT | IPC_EXCL | 0o600)
        assert shmid not in seen
        assert shmid >= 0
        seen.add(shmid)
        client.rmid(shmid)
    for shmid in seen:
        assert catch(client.stat, shmid) == "EINVAL"
        assert catch(os.stat, shmfs.id_path(shmid)) == "ENOENT"
    live = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    for shmid in seen:
        assert catch(client.stat, shmid) == "EINVAL"
    assert client.stat(live)["shmid"] == live


def test_shmid_is_slot_and_sequence_and_shm_stat_takes_the_slot(client):
    ids = [client.shmget(IPC_PRIVATE, 4096, 0o600) for _ in range(4)]
    slots = [sc.slot_of(i) for i in ids]
    assert len(set(slots)) == 4
    for shmid in ids:
        st = client.shm_stat(sc.slot_of(shmid))
        assert st["ret"] == shmid
        assert st["shmid"] == shmid
        assert client.shm_stat(sc.slot_of(shmid), any=True)["ret"] == shmid
    free = next(s for s in range(sc.MAX_SLOTS) if s not in slots)
    assert catch(client.shm_stat, free) == "EINVAL"
    assert catch(client.shm_stat, free, any=True) == "EINVAL"


def test_ipc_stat_seq_matches_shmid(client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    assert client.stat(shmid)["seq"] == sc.seq_of(shmid)


def test_ipc_stat_of_invalid_ids_is_einval(client):
    assert catch(client.stat, -1) == "EINVAL"
    assert catch(client.stat, 0x7FFFFFFF) == "EINVAL"
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    # same slot, another sequence
    assert catch(client.stat, shmid + (1 << sc.ID_SHIFT)) == "EINVAL"


def test_unknown_shmctl_command_is_einval(client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    assert catch(client.ctl, shmid, 99) == "EINVAL"


def test_ipc_set_changes_uid_gid_and_permission_bits_only(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    client.set(shmid, 1234, 5678, 0o4644 | sc.SHM_DEST)
    st = client.stat(shmid)
    assert (st["uid"], st["gid"], st["mode"]) == (1234, 5678, 0o644)
    assert (st["cuid"], st["cgid"]) == (0, 0)
    s = os.stat(shmfs.seg_path(KEY, shmid))
    assert (s.st_uid, s.st_gid, s.st_mode & 0o7777) == (1234, 5678, 0o644)


def test_ctime_set_at_create_and_changed_only_by_ipc_set(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    c0 = client.stat(shmid)["ctime"]
    time.sleep(1.05)
    with client.attach(shmid) as a:
        a.write(0, b"x")
    client.shmget(KEY, 4096, 0o600)
    st = client.stat(shmid)
    assert st["ctime"] == c0
    assert st["atime"] > c0 and st["dtime"] > c0
    client.set(shmid, 0, 0, 0o640)
    c1 = client.stat(shmid)["ctime"]
    assert c1 > c0
    assert abs(c1 - time.time()) <= 2


def test_rmid_without_attaches_frees_at_once(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    assert client.rmid(shmid) == 0
    assert catch(client.stat, shmid) == "EINVAL"
    assert catch(client.shmget, KEY, 4096, 0o600) == "ENOENT"
    new = client.shmget(KEY, 4096, IPC_CREAT | IPC_EXCL | 0o600)
    assert new != shmid


def test_ipc_info_reports_limits_and_highest_index(shmfs_factory):
    m = shmfs_factory(["-o", "shmmax=1048576,shmmin=16,shmmni=8,shmseg=3,shmall=100"])
    c = m.client()
    info = c.info()
    assert {k: info[k] for k in sc.INFO_FIELDS} == {
        "shmmax": 1048576, "shmmin": 16, "shmmni": 8, "shmseg": 3, "shmall": 100}
    assert info["ret"] == 0
    ids = [c.shmget(IPC_PRIVATE, 4096, 0o600) for _ in range(3)]
    assert c.info()["ret"] == max(sc.slot_of(i) for i in ids)


def test_shm_info_counts_ids_and_pages(client):
    info = client.shm_info()
    assert info["used_ids"] == 0 and info["shm_tot"] == 0
    page = os.sysconf("SC_PAGE_SIZE")
    a = client.shmget(IPC_PRIVATE, page + 1, 0o600)      # 2 pages
    b = client.shmget(KEY, 1, IPC_CREAT | 0o600)          # 1 page
    info = client.shm_info()
    assert info["used_ids"] == 2
    assert info["shm_tot"] == 3
    assert info["ret"] == max(sc.slot_of(a), sc.slot_of(b))
    assert info["shm_swp"] == 0
    client.rmid(a)
    info = client.shm_info()
    assert info["used_ids"] == 1 and info["shm_tot"] == 1


def test_shm_lock_sets_and_unlock_clears_shm_locked(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o600)
    assert client.lock(shmid) == 0
    assert client.stat(shmid)["mode"] == 0o600 | sc.SHM_LOCKED
    assert os.getxattr(shmfs.seg_path(KEY, shmid), "user.shm.mode") == b"02600"
    assert client.unlock(shmid) == 0
    assert client.stat(shmid)["mode"] == 0o600


def test_access_request_answers_with_ipcperm(shmfs, client):
    shmid = client.shmget(KEY, 4096, IPC_CREAT | 0o640)
    assert client.access(shmid, 6) == 0  # root bypasses
    res, _ = shmfs.script(["access", shmid, 4], ["access", shmid, 2],
                          ["access", shmid, 0], uid=1000)
    assert res == ["EACCES", "EACCES", 0]
    res, _ = shmfs.script(["access", shmid, 4], ["access", shmid, 2],
                          uid=1000, groups=[0])
    assert res == [0, "EACCES"]
    assert catch(client.access, shmid + (1 << sc.ID_SHIFT), 4) == "EINVAL"
