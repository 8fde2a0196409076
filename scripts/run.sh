#!/bin/sh
# `make run`: mount shmfs at $1 in the background and show it working.
set -eu
mnt=${1:-/shm}
top=$(cd "$(dirname "$0")/.." && pwd)
b=$top/build

if mountpoint -q "$mnt" 2>/dev/null; then
	if grep -q " $mnt fuse.shmfs " /proc/mounts; then
		echo "shmfs: already mounted at $mnt ('make stop MNT=$mnt' unmounts it)"
	else
		echo "shmfs: $mnt is already a mount point of something else" >&2
		exit 1
	fi
else
	mkdir -p "$mnt"
	"$b/shmfs" -o allow_other "$mnt"
	i=0
	until mountpoint -q "$mnt"; do
		i=$((i + 1))
		[ $i -lt 50 ] || { echo "shmfs: mount did not appear" >&2; exit 1; }
		sleep 0.1
	done
	echo "shmfs: mounted at $mnt"
fi

show() { echo "\$ $*"; sh -c "$*"; echo; }
pre="LD_PRELOAD=$b/libshmfs-preload.so SHMFS_ROOT=$mnt"
echo
echo "A segment made by util-linux's ipcmk, run on shmfs through the preload library:"
show "$pre ipcmk -M 8192 -p 0640"
show "ls -l $mnt/*/"
f=$(ls -d "$mnt"/0x*/* 2>/dev/null | head -1)
[ -n "$f" ] && show "getfattr -d -m - $f"
show "cat $mnt/status"
cat <<EOT
Next:
  $pre ipcs -m          # the SysV view of the same table
  SHMFS_ROOT=$mnt $b/progs/shmfs_example
  rm $mnt/0x*/*         # IPC_RMID
  make stop MNT=$mnt    # unmount (or: fusermount3 -u $mnt)
EOT
