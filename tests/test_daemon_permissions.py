"""SysV ipcperm as seen by other users (setpriv): owner = uid or cuid, group =
gid or cgid with supplementary groups, other; IPC_SET/IPC_RMID rules."""

import os
import resource
import stat

import pytest

import shmfs_client as sc
from shmfs_client import IPC_CREAT, catch

KEY = 0xACCE55
U, G = 1000, 1000          # a stranger to root's segments
OWNER, OGROUP = 2000, 2000
STRANGER = 3000


def make(client, mode, uid=0, gid=0, size=4096):
    shmid = client.shmget(KEY, size, IPC_CREAT | 0o600)
    client.set(shmid, uid, gid, mode)
    return shmid


def attach_results(m, shmid, uid=U, gid=G, groups=None):
    """(read-only attach, read-write attach) as the given user."""
    res, _ = m.script(["attach", shmid, "ro"], ["attach", shmid, "rw"],
                      uid=uid, gid=gid, groups=groups)
    return ["ok" if isinstance(r, dict) else r for r in res]


@pytest.mark.parametrize("mode,expect", [
    (0o600, ["EACCES", "EACCES"]),
    (0o604, ["ok", "EACCES"]),
    (0o602, ["EACCES", "EACCES"]),  # rw needs both bits
    (0o606, ["ok", "ok"]),
    (0o660, ["EACCES", "EACCES"]),  # group bits do not apply to others
])
def test_other_user_attach_follows_other_bits(shmfs, client, mode, expect):
    shmid = make(client, mode)
    assert attach_results(shmfs, shmid) == expect
    assert client.stat(shmid)["nattch"] == 0


def test_read_only_attach_allowed_with_read_permission_and_reads_data(shmfs, client):
    shmid = make(client, 0o644)
    with client.attach(shmid) as a:
        a.write(100, b"\x01\x02\x03")
        res, _ = shmfs.script(["attach", shmid, "ro"], ["read", 100, 3],
                              ["stat", shmid], uid=U)
        assert res[1] == "010203"
        assert res[2]["nattch"] == 2


def test_other_user_rw_attach_stores_are_seen_by_root(shmfs, client):
    shmid = make(client, 0o666)
    with client.attach(shmid) as a:
        res, _ = shmfs.script(["attach", shmid], ["write", 8, "beef"], uid=U)
        assert res[1] == 0
        assert a.read(8, 2) == b"\xbe\xef"


@pytest.mark.parametrize("bits,expect", [
    (0o640, ["ok", "EACCES"]),
    (0o660, ["ok", "ok"]),
    (0o606, ["EACCES", "EACCES"]),  # a group member is not "other"
])
def test_group_access_through_supplementary_group(shmfs, client, bits, expect):
    shmid = make(client, bits, uid=0, gid=4242)
    assert attach_results(shmfs, shmid, groups=[4242]) == expect
    assert attach_results(shmfs, shmid, groups=[7, 4242, 9]) == expect


def test_group_access_through_primary_gid(shmfs, client):
    shmid = make(client, 0o640, uid=0, gid=4242)
    assert attach_results(shmfs, shmid, gid=4242) == ["ok", "EACCES"]
    assert attach_results(shmfs, shmid, gid=4243) == ["EACCES", "EACCES"]


def test_group_access_through_creator_gid(shmfs, client):
    # root created it (cgid 0) and gave the group away; group 0 still counts
    shmid = make(client, 0o640, uid=0, gid=4242)
    assert attach_results(shmfs, shmid, groups=[0]) == ["ok", "EACCES"]


def test_owner_bits_apply_to_owner_not_group_or_other(shmfs, client):
    shmid = make(client, 0o066, uid=U, gid=G)
    # the owner is refused although group and other would allow it
    assert attach_results(shmfs, shmid, uid=U, gid=G) == ["EACCES", "EACCES"]
    assert attach_results(shmfs, shmid, uid=STRANGER, gid=G) == ["ok", "ok"]


def test_other_user_ipc_stat_needs_read_permission(shmfs, client):
    a = make(client, 0o600)
    res, _ = shmfs.script(["stat", a], ["shm_stat", sc.slot_of(a)],
                          ["shm_stat_any", sc.slot_of(a)], uid=U)
    assert res[0] == "EACCES"
    assert res[1] == "EACCES"
    assert res[2]["shmid"] == a and res[2]["ret"] == a
    client.set(a, 0, 0, 0o604)
    res, _ = shmfs.script(["stat", a], uid=U)
    assert res[0]["shmid"] == a and res[0]["mode"] == 0o604


def test_other_user_shmget_of_existing_key_checks_requested_bits(shmfs, client):
    shmid = make(client, 0o604)
    res, _ = shmfs.script(["get", hex(KEY), 0, "0400"], ["get", hex(KEY), 0, "0600"],
                          ["get", hex(KEY), 0, "0"], uid=U)
    assert res == [shmid, "EACCES", shmid]


def test_segment_created_by_user_is_owned_by_its_credentials(shmfs, client):
    res, _ = shmfs.script(["pid"], ["get", hex(KEY), 4096, "01640"],
                          uid=U, gid=G, groups=[5])
    pid, shmid = res
    st = client.stat(shmid)
    assert (st["uid"], st["gid"], st["cuid"], st["cgid"]) == (U, G, U, G)
    assert st["cpid"] == pid
    s = os.stat(shmfs.seg_path(KEY, shmid))
    assert (s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode)) == (U, G, 0o640)


def test_owner_can_chmod_and_chown_through_the_file(shmfs, client):
    res, _ = shmfs.script(["get", hex(KEY), 4096, "01600"], uid=U)
    shmid = res[0]
    p = shmfs.seg_path(KEY, shmid)
    res, _ = shmfs.script(["chmod", p, "0640"], ["chown", p, U, 4242], uid=U)
    assert res == [0, 0]
    st = client.stat(shmid)
    assert (st["mode"], st["uid"], st["gid"]) == (0o640, U, 4242)


def test_creator_keeps_control_after_giving_segment_away(shmfs, client):
    res, _ = shmfs.script(["get", hex(KEY), 4096, "01600"], ["set", "@", OWNER, OGROUP, "0600"],
                          uid=U)
    shmid = res[0]
    assert res[1] == 0
    st = client.stat(shmid)
    assert (st["uid"], st["gid"], st["cuid"], st["cgid"]) == (OWNER, OGROUP, U, G)
    p = shmfs.seg_path(KEY, shmid)
    # the creator is still an owner for access, chmod, chown
    assert attach_results(shmfs, shmid, uid=U) == ["ok", "ok"]
    res, _ = shmfs.script(["chmod", p, "0640"], ["chown", p, OWNER, 77], uid=U)
    assert res == [0, 0]
    # the new owner too
    res, _ = shmfs.script(["chmod", p, "0604"], uid=OWNER)
    assert res == [0]
    st = client.stat(shmid)
    assert (st["mode"], st["gid"]) == (0o604, 77)
    # and the creator can remove it
    res, _ = shmfs.script(["unlink", p], uid=U)
    assert res == [0]
    assert catch(client.stat, shmid) == "EINVAL"


def test_stranger_cannot_chmod_chown_or_remove(shmfs, client):
    shmid = make(client, 0o666, uid=OWNER, gid=OGROUP)
    p = shmfs.seg_path(KEY, shmid)
    before = client.stat(shmid)
    res, _ = shmfs.script(["chmod", p, "0777"], ["chown", p, STRANGER, STRANGER],
                          ["chown", p, -1, STRANGER],
                          ["unlink", p], ["set", shmid, STRANGER, STRANGER, "0777"],
                          ["rmid", shmid], uid=STRANGER, groups=[OGROUP])
    assert res == ["EPERM"] * 6
    after = client.stat(shmid)
    assert after == before
    assert os.path.exists(p)


def test_chown_to_any_uid_allowed_for_owner(shmfs, client):
    # SysV, not POSIX: the owner may give the segment to anyone
    shmid = make(client, 0o600, uid=U, gid=G)
    p = shmfs.seg_path(KEY, shmid)
    res, _ = shmfs.script(["chown", p, 4321, 8765], uid=U)
    assert res == [0]
    st = client.stat(shmid)
    assert (st["uid"], st["gid"]) == (4321, 8765)
    # the old owner is no longer owner nor creator: EPERM now
    res, _ = shmfs.script(["chmod", p, "0666"], uid=U)
    assert res == ["EPERM"]


def test_root_may_do_anything(shmfs, client):
    shmid = make(client, 0o000, uid=OWNER, gid=OGROUP)
    a = client.attach(shmid)
    a.write(0, b"root")
    p = shmfs.seg_path(KEY, shmid)
    os.chmod(p, 0o640)
    os.chown(p, 1, 2)
    st = client.stat(shmid)
    assert (st["mode"], st["uid"], st["gid"]) == (0o640, 1, 2)
    a.detach()
    os.unlink(p)
    assert catch(client.stat, shmid) == "EINVAL"


@pytest.mark.parametrize("flags,mode,expect", [
    ("r", 0o604, 0), ("w", 0o604, "EACCES"), ("rw", 0o604, "EACCES"),
    ("w", 0o602, 0), ("rw", 0o606, 0), ("r", 0o600, "EACCES"),
])
def test_plain_open_checks_ipcperm(shmfs, client, flags, mode, expect):
    shmid = make(client, mode)
    res, _ = shmfs.script(["open", shmfs.seg_path(KEY, shmid), flags], uid=U)
    assert res == [expect]


def test_access_syscall_answers_with_ipcperm(shmfs, client):
    shmid = make(client, 0o640, uid=OWNER, gid=4242)
    p = shmfs.seg_path(KEY, shmid)
    res, _ = shmfs.script(["faccess", p, os.R_OK], ["faccess", p, os.W_OK],
                          ["faccess", p, os.F_OK], uid=U, groups=[4242])
    assert res == [True, False, True]
    res, _ = shmfs.script(["faccess", p, os.R_OK], uid=U)
    assert res == [False]
    # the creator (cuid 0 = root here) is root anyway; check a user creator
    res, _ = shmfs.script(["get", "0x777", 100, "01000"], uid=U)
    mine = res[0]
    client.set(mine, OWNER, OGROUP, 0o600)
    res, _ = shmfs.script(["faccess", shmfs.seg_path(0x777, mine), os.R_OK | os.W_OK],
                          uid=U)
    assert res == [True]


def test_other_user_sees_the_namespace(shmfs, client):
    shmid = make(client, 0o600)
    r = shmfs.as_user(["ls", "-ln", shmfs.path(sc.key_name(KEY))])
    assert r.returncode == 0, r.stderr
    assert str(shmid) in r.stdout
    res, _ = shmfs.script(["fstat", shmfs.id_path(shmid)], uid=U)
    assert res[0]["ino"] == shmid and res[0]["size"] == 4096
    client.set(shmid, 0, 0, 0o604)
    r = shmfs.as_user(["getfattr", "-n", "user.shm.cpid", "--only-values",
                       shmfs.seg_path(KEY, shmid)])
    assert r.returncode == 0, r.stderr
    assert r.stdout == str(os.getpid())


def test_other_user_cannot_read_0600_segment_with_cat(shmfs, client):
    shmid = make(client, 0o600)
    r = shmfs.as_user(["cat", shmfs.seg_path(KEY, shmid)])
    assert r.returncode != 0
    assert "Permission denied" in r.stderr


def _made(m):
    st = m.stats()
    return st["passthrough"] + st["arena"]


def test_refused_opens_make_no_memory(shmfs, client):
    """A segment's memory is made at its first open, after the permission
    check: a stranger's refused attaches and opens, in every mode, make
    none; the first open that is allowed makes it, once."""
    shmid = make(client, 0o600, size=3 * 4096)
    made = _made(shmfs)
    assert attach_results(shmfs, shmid) == ["EACCES", "EACCES"]
    path = shmfs.seg_path(KEY, shmid)
    for argv in (["cat", path], ["sh", "-c", "echo x >> " + path],
                 ["sh", "-c", "echo x 1<> " + path]):
        r = shmfs.as_user(argv)
        assert r.returncode != 0 and "ermission denied" in r.stderr, r
    assert _made(shmfs) == made
    client.set(shmid, 0, 0, 0o604)
    assert attach_results(shmfs, shmid) == ["ok", "EACCES"]
    assert _made(shmfs) == made + 1
    with open(path, "rb") as f:
        assert f.read(4) == bytes(4)
    assert _made(shmfs) == made + 1


def test_shm_lock_by_stranger_is_eperm(shmfs, client):
    shmid = make(client, 0o666, uid=OWNER, gid=OGROUP)
    res, _ = shmfs.script(["lock", shmid], ["unlock", shmid], uid=STRANGER)
    assert res == ["EPERM", "EPERM"]
    assert client.stat(shmid)["mode"] == 0o666


def test_shm_lock_by_owner_follows_rlimit_memlock(shmfs, client):
    # Linux: without CAP_IPC_LOCK the owner needs RLIMIT_MEMLOCK > 0 (EPERM)
    # and room for the segment in it (ENOMEM); SHM_UNLOCK needs neither
    shmid = make(client, 0o600, uid=U, gid=G, size=3 * sc.PAGE_SIZE)
    res, _ = shmfs.script(["lock", shmid, 0], ["lock", shmid, sc.PAGE_SIZE],
                          uid=U)
    assert res == ["EPERM", "ENOMEM"]
    assert client.stat(shmid)["mode"] == 0o600
    # a limit above this machine's hard limit: raised by root before the
    # client drops to U
    big = 64 * sc.PAGE_SIZE
    res, _ = shmfs.script(["lock", shmid, big], ["stat", shmid],
                          ["unlock", shmid], ["stat", shmid], uid=U,
                          preexec_fn=lambda: resource.setrlimit(
                              resource.RLIMIT_MEMLOCK, (big, big)))
    assert res[0] == 0
    assert res[1]["mode"] == 0o600 | sc.SHM_LOCKED
    assert res[2] == 0
    assert res[3]["mode"] == 0o600


def test_shm_lock_by_root_ignores_memlock(shmfs, client):
    shmid = make(client, 0o600, uid=U, gid=G)
    assert client.lock(shmid, memlock=0) == 0
    assert client.stat(shmid)["mode"] == 0o600 | sc.SHM_LOCKED
    client.unlock(shmid)
