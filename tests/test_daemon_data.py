"""The segment's bytes: zero fill, sharing between mappings, read()/write()
and tools seeing mapped stores, data kept across detach, no leaks."""

import hashlib
import os
import subprocess
import time

import pytest


import shmfs_client as sc
from shmfs_client import IPC_CREAT, IPC_PRIVATE


@pytest.fixture
def shmfs(shmfs_each_path):
    """Every test here runs on both data paths."""
    return shmfs_each_path

KEY = 0xDA7A
PAGE = os.sysconf("SC_PAGE_SIZE")


def test_new_segment_is_zero_filled(shmfs, client):
    shmid = client.shmget(KEY, 3 * PAGE + 5, IPC_CREAT | 0o600)
    with client.attach(shmid) as a:
        assert a.read() == bytes(3 * PAGE + 5)
    with open(shmfs.seg_path(KEY, shmid), "rb") as f:
        assert f.read() == bytes(3 * PAGE + 5)


def test_two_processes_sharing_a_mapping_see_each_others_stores(shmfs, client):
    shmid = client.shmget(KEY, PAGE, IPC_CREAT | 0o600)
    a = client.attach(shmid)
    rounds = 200
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            b = sc.attach(shmfs.root, shmid)
            deadline = time.monotonic() + 30
            for i in range(rounds):
                while b.read(0, 1) != b"\x01":   # wait for my turn
                    if time.monotonic() > deadline:
                        os._exit(3)
                b.write(8, i.to_bytes(4, "little"))
                b.write(0, b"\x02")
            b.detach()
            code = 0
        finally:
            os._exit(code)
    try:
        deadline = time.monotonic() + 30
        for i in range(rounds):
            a.write(0, b"\x01")
            while a.read(0, 1) != b"\x02":
                assert time.monotonic() < deadline, "child never answered round %d" % i
            assert int.from_bytes(a.read(8, 4), "little") == i
    finally:
        _, status = os.waitpid(pid, 0)
    assert status == 0
    assert client.stat(shmid)["nattch"] == 1
    a.detach()


def test_stores_of_another_user_process_are_seen(shmfs, client):
    shmid = client.shmget(KEY, PAGE, IPC_CREAT | 0o666)
    a = client.attach(shmid)
    res, _ = shmfs.script(["attach", shmid], ["write", 100, "00112233445566"], uid=1000)
    assert res[1] == 0
    assert a.read(100, 7) == bytes.fromhex("00112233445566")
    a.detach()


def test_cat_after_mmap_writes_sees_them(shmfs, client):
    size = 5 * PAGE + 123
    shmid = client.shmget(KEY, size, IPC_CREAT | 0o600)
    a = client.attach(shmid)
    data = hashlib.sha256(b"x").digest() * (size // 32 + 1)
    data = data[:size]
    a.write(0, data)
    for p in (shmfs.seg_path(KEY, shmid), shmfs.id_path(shmid)):
        r = subprocess.run(["cat", p], capture_output=True)
        assert r.returncode == 0
        assert r.stdout == data
    a.write(size - 1, b"!")     # a later store is seen too
    r = subprocess.run(["tail", "-c", "1", shmfs.id_path(shmid)], capture_output=True)
    assert r.stdout == b"!"
    r = subprocess.run(["hexdump", "-C", "-n", "16", shmfs.id_path(shmid)],
                       capture_output=True, text=True)
    if r.returncode == 0:
        assert r.stdout.split("\n")[0].startswith("00000000  " + " ".join(
            "%02x" % b for b in data[:8]))
    a.detach()


def test_read_after_detach_sees_the_stores(shmfs, client):
    shmid = client.shmget(KEY, 2 * PAGE, IPC_CREAT | 0o600)
    with client.attach(shmid) as a:
        a.write(PAGE - 2, b"span")
    assert client.stat(shmid)["nattch"] == 0
    with open(shmfs.id_path(shmid), "rb") as f:
        data = f.read()
    assert len(data) == 2 * PAGE
    assert data[PAGE - 2:PAGE + 2] == b"span"
    with client.attach(shmid, rdonly=True) as b:
        assert b.read(PAGE - 2, 4) == b"span"


def test_write_syscall_is_seen_by_mappings(shmfs, client):
    shmid = client.shmget(KEY, PAGE, IPC_CREAT | 0o600)
    a = client.attach(shmid)
    fd = os.open(shmfs.seg_path(KEY, shmid), os.O_RDWR)
    try:
        assert os.pwrite(fd, b"written", 10) == 7
    finally:
        os.close(fd)
    assert a.read(10, 7) == b"written"
    with client.attach(shmid) as b:
        assert b.read(10, 7) == b"written"
    a.detach()


def test_read_stops_at_segsz(shmfs, client):
    shmid = client.shmget(KEY, 4097, IPC_CREAT | 0o600)
    with client.attach(shmid) as a:
        a.write(4090, b"abcdefg")
    fd = os.open(shmfs.id_path(shmid), os.O_RDONLY)
    try:
        assert os.pread(fd, 100, 4090) == b"abcdefg"
        assert os.pread(fd, 100, 4097) == b""
        assert os.pread(fd, 100, 9000) == b""
        assert len(os.pread(fd, 10000, 0)) == 4097
    finally:
        os.close(fd)


def test_store_past_segsz_in_last_page_is_not_readable(shmfs, client):
    # native shmat maps whole pages; bytes past shm_segsz are never data
    shmid = client.shmget(KEY, 100, IPC_CREAT | 0o600)
    with client.attach(shmid) as a:
        a.write(90, b"0123456789")
        a.write(100, b"X" * 10)
    with open(shmfs.id_path(shmid), "rb") as f:
        data = f.read()
    assert len(data) == 100 and data[90:] == b"0123456789"


def test_data_kept_while_unattached(shmfs, client):
    shmid = client.shmget(KEY, PAGE, IPC_CREAT | 0o600)
    with client.attach(shmid) as a:
        a.write(0, b"persist")
    time.sleep(0.05)
    assert client.shmget(KEY, PAGE, 0) == shmid
    with client.attach(shmid) as b:
        assert b.read(0, 7) == b"persist"


def test_segments_do_not_share_data(shmfs, client):
    x = client.shmget(IPC_PRIVATE, PAGE, 0o600)
    y = client.shmget(IPC_PRIVATE, PAGE, 0o600)
    with client.attach(x) as a, client.attach(y) as b:
        a.write(0, b"xxxx")
        b.write(0, b"yyyy")
        assert a.read(0, 4) == b"xxxx"
        assert b.read(0, 4) == b"yyyy"


def test_recreated_key_gets_fresh_zeroed_memory(shmfs, client):
    old = client.shmget(KEY, PAGE, IPC_CREAT | 0o600)
    with client.attach(old) as a:
        a.write(0, b"secret" * 100)
    client.rmid(old)
    new = client.shmget(KEY, PAGE, IPC_CREAT | 0o600)
    with client.attach(new) as b:
        assert b.read() == bytes(PAGE)
    with open(shmfs.id_path(new), "rb") as f:
        assert f.read() == bytes(PAGE)


def test_large_segment_round_trip(shmfs, client):
    size = 16 << 20
    shmid = client.shmget(KEY, size, IPC_CREAT | 0o600)
    block = hashlib.sha512(b"shmfs").digest() * (PAGE // 64)
    a = client.attach(shmid)
    for off in range(0, size, 1 << 20):
        a.write(off, block[: (off >> 20) + 1] + b"|")
    b = client.attach(shmid, rdonly=True)
    for off in range(0, size, 1 << 20):
        n = (off >> 20) + 1
        assert b.read(off, n + 1) == block[:n] + b"|"
    a.detach()
    b.detach()
    h = hashlib.sha256()
    with open(shmfs.id_path(shmid), "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    want = bytearray(size)
    for off in range(0, size, 1 << 20):
        n = (off >> 20) + 1
        want[off:off + n + 1] = block[:n] + b"|"
    assert h.hexdigest() == hashlib.sha256(want).hexdigest()


def test_read_only_attach_cannot_store(shmfs, client):
    shmid = client.shmget(KEY, PAGE, IPC_CREAT | 0o600)
    code = ("import sys,os,ctypes; sys.path.insert(0,%r); import shmfs_client as sc;"
            "a=sc.Client(%r).attach(%d,rdonly=True); print('ok',flush=True);"
            "ctypes.memmove(a.addr, b'z', 1)"
            % (os.path.dirname(sc.script_path()), shmfs.root, shmid))
    r = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout == "ok\n"
    assert r.returncode == -11  # SIGSEGV on a PROT_READ mapping
    with client.attach(shmid) as a:
        assert a.read(0, 1) == b"\0"
    assert client.stat(shmid)["nattch"] == 0
