#!/bin/bash
# spike/run-all.sh: every issue-14 fact and cost, in one run (root).
# Sets fuse's wake_here and enable_uring for some runs and ALWAYS puts
# both back to N (trap), and every mount goes with its with_server.sh.
set -u
cd "$(dirname "$0")" && make -s all || exit 1
P=/sys/module/fuse/parameters
restore() { echo N >$P/wake_here; echo N >$P/enable_uring; }
trap restore EXIT
trap 'exit 130' INT TERM
W=./with_server.sh
echo "== $(uname -r), $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== facts"
$W -b per -- ./facts backing
$W -- ./facts ioctl
$W -- ./facts rdonly
$W -- ./facts release
$W -d 100 -- ./facts flush
echo "== costs (5 runs; per-run median, then the median of the runs)"
./bench shm
./bench kctl
$W -- ./bench mmap
$W -- ./bench oldpath
./bench atomic
./bench pingpong
$W -- ./bench rt "rt, both free"
$W -c 1 -- taskset -c 1 ./bench rt "rt, both pinned on CPU 1"
$W -c 0 -- taskset -c 1 ./bench rt "rt, server CPU 0, client CPU 1"
BENCH_N=800 $W -- ./bench fork k
BENCH_N=800 $W -- ./bench fork p
BENCH_N=800 $W -- ./bench fork c
echo Y >$P/wake_here
$W -- ./bench rt "rt, wake_here=Y, both free"
$W -c 0 -- taskset -c 1 ./bench rt "rt, wake_here=Y, split CPUs"
BENCH_N=800 $W -- ./bench fork c
echo N >$P/wake_here
echo "== FUSE over io_uring"
$W -u -- sh -c 'sleep 0.3; ./facts uring' # enable_uring is N
echo Y >$P/enable_uring
$W -u -- sh -c 'sleep 0.3; ls $MNT/ctl >/dev/null; ./facts uring;
  ./bench rt "rt over io_uring, both free";
  taskset -c 1 ./bench rt "rt over io_uring, client on CPU 1";
  BENCH_N=800 ./bench fork c; ./facts uring'
echo N >$P/enable_uring
echo "== after: wake_here=$(cat $P/wake_here) enable_uring=$(cat $P/enable_uring)" \
     "mounts left: $(mount | grep -c i14spike)"
