#!/bin/bash
# spike/with_server.sh: start tsrv on a fresh temporary mount, run one
# command with MNT and STATS in its environment, and always clean up
# (unmount with fusermount3 -u, stop the server by its pid, remove the
# directory), also when the command fails or is interrupted.
#   spike/with_server.sh [-c CPU] [tsrv options] -- command [args]
# -c CPU pins the server to that CPU (taskset).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
CPU=
if [ "${1:-}" = -c ]; then CPU=$2; shift 2; fi
SOPTS=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do SOPTS+=("$1"); shift; done
shift
D=$(mktemp -d /tmp/i14spike.XXXXXX)
MNT=$D/mnt
mkdir "$MNT"
PID=
cleanup() {
	if mountpoint -q "$MNT"; then
		fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
	fi
	if [ -n "$PID" ]; then
		kill "$PID" 2>/dev/null
		wait "$PID" 2>/dev/null
	fi
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -n "$CPU" ]; then
	taskset -c "$CPU" "$HERE/tsrv" "$MNT" "$D/stats" "${SOPTS[@]}" >"$D/out" 2>"$D/err" &
else
	"$HERE/tsrv" "$MNT" "$D/stats" "${SOPTS[@]}" >"$D/out" 2>"$D/err" &
fi
PID=$!
for _ in $(seq 200); do
	grep -q ready "$D/out" 2>/dev/null && break
	kill -0 "$PID" 2>/dev/null || break
	sleep 0.02
done
if ! grep -q ready "$D/out"; then
	echo "tsrv did not start:" >&2; cat "$D/err" >&2; exit 1
fi
MNT=$MNT STATS=$D/stats "$@"
rc=$?
[ -s "$D/err" ] && [ -n "${SHOW_ERR:-}" ] && cat "$D/err" >&2
exit $rc
