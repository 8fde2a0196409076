#!/bin/sh
# `make deb`: build the Debian packages (debian/) from a copy of this
# checkout, so that the build's `make clean` never touches build/ here,
# check them with lintian (any error fails), and leave the .deb files,
# the .changes and lintian's report in $1.
set -eu
out=${1:?usage: deb.sh OUTDIR}
top=$(cd -- "$(dirname -- "$0")/.." && pwd)
version=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)
mkdir -p -- "$out"
out=$(cd -- "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/shmfs-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/shmfs-$version
mkdir "$src"
# What git tracks, and new files it does not ignore; a tree without git:
# everything but the build directories.
if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$top" && git ls-files -z -co --exclude-standard |
		xargs -0 tar -cf - --) | tar -xf - -C "$src"
else
	(cd "$top" && tar -cf - --exclude='./build' --exclude='./build-*' .) |
		tar -xf - -C "$src"
fi
echo "deb: dpkg-buildpackage -us -uc -b in $src"
if ! (cd "$src" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
	tail -n 60 "$work/build.log" >&2
	echo "deb: dpkg-buildpackage failed" >&2
	exit 1
fi
rm -f "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo
mv "$work"/*.deb "$work"/*.changes "$work"/*.buildinfo "$out"/
cp "$work/build.log" "$out/build.log"
changes=$(ls "$out"/*.changes)
# lintian warns when run as root; that warning is about lintian itself
status=0
lintian --fail-on error --info "$changes" >"$out/lintian.txt" 2>&1 || status=$?
grep -v 'running with root privileges' "$out/lintian.txt" || true
if [ "$status" != 0 ]; then
	echo "deb: lintian found errors (status $status)" >&2
	exit 1
fi
echo "deb: built in $out:"
ls "$out"
