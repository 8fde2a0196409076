#!/bin/sh
# `make stop`: unmount the shmfs at $1, also when its daemon is gone (a
# dead mount, ENOTCONN); when it is busy, say who holds it.
set -eu
# shellcheck source=scripts/mnt.sh
. "$(dirname -- "$0")/mnt.sh"
mnt=$(mnt_abs "${1:-/shm}")
type=$(mnt_type "$mnt")
case $type in
"")
	say "shmfs: $mnt is not mounted"
	exit 0
	;;
fuse.shmfs) ;;
*)
	say "shmfs: $mnt is a $type mount, not shmfs: left alone" >&2
	exit 1
	;;
esac
alive=yes
mnt_alive "$mnt" || alive=""
if err=$(fusermount3 -u "$mnt" 2>&1); then
	if [ -n "$alive" ]; then
		say "shmfs: unmounted $mnt"
	else
		say "shmfs: removed the dead mount at $mnt (its daemon was gone)"
	fi
	exit 0
fi
if [ -z "$(mnt_type "$mnt")" ]; then
	say "shmfs: unmounted $mnt"
	exit 0
fi
say "shmfs: cannot unmount $mnt: ${err#fusermount3: }" >&2
holders=$(mnt_holders "$mnt")
if [ -n "$holders" ]; then
	echo "shmfs: these processes hold it (a segment attached, a file open" \
		"there, or libshmfs's .ctl and .id, which a process that has" \
		"used the library keeps open until it exits or execs):" >&2
	printf '%s\n' "$holders" | sed 's/^/  /' >&2
fi
cat >&2 <<EOT
shmfs: end them (or detach), then: make stop MNT='$mnt'; or unmount
  lazily: fusermount3 -uz '$mnt' takes the name away now and the daemon
  serves the holders until the last lets go, then exits
EOT
exit 1
