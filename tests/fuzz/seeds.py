#!/usr/bin/python3
"""Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/).

The ctl inputs follow the format fuzz_ctl.c reads: 4 bytes of limits, then
operations, each an op byte (low 5 bits the operation, 0x20/0x40/0x80 the
steering bits) and its fields.  Run it again after changing that format;
inputs found by the fuzzer (crash-*, kept as regression tests) are not
touched.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
A, B, C = 0x20, 0x40, 0x80
(GET, CTL, ACCESS, DETACH, FORK, FORK_CHILD, FORK_ABORT, SESSION_OPEN,
 SESSION_START, SESSION_CLOSE, LOOKUP_ID, LOOKUP_NAME, FORGET, OPEN, RELEASE,
 SETATTR, UNLINK, WRITE, CLOCK, WALK, LOOKUP_SERIAL, ATTACH, PIDS,
 SPAWN) = range(24)
ROOT, ALICE, BOB, CAROL, DAVE, ALICE2, NOBODY = range(7)
IPC_CREAT, IPC_EXCL = 0o1000, 0o2000
IPC_RMID, IPC_SET, IPC_STAT, IPC_INFO = 0, 1, 2, 3
SHM_LOCK, SHM_UNLOCK, SHM_STAT, SHM_INFO, SHM_STAT_ANY = 11, 12, 13, 14, 15
O_RDONLY, O_RDWR = 0, 2


def who(persona, pid=1):
    return bytes([persona | (pid - 1) << 3])


def raw_who(uid, gid, groups=(), pid=1, many=False, fail=False):
    """A caller read raw: uid, gid, then 3 groups (40 with many; with
    fail, getgroups fails)."""
    g = list(groups)[:3] + [0] * (3 - len(groups[:3]))
    flags = len(groups[:3]) | (0x80 if many else 0) | (0x40 if fail else 0)
    return bytes([7 | (pid - 1) << 3]) + struct.pack("<IIB3I", uid, gid,
                                                      flags, *g)


def config(shmmni=8, shmseg=4, shmall=64, maxsel=4, minsel=1, timed=True):
    return bytes([shmmni, shmseg, shmall, maxsel | minsel << 3 |
                  (0 if timed else 0x40)])


def get(persona, pid, key, size, flags, steer=0, caller=None):
    return bytes([GET | steer]) + (caller or who(persona, pid)) + \
        struct.pack("<iiQii", key, flags, size, -1, 0)


def ctl(persona, pid, shmid_sel, cmd, uid=0, gid=0, mode=0, memlock=0,
        raw_id=None, caller=None):
    """shmctl of a known shmid (the shmid_sel-th seen) or of raw_id."""
    steer = 0 if raw_id is not None else A
    ds = struct.pack("<iiIIIIIIQqqqiiQ", 0, 0, uid & 0xFFFFFFFF,
                     gid & 0xFFFFFFFF, 0, 0, mode, 0, 0, 0, 0, 0, 0, 0, 0)
    return bytes([CTL | steer]) + (caller or who(persona, pid)) + \
        struct.pack("<iiiiQ", raw_id if raw_id is not None else 0, cmd, 0,
                    shmid_sel, memlock) + ds


def access(persona, pid, shmid_sel, mask):
    # the shmid is steered by the low byte of mask: selector 0
    return bytes([ACCESS | A]) + who(persona, pid) + \
        struct.pack("<ii", 0, mask | shmid_sel << 8)


def detach(pid, shmid_sel):
    return bytes([DETACH | A]) + who(ROOT, pid) + struct.pack("<ii", 0, shmid_sel)


def session_open(pid):
    return bytes([SESSION_OPEN]) + who(ROOT, pid)


def session_start(pid):
    return bytes([SESSION_START]) + who(ROOT, pid) + bytes(8)


def session_close(pid):
    return bytes([SESSION_CLOSE]) + who(ROOT, pid)


def attach(persona, pid, seg_sel, rdonly=False):
    return bytes([ATTACH | A]) + who(persona, pid) + bytes([seg_sel]) + \
        struct.pack("<IQ", O_RDONLY if rdonly else O_RDWR, 0)


def open_(persona, pid, seg_sel, flags):
    return bytes([OPEN | A]) + who(persona, pid) + bytes([seg_sel]) + \
        struct.pack("<IQ", flags, 0)


def fork(pid):
    return bytes([FORK]) + who(ROOT, pid) + bytes(16)


def fork_child(pid, nth=0, abort=False):
    return bytes([(FORK_ABORT if abort else FORK_CHILD) | A]) + \
        who(ROOT, pid) + struct.pack("<QII", 0, nth, 0)


def pids(persona, pid, seg_sel):
    return bytes([PIDS | A]) + who(persona, pid) + bytes([seg_sel]) + bytes(8)


def setattr_(persona, pid, seg_sel, mode=-1, uid=-1, gid=-1):
    return bytes([SETATTR | A]) + who(persona, pid) + bytes([seg_sel]) + \
        struct.pack("<Qqqq", 0, mode, uid, gid)


def unlink(persona, pid, shmid_sel):
    return bytes([UNLINK | A | B]) + who(persona, pid) + \
        struct.pack("<II", shmid_sel, 0)


def lookup_serial(seg_sel):
    return bytes([LOOKUP_SERIAL | A, seg_sel]) + bytes(8)


def lookup(shmid_sel, hold=True, by_name=False):
    return bytes([(LOOKUP_NAME if by_name else LOOKUP_ID) | A | B |
                  (C if hold else 0)]) + struct.pack("<II", shmid_sel, 0)


def forget(which, n=1):
    return bytes([FORGET, which, n])


def release(which):
    return bytes([RELEASE, which])


def write(which, off, data):
    return bytes([WRITE, which, len(data)]) + struct.pack("<I", off) + data


def clock(n):
    return bytes([CLOCK, n])


def walk(frm, stop):
    return bytes([WALK]) + struct.pack("<iB", frm, stop)


def spawn(pid):
    return bytes([SPAWN]) + who(ROOT, pid)


CTL_SEEDS = {
    "attach-fork-detach": config() + b"".join([
        get(ALICE, 1, 0x1234, 4097, IPC_CREAT | 0o640),
        session_open(1), attach(ALICE, 1, 0), attach(ALICE, 1, 0, True),
        write(0, 10, b"hello"), pids(ALICE, 1, 0), fork(1),
        pids(CAROL, 2, 0), fork_child(2), detach(2, 0),
        ctl(ALICE, 1, 0, IPC_STAT), ctl(ALICE, 1, 0, IPC_RMID),
        detach(1, 0), session_close(2), session_close(1),
    ]),
    "permissions": config(shmseg=3) + b"".join([
        get(ALICE, 1, 0x77, 100, IPC_CREAT | 0o640),
        get(CAROL, 2, 0x77, 0, 0o400), get(CAROL, 2, 0x77, 0, 0o200),
        get(BOB, 3, 0x77, 0, 0o040), get(DAVE, 4, 0x77, 0, 0o004),
        access(CAROL, 2, 0, 4), access(DAVE, 4, 0, 6),
        session_open(2), attach(CAROL, 2, 0, True), attach(CAROL, 2, 0),
        ctl(CAROL, 2, 0, IPC_SET, 3000, 100, 0o777),
        ctl(ALICE, 1, 0, IPC_SET, 2000, 200, 0o606),
        ctl(ALICE, 1, 0, IPC_STAT), ctl(BOB, 3, 0, IPC_RMID),
        setattr_(CAROL, 2, 0, mode=0o4777), setattr_(ALICE, 1, 0, mode=0o4777),
        setattr_(ALICE, 1, 0, mode=0o600, uid=5, gid=6),
        unlink(CAROL, 2, 0), unlink(ALICE, 1, 0), session_close(2),
    ]),
    "limits": config(shmmni=3, shmseg=1, shmall=4, maxsel=5, minsel=2) +
    b"".join([get(ROOT, 1, 0, 4096 * n, 0o600) for n in (1, 2, 3, 1, 0)] + [
        get(ROOT, 1, 5, 1 << 20, IPC_CREAT), get(ROOT, 1, 5, 1, IPC_CREAT),
        ctl(ROOT, 1, 0, IPC_INFO, raw_id=0), ctl(ROOT, 1, 0, SHM_INFO, raw_id=0),
        ctl(ROOT, 1, 0, SHM_STAT, raw_id=1), ctl(ALICE, 1, 0, SHM_STAT_ANY, raw_id=0),
        session_open(1), attach(ROOT, 1, 0), attach(ROOT, 1, 1),
        ctl(ROOT, 1, 0, IPC_RMID), ctl(ROOT, 1, 1, IPC_RMID),
        get(ROOT, 1, 0, 4096, 0o600), session_close(1),
    ]),
    "locks": config() + b"".join([
        get(ALICE, 1, 9, 3 * 4096, IPC_CREAT | 0o600),
        ctl(ALICE, 1, 0, SHM_LOCK, memlock=0),
        ctl(ALICE, 1, 0, SHM_LOCK, memlock=4096),
        ctl(ALICE, 1, 0, SHM_LOCK, memlock=1 << 20),
        ctl(BOB, 2, 0, SHM_UNLOCK), ctl(ALICE, 1, 0, SHM_UNLOCK),
        ctl(ROOT, 1, 0, SHM_LOCK), ctl(ALICE, 1, 0, IPC_RMID),
    ]),
    "orphan-fork": config() + b"".join([
        get(ROOT, 3, 0, 4096, 0o600), session_open(3), attach(ROOT, 3, 0),
        clock(3), fork(3), clock(7), fork(3), spawn(4), session_close(4),
        session_close(4), fork_child(4, 0, abort=True),
        pids(ROOT, 3, 0), session_close(3),
    ]),
    "lookups": config(shmseg=8) + b"".join([
        get(ROOT, 1, 0x42, 10, IPC_CREAT | 0o666), lookup(0), lookup(0),
        lookup(0, by_name=True), open_(BOB, 2, 0, O_RDONLY),
        ctl(ROOT, 1, 0, IPC_RMID), forget(0, 1), release(0), walk(-5, 3),
        forget(0, 1), session_start(2), session_start(2), session_close(2),
    ]),
}

CTL_SEEDS.update({
    "detach-older-first": config(shmseg=8) + b"".join([
        get(ROOT, 1, 0x10, 100, IPC_CREAT | 0o666),
        get(ROOT, 1, 0x11, 100, IPC_CREAT | 0o666),
        session_open(1), attach(ALICE, 1, 0), attach(ALICE, 1, 1),
        attach(ALICE, 1, 0), detach(1, 0), detach(1, 0), fork(1),
        fork_child(2), detach(2, 1), session_close(1), session_close(2),
    ]),
    "held-after-free": config() + b"".join([
        get(ROOT, 1, 0x20, 5000, IPC_CREAT | 0o600), lookup(0), lookup(0),
        open_(ROOT, 1, 0, O_RDWR), write(0, 4999, b"z"), release(0),
        ctl(ROOT, 1, 0, IPC_RMID), lookup_serial(0), pids(ROOT, 1, 0),
        setattr_(ROOT, 1, 0, mode=0o644), forget(0, 1), lookup_serial(0),
        forget(0, 1), lookup_serial(0),
    ]),
    "big-table": config(shmmni=0x80 + 8, shmall=200, maxsel=4) + b"".join(
        [get(ROOT, 1, 0, 1, 0o600) for _ in range(66)] + [
            ctl(ROOT, 1, 3, IPC_RMID), ctl(ROOT, 1, 64, IPC_RMID),
            get(ROOT, 1, 0, 1, 0o600), walk(60, 7), walk(-1, 8),
            ctl(ROOT, 1, 0, IPC_INFO, raw_id=0),
            ctl(ROOT, 1, 0, SHM_STAT_ANY, raw_id=65)]),
    "groups": config() + b"".join([
        get(ALICE, 1, 0x30, 10, IPC_CREAT | 0o640),
        ctl(ROOT, 1, 0, IPC_SET, 1000, 1234, 0o640),
        ctl(0, 2, 0, IPC_STAT, caller=raw_who(5000, 5000, [1, 2, 3],
                                               many=True, pid=2)),
        ctl(0, 2, 0, IPC_STAT, caller=raw_who(5000, 5000, [1200], many=True,
                                               pid=2)),
        ctl(0, 2, 0, IPC_STAT, caller=raw_who(5000, 1234, [7], fail=True,
                                               pid=2)),
        ctl(0, 2, 0, IPC_STAT, caller=raw_who(5000, 5000, [1234], fail=True,
                                               pid=2)),
        get(0, 3, 0x31, 10, IPC_CREAT | 0o600,
            caller=raw_who(0xFFFFFFFF, 0xFFFFFFFF, pid=3)),
    ]),
    "ipc-set-minus-one": config() + b"".join([
        get(ALICE, 1, 0x40, 10, IPC_CREAT | 0o600),
        ctl(ALICE, 1, 0, IPC_SET, -1, 100, 0o600),
        ctl(ALICE, 1, 0, IPC_SET, 1000, -1, 0o600),
        ctl(ALICE, 1, 0, IPC_SET, 2000, 200, 0o7777),
        ctl(ALICE, 1, 0, IPC_SET, 3000, 300, 0o600),
        ctl(ALICE, 1, 0, IPC_STAT), ctl(ALICE, 1, 0, -1),
        ctl(ALICE, 1, 0, 0x100 | IPC_STAT), ctl(ALICE, 1, 0, IPC_RMID),
    ]),
})

NAMES_SEEDS = {
    "key": b"0x0000162e", "key-private": b"0x00000000", "key-max": b"0xffffffff",
    "shmid": b"32768", "shmid-zero": b"0", "shmid-max": b"2147483647",
    "shmid-wrap": b"4294967296", "upper": b"0x0000162E", "prefix": b"0X0000162e",
    "fixed": b".ctl", "status": b"status",
}


def main():
    for target, seeds in (("ctl", CTL_SEEDS), ("names", NAMES_SEEDS)):
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, "seed-" + name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
