#!/bin/sh
# Install the Debian packages the build and the tests need, when missing.
# Called by `make deps` (and so by `make run` and `make check`); with
# arguments, installs those packages instead (`make deb-deps`).
# postgresql-15 is the real SysV program tests/test_realprog_postgres.py
# runs on shmfs, with servers of its own.
set -eu
pkgs="gcc make pkg-config libfuse3-dev fuse3 python3 python3-pytest attr strace util-linux postgresql-15"
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

# PostgreSQL's package makes a cluster (Debian's "main") and may start it.
# A cluster the install made is stopped and set to start by hand
# (start.conf "manual", which systemd's generator and the init script
# both honour): the tests start servers of their own, and nothing is left
# listening.  Clusters that were there before are left alone.
clusters() {
	command -v pg_lsclusters >/dev/null 2>&1 || return 0
	pg_lsclusters -h 2>/dev/null | awk '{ print $1 "/" $2 "/" $4 }'
}
quiet_new_clusters() {
	for vcs in $(clusters); do
		v=${vcs%%/*} rest=${vcs#*/}
		c=${rest%/*} state=${rest#*/}
		case " $1 " in *" $v/$c "*) continue ;; esac
		case $state in online*) pg_ctlcluster "$v" "$c" stop ;; esac
		conf=/etc/postgresql/$v/$c/start.conf
		if [ -f "$conf" ]; then
			sed -i 's/^[[:space:]]*auto[[:space:]]*$/manual/' "$conf"
		fi
		echo "shmfs: PostgreSQL cluster $v/$c stopped, set to start by hand ($conf)"
	done
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
}

echo "shmfs: installing$missing"
export DEBIAN_FRONTEND=noninteractive
before=$(clusters | sed 's|/[^/]*$||' | tr '\n' ' ')
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing </dev/null
quiet_new_clusters "$before"
