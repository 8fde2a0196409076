"""Who may do what to a segment: the whole matrix of callers and operations
against a small oracle of SysV's rules.

Callers: root; the owner; the creator after the segment was given away
(cuid is the caller, uid is someone else); members of the group through
the primary gid, through a supplementary group, and through the creator's
gid (cgid), primary or supplementary; and a stranger.  Operations:
shmget with each request mode, attach read-only and read-write, IPC_STAT,
SHMFS_IOC_ACCESS, IPC_SET, IPC_RMID, SHM_LOCK, SHM_UNLOCK, chmod, chown,
rm, read(2), write(2), mmap(2) of a plain open, access(2), getxattr (a
plain field and user.shm.pids, the owner's), and the tries to get more than SysV
grants (mode bits
beyond 0777, set-user-ID and file-type bits in chmod, SHM_DEST and
SHM_LOCKED in IPC_SET).  Every cell is computed by the oracle below
(ipcperm: root passes, uid or cuid is the owner, gid or cgid among the
caller's groups is the group; control: root, uid or cuid) and compared
with what the daemon did, and the effects of the operations that succeed
are checked afterwards by root.

Each mode of the parametrization is one mount; each caller's operations
run in one process (this file as a script, through setpriv), which takes
the commands of tests/shmfs_client.py and a few more: pread, pwrite and
mmap of a plain open, and an attach through a given path.
"""

import json
import mmap
import os
import shutil
import stat
import sys
import tempfile

import pytest

import shmfs_client as sc
from shmfs_client import catch

CUID = CGID = 1001      # created every segment
OWNER, GROUP = 2001, 3001   # what root then made uid and gid
NEW_UID, NEW_GID = 6001, 6002
BASE_KEY = 0x5EC00000


class Role:
    def __init__(self, name, uid, gid, groups=()):
        self.name, self.uid, self.gid = name, uid, gid
        self.groups = list(groups)
        self.all_groups = {gid} | set(groups)


ROLES = [
    Role("root", 0, 0),
    Role("owner", OWNER, OWNER),
    Role("creator", CUID, CGID),
    Role("group-gid", 4001, GROUP),
    Role("group-supplementary", 4002, 4002, [7, GROUP, 9]),
    Role("group-cgid", 4003, CGID),
    Role("group-cgid-supplementary", 4004, 4004, [CGID]),
    Role("stranger", 5001, 5001, [7, 8, 9]),
]

# Every class (owner, group, other) sees each of ---, r--, -w-, rw- in
# one of these, and the owner sometimes less than the others.
MODES = [0o000, 0o444, 0o222, 0o666, 0o640, 0o604, 0o462, 0o026]

# Operations on a segment of their own for each caller: they change it.
OWN_OPS = ["set", "rmid", "lock", "unlock", "chmod", "chown", "rm",
           "set_hibits", "set_dest"]


# -- the oracle ----------------------------------------------------------------

def ipcperm(role, seg, want):
    if role.uid == 0:
        return True
    bits = seg["mode"]
    if role.uid in (seg["uid"], seg["cuid"]):
        bits >>= 6
    elif role.all_groups & {seg["gid"], seg["cgid"]}:
        bits >>= 3
    return want & ~bits & 7 == 0


def may_control(role, seg):
    return role.uid == 0 or role.uid in (seg["uid"], seg["cuid"])


def fold(req):
    return ((req >> 6) | (req >> 3) | req) & 7


def ok_or(cond, errno_name):
    return "ok" if cond else errno_name


GET_MODES = ["0400", "0200", "0600", "0000", "0060", "0006", "0004"]


def plan(role, seg, main, own, paths):
    """[(cell name, command, expected)] for one caller."""
    p = paths[main]
    r = lambda want: ipcperm(role, seg, want)  # noqa: E731
    ctl = may_control(role, seg)
    rows = []
    for req in GET_MODES:
        rows.append(("shmget %s" % req, ["get", hex(seg["key"]), 0, req],
                     ok_or(r(fold(int(req, 8))), "EACCES")))
    rows += [
        ("attach ro", ["attach", main, "ro"], ok_or(r(4), "EACCES")),
        ("attach rw", ["attach", main, "rw"], ok_or(r(6), "EACCES")),
        ("IPC_STAT", ["stat", main], ok_or(r(4), "EACCES")),
        ("access r", ["access", main, 4], ok_or(r(4), "EACCES")),
        ("access w", ["access", main, 2], ok_or(r(2), "EACCES")),
        ("access rwx", ["access", main, 7], ok_or(r(7), "EACCES")),
        ("read(2)", ["pread", p], ok_or(r(4), "EACCES")),
        ("write(2)", ["pwrite", p, 64 + ROLES.index(role)],
         ok_or(r(2), "EACCES")),
        ("mmap ro", ["mmap", p, "ro"], ok_or(r(4), "EACCES")),
        ("mmap rw", ["mmap", p, "rw"], ok_or(r(6), "EACCES")),
        ("access(2) R_OK", ["faccess", p, os.R_OK], r(4)),
        ("access(2) W_OK", ["faccess", p, os.W_OK], r(2)),
        # anyone may read the fields, as /proc/sysvipc/shm; who is
        # attached only root and the owner (uid or cuid): the kernel
        # shows no attacher's pid to anyone
        ("getxattr cuid", ["getxattr", p, "user.shm.cuid"], "ok"),
        ("getxattr pids", ["getxattr", p, "user.shm.pids"],
         ok_or(ctl, "EACCES")),
        # more than SysV grants: never, whoever asks
        ("chmod 04640", ["chmod", p, "04640"], "EINVAL" if ctl else "EPERM"),
        ("chmod 0104640", ["chmod", p, "0104640"],
         "EINVAL" if ctl else "EPERM"),
        ("chmod 01640", ["chmod", p, "01640"], "EINVAL" if ctl else "EPERM"),
    ]
    own_cmds = {
        "set": ["set", own["set"], NEW_UID, NEW_GID, "0640"],
        "rmid": ["rmid", own["rmid"]],
        "lock": ["lock", own["lock"]],
        "unlock": ["unlock", own["unlock"]],   # root locked it
        "chmod": ["chmod", paths[own["chmod"]], "0640"],
        "chown": ["chown", paths[own["chown"]], NEW_UID, NEW_GID],
        "rm": ["unlink", paths[own["rm"]]],
        "set_hibits": ["set", own["set_hibits"], OWNER, GROUP, "07777"],
        "set_dest": ["set", own["set_dest"], OWNER, GROUP, "03600"],
    }
    for op in OWN_OPS:
        rows.append((op, own_cmds[op], ok_or(ctl, "EPERM")))
    return rows


def effects(role, seg, ok):
    """What root must see of each caller's own segments afterwards."""
    mode = seg["mode"]
    keep = {"uid": OWNER, "gid": GROUP, "mode": mode}
    return {
        "set": {"uid": NEW_UID, "gid": NEW_GID, "mode": 0o640}
        if ok["set"] else keep,
        "rmid": "EINVAL" if ok["rmid"] else keep,
        "lock": dict(keep, mode=mode | sc.SHM_LOCKED) if ok["lock"] else keep,
        "unlock": keep if ok["unlock"] else
        dict(keep, mode=mode | sc.SHM_LOCKED),
        "chmod": dict(keep, mode=0o640) if ok["chmod"] else keep,
        "chown": dict(keep, uid=NEW_UID, gid=NEW_GID)
        if ok["chown"] else keep,
        "rm": "EINVAL" if ok["rm"] else keep,
        # IPC_SET keeps the 0777 bits only: never SHM_DEST or SHM_LOCKED
        "set_hibits": dict(keep, mode=0o777) if ok["set_hibits"] else keep,
        "set_dest": dict(keep, mode=0o600) if ok["set_dest"] else keep,
    }


# -- running ---------------------------------------------------------------------

def runner_argv(root, cmds):
    me = os.path.join(os.path.dirname(sc.script_path()),
                      os.path.basename(__file__))
    argv = [sys.executable, me, root]
    for i, c in enumerate(cmds):
        if i:
            argv.append("--")
        argv.extend(str(w) for w in c)
    return argv


def run_as(m, role, cmds):
    argv = runner_argv(m.root, cmds)
    r = m.as_user(argv, uid=role.uid, gid=role.gid, groups=role.groups or None)
    assert r.returncode in (0, 1), "runner failed (%d): %s" % (
        r.returncode, r.stderr)
    return sc.parse_output(r.stdout)


def cell(result):
    if isinstance(result, sc.Errno):
        return str(result)
    if isinstance(result, bool):
        return result
    return "ok"


def make_segments(m, client, mode, n):
    """n segments created by CUID/CGID, then given by root to OWNER/GROUP
    with mode: -> [(key, shmid)]."""
    keys = [BASE_KEY + i for i in range(n)]
    res, _ = m.script(*[["get", hex(k), 4096, "01600"] for k in keys],
                      uid=CUID, gid=CGID)
    assert all(isinstance(x, int) for x in res), res
    for shmid in res:
        client.set(shmid, OWNER, GROUP, mode)
    return list(zip(keys, res))


@pytest.mark.parametrize("mode", MODES, ids=lambda m: "%04o" % m)
def test_matrix(shmfs, client, mode):
    m = shmfs
    segs = make_segments(m, client, mode, 1 + len(ROLES) * len(OWN_OPS))
    paths = {shmid: m.seg_path(key, shmid) for key, shmid in segs}
    main_key, main = segs[0]
    seg = client.stat(main)
    assert (seg["uid"], seg["gid"], seg["cuid"], seg["cgid"], seg["mode"]) == \
        (OWNER, GROUP, CUID, CGID, mode)
    seg["key"] = main_key
    own_of = {}
    it = iter(s for _, s in segs[1:])
    for role in ROLES:
        own_of[role.name] = {op: next(it) for op in OWN_OPS}
        client.lock(own_of[role.name]["unlock"])

    wrong, expected_effects = [], {}
    for role in ROLES:
        rows = plan(role, seg, main, own_of[role.name], paths)
        got = run_as(m, role, [cmd for _, cmd, _ in rows])
        assert len(got) == len(rows), (role.name, got)
        ok = {}
        for (name, cmd, want), res in zip(rows, got):
            c = cell(res)
            if c != want:
                wrong.append("%-26s %-16s expected %-7s got %s" % (
                    role.name, name, want, c))
            if name.startswith("shmget") and c == "ok" and res != main:
                wrong.append("%s %s: shmid %s, not %s" % (role.name, name,
                                                          res, main))
            if name in OWN_OPS:
                ok[name] = c == "ok"
        expected_effects[role.name] = effects(role, seg, ok)
    assert not wrong, "mode %04o: %d cells differ from SysV:\n%s" % (
        mode, len(wrong), "\n".join(wrong))

    # the effects, as root sees them
    for role in ROLES:
        for op, want in expected_effects[role.name].items():
            shmid = own_of[role.name][op]
            if want == "EINVAL":
                assert catch(client.stat, shmid) == "EINVAL", (role.name, op)
                assert not os.path.exists(paths[shmid])
                continue
            st = client.stat(shmid)
            got = {k: st[k] for k in want}
            assert got == want, (role.name, op)
            assert st["cuid"] == CUID and st["cgid"] == CGID
            s = os.stat(paths[shmid])
            assert (s.st_uid, s.st_gid, s.st_mode) == (
                want["uid"], want["gid"], stat.S_IFREG | (want["mode"] & 0o777))
    # the main segment: its mode never changed, nobody is left attached
    st = client.stat(main)
    assert (st["uid"], st["gid"], st["mode"], st["nattch"]) == \
        (OWNER, GROUP, mode, 0)


# -- giving a segment away -------------------------------------------------------

def test_owner_gives_segment_away_with_ipc_set_and_loses_control(shmfs, client):
    """IPC_SET by the owner (not the creator) to another uid: allowed, as
    SysV allows; from then on the old owner is a stranger to it."""
    m = shmfs
    (key, shmid), = make_segments(m, client, 0o600, 1)
    p = m.seg_path(key, shmid)
    owner = ROLES[1]
    res = run_as(m, owner, [["stat", shmid], ["set", shmid, NEW_UID, NEW_GID,
                                               "0600"],
                            ["stat", shmid], ["set", shmid, OWNER, GROUP, "0600"],
                            ["chmod", p, "0666"], ["chown", p, OWNER, GROUP],
                            ["rmid", shmid], ["lock", shmid],
                            ["attach", shmid, "ro"], ["pread", p]])
    assert isinstance(res[0], dict) and res[1] == 0
    assert res[2:] == ["EACCES", "EPERM", "EPERM", "EPERM", "EPERM", "EPERM",
                       "EACCES", "EACCES"]
    st = client.stat(shmid)
    assert (st["uid"], st["gid"], st["mode"], st["cuid"]) == \
        (NEW_UID, NEW_GID, 0o600, CUID)
    # the new owner has it all
    new = Role("new-owner", NEW_UID, NEW_UID)
    res = run_as(m, new, [["chmod", p, "0640"], ["set", shmid, NEW_UID,
                                                  NEW_GID, "0604"],
                          ["attach", shmid, "rw"], ["stat", shmid]])
    assert res[:2] == [0, 0] and isinstance(res[2], dict)
    assert res[3]["mode"] == 0o604 and res[3]["nattch"] == 1


def test_creator_keeps_control_after_giving_it_away_twice(shmfs, client):
    """The creator may give the segment away and still control it: cuid
    is an owner whoever uid is, through IPC_SET and through chown."""
    m = shmfs
    (key, shmid), = make_segments(m, client, 0o600, 1)
    p = m.seg_path(key, shmid)
    creator = ROLES[2]
    res = run_as(m, creator, [["set", shmid, NEW_UID, NEW_GID, "0600"],
                              ["chown", p, 7777, 7778],
                              ["set", shmid, 8888, 8889, "0400"],
                              ["stat", shmid], ["attach", shmid, "rw"],
                              ["chmod", p, "0000"], ["stat", shmid],
                              ["chmod", p, "0600"], ["attach", shmid, "rw"],
                              ["lock", shmid], ["unlock", shmid],
                              ["rmid", shmid]])
    assert res[:3] == [0, 0, 0]
    assert (res[3]["uid"], res[3]["gid"], res[3]["mode"], res[3]["cuid"]) == \
        (8888, 8889, 0o400, CUID)
    # the creator is in the owner class: the owner's bits apply to it
    assert res[4] == "EACCES" and res[5] == 0 and res[6] == "EACCES"
    assert res[7] == 0 and isinstance(res[8], dict)
    assert res[9:] == [0, 0, 0]
    assert catch(client.stat, shmid) == "EINVAL"


def test_the_new_owner_cannot_take_the_creator_s_control(shmfs, client):
    """Whoever is given a segment can give it on, but cannot change who
    created it: cuid and cgid stay, and the creator stays an owner."""
    m = shmfs
    (key, shmid), = make_segments(m, client, 0o600, 1)
    p = m.seg_path(key, shmid)
    res = run_as(m, ROLES[1], [["set", shmid, 4242, 4243, "0600"]])
    assert res == [0]
    # 4242 gives it on and is then a stranger to it
    res = run_as(m, Role("x", 4242, 4242), [["chmod", p, "0000"],
                                             ["chown", p, 4244, 4245],
                                             ["chmod", p, "0600"]])
    assert res == [0, 0, "EPERM"]
    st = client.stat(shmid)
    assert (st["uid"], st["gid"], st["cuid"], st["cgid"], st["mode"]) == \
        (4244, 4245, CUID, CGID, 0)
    res = run_as(m, ROLES[2], [["chmod", p, "0600"], ["attach", shmid, "rw"]])
    assert res[0] == 0 and isinstance(res[1], dict)


# -- no way around the rules -----------------------------------------------------

def test_paths_outside_the_mount_reach_nothing_more(shmfs, client):
    """Through .., through a symlink outside the mount, or through the
    published table's symlink, a stranger gets exactly what the direct
    path gives: the same ipcperm, no attach through a symlink (attaches
    use O_NOFOLLOW), no write to the table."""
    m = shmfs
    (key, shmid), = make_segments(m, client, 0o604, 1)
    direct = m.seg_path(key, shmid)
    outside = tempfile.mkdtemp(prefix="shmfs-outside-")
    os.chmod(outside, 0o755)
    link = os.path.join(outside, "link")
    os.symlink(direct, link)
    try:
        check_outside(m, client, key, shmid, direct, link)
    finally:
        shutil.rmtree(outside)


def check_outside(m, client, key, shmid, direct, link):
    dotdot = m.path(".id", "..", sc.key_name(key), "..", ".id", str(shmid))
    stranger = ROLES[-1]
    for p in (direct, link, dotdot):
        res = run_as(m, stranger, [["pread", p], ["pwrite", p, 0],
                                   ["mmap", p, "ro"], ["mmap", p, "rw"],
                                   ["chmod", p, "0666"],
                                   ["chown", p, stranger.uid, stranger.gid],
                                   ["unlink", p] if p != link else ["pid"]])
        assert [cell(x) for x in res[:6]] == \
            ["ok", "EACCES", "ok", "EACCES", "EPERM", "EPERM"], p
        if p != link:
            assert res[6] == "EPERM"
    # an attach is an open with O_NOFOLLOW: not through a symlink
    res = run_as(m, stranger, [["attach_path", link, "ro"],
                               ["attach_path", dotdot, "ro"],
                               ["attach_path", dotdot, "rw"]])
    assert res[0] == "ELOOP" and res[1] == "ok" and res[2] == "EACCES"
    # the published table: readable by all, writable by none
    if m.table:
        t = m.path(".table")
        res = run_as(m, stranger, [["open", t, "r"], ["open", t, "w"],
                                   ["open", t, "rw"], ["unlink", t],
                                   ["chmod", t, "0666"]])
        assert res == [0, "EACCES", "EACCES", "EPERM", "EPERM"]
    st = client.stat(shmid)
    assert (st["uid"], st["gid"], st["mode"], st["nattch"]) == \
        (OWNER, GROUP, 0o604, 0)
    assert os.path.exists(direct)


def test_no_caller_can_set_more_than_the_permission_bits(shmfs, client):
    """Mode bits beyond 0777 never land on a segment, whoever asks and
    however: chmod refuses them (EINVAL), IPC_SET drops them, and the
    kernel strips file-type bits from chmod before the daemon sees them."""
    m = shmfs
    segs = make_segments(m, client, 0o600, 3)
    (k0, s0), (k1, s1), (k2, s2) = segs
    p0, p1 = m.seg_path(k0, s0), m.seg_path(k1, s1)
    for role in (ROLES[0], ROLES[1], ROLES[2]):
        res = run_as(m, role, [["chmod", p0, "04600"], ["chmod", p0, "02600"],
                               ["chmod", p0, "01600"], ["chmod", p0, "07777"],
                               ["set", s1, OWNER, GROUP, "07600"],
                               ["stat", s1], ["chmod", p1, "0170600"],
                               ["fstat", p1], ["set", s2, OWNER, GROUP, "03600"],
                               ["stat", s2]])
        assert res[:4] == ["EINVAL"] * 4, role.name
        assert res[4] == 0 and res[5]["mode"] == 0o600, role.name
        assert res[6] == 0 and res[7]["mode"] == stat.S_IFREG | 0o600
        assert res[8] == 0 and res[9]["mode"] == 0o600
    # a removed segment's SHM_DEST and a lock's SHM_LOCKED stay as they are
    client.lock(s2)
    with client.attach(s2):
        client.rmid(s2)
        res = run_as(m, ROLES[2], [["set", s2, OWNER, GROUP, "0640"],
                                   ["stat", s2]])
        assert res[0] == 0
        assert res[1]["mode"] == 0o640 | sc.SHM_DEST | sc.SHM_LOCKED
    assert catch(client.stat, s2) == "EINVAL"
    assert client.stat(s0)["mode"] == 0o600


# -- the runner, as another user ---------------------------------------------------

def _extra(ctx, cmd, args):
    """pread, pwrite, mmap of a plain open (no attach), attach_path."""
    if cmd == "pread":
        fd = os.open(args[0], os.O_RDONLY)
        try:
            os.pread(fd, 16, 0)
        finally:
            os.close(fd)
        return "ok"
    if cmd == "pwrite":
        fd = os.open(args[0], os.O_WRONLY)
        try:
            os.pwrite(fd, b"w", int(args[1]))
        finally:
            os.close(fd)
        return "ok"
    if cmd == "mmap":
        rw = args[1] == "rw"
        fd = os.open(args[0], os.O_RDWR if rw else os.O_RDONLY)
        try:
            mp = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ |
                           (mmap.PROT_WRITE if rw else 0))
            mp[0:1]
            mp.close()
        finally:
            os.close(fd)
        return "ok"
    if cmd == "attach_path":
        # an attach through another path: the shmid is the inode number
        shmid = os.stat(args[0]).st_ino
        a = ctx["client"].attach(shmid, rdonly=args[1] == "ro", path=args[0])
        ctx["attaches"].append(a)
        return "ok"
    return None


def main(argv):
    root = argv[1]
    cmds, cur = [], []
    for a in argv[2:]:
        if a == "--":
            cmds.append(cur)
            cur = []
        else:
            cur.append(a)
    if cur:
        cmds.append(cur)
    ctx = {"client": sc.Client(root), "last": None, "attaches": []}
    status = 0
    for cmd in cmds:
        try:
            out = _extra(ctx, cmd[0], cmd[1:])
            if out is None:
                out = sc._run_one(ctx, cmd[0], cmd[1:])
            out = json.dumps(out)
        except OSError as e:
            out = "ERR " + sc.errno_name(e.errno)
            status = 1
        print(out, flush=True)
    for a in reversed(ctx["attaches"]):
        a.detach()
    ctx["client"].close()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
