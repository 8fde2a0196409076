#!/bin/sh
# Install the Debian packages the build and the tests need, when missing.
# Called by `make deps` (and so by `make run` and `make check`); with
# arguments, installs those packages instead (`make deb-deps`).
set -eu
pkgs="gcc make pkg-config libfuse3-dev fuse3 python3 python3-pytest attr strace util-linux"
[ $# -eq 0 ] || pkgs=$*
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "shmfs: missing packages:$missing (run as root, or install them)" >&2
	exit 1
fi
echo "shmfs: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing </dev/null
