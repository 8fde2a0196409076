#!/bin/sh
# `make run`: mount shmfs at $1 in the background and show it working.
# A second run finds the mount and shows it as it is; a dead mount (its
# daemon gone) is removed and mounted afresh.
set -eu
# shellcheck source=scripts/mnt.sh
. "$(dirname -- "$0")/mnt.sh"
top=$(cd -- "$(dirname -- "$0")/.." && pwd)
b=$top/build
mnt=$(mnt_abs "${1:-/shm}")

# A command, printed as a shell would read it back, then run.
quote() {
	case $1 in
	*[!A-Za-z0-9_./=:,+-]* | "")
		printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
		;;
	*) printf '%s' "$1" ;;
	esac
}
show() {
	printf '$'
	for _w in "$@"; do
		printf ' '
		quote "$_w"
	done
	echo
	"$@" || true
	echo
}

fresh=""
type=$(mnt_type "$mnt")
if [ "$type" = fuse.shmfs ] && ! mnt_alive "$mnt"; then
	say "shmfs: $mnt is a dead mount (its daemon is gone): removing it"
	fusermount3 -u "$mnt"
	type=$(mnt_type "$mnt")
fi
case $type in
fuse.shmfs)
	say "shmfs: already mounted at $mnt (make stop MNT=$(quote "$mnt")" \
		"unmounts it); as it is:"
	;;
"")
	mkdir -p -- "$mnt"
	"$b/shmfs" -o allow_other "$mnt"
	i=0
	until [ "$(mnt_type "$mnt")" = fuse.shmfs ]; do
		i=$((i + 1))
		[ $i -lt 50 ] || {
			echo "shmfs: mount did not appear" >&2
			exit 1
		}
		sleep 0.1
	done
	say "shmfs: mounted at $mnt"
	fresh=yes
	;;
*)
	say "shmfs: $mnt is already a mount point of something else ($type)" >&2
	exit 1
	;;
esac

echo
if [ -n "$fresh" ]; then
	echo "A segment made by util-linux's ipcmk, run on shmfs through the preload library:"
	show env LD_PRELOAD="$b/libshmfs-preload.so" SHMFS_ROOT="$mnt" \
		ipcmk -M 8192 -p 0640
fi
set -- "$mnt"/0x*/
[ -d "$1" ] && show ls -l "$@"
for f in "$mnt"/0x*/*; do
	[ -e "$f" ] || continue
	show getfattr -d -m - "$f"
	break
done
show cat "$mnt/status"
pre="LD_PRELOAD=$(quote "$b/libshmfs-preload.so") SHMFS_ROOT=$(quote "$mnt")"
cat <<EOT
Next:
  $pre ipcs -m          # the SysV view of the same table
  SHMFS_ROOT=$(quote "$mnt") $(quote "$b/progs/shmfs_example")
  rm $(quote "$mnt")/0x*/*         # IPC_RMID
  make stop MNT=$(quote "$mnt")    # unmount (or: fusermount3 -u $(quote "$mnt"))
EOT
