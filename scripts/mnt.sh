# Sourced by scripts/run.sh and scripts/stop.sh: mount point lookups that
# work for any path (mountinfo writes a space as \040; findmnt decodes it)
# and never stat the mount itself (a dead FUSE mount answers ENOTCONN, a
# live one would be asked).

# echo, but a backslash in a path is printed as it is (dash's echo reads
# "\c" as the end of its output).
say() {
	printf '%s\n' "$*"
}

# The absolute path of $1 with its directory resolved, the last component
# left alone.
mnt_abs() {
	_dir=$(dirname -- "$1")
	_base=$(basename -- "$1")
	_dir=$(cd -- "$_dir" 2>/dev/null && pwd -P) || {
		say "shmfs: $(dirname -- "$1"): no such directory" >&2
		return 1
	}
	case $_dir in
	/) printf '/%s\n' "$_base" ;;
	*) printf '%s/%s\n' "$_dir" "$_base" ;;
	esac
}

# The file system type of the topmost mount at $1, empty if none.
mnt_type() {
	findmnt -rn -o FSTYPE -M "$1" 2>/dev/null | tail -n 1
}

# Is the shmfs mount at $1 answering?  A dead one fails with ENOTCONN.
mnt_alive() {
	stat -- "$1/status" >/dev/null 2>&1
}

# The processes that keep the mount at $1 busy, one "pid (command): what"
# a line: an open descriptor, a mapping or a working directory in it.
mnt_holders() {
	for _p in /proc/[0-9]*; do
		_what=""
		for _fd in "$_p"/fd/*; do
			_t=$(readlink -- "$_fd" 2>/dev/null) || continue
			case $_t in
			"$1" | "$1"/*)
				_what="open $_t"
				break
				;;
			esac
		done
		[ -n "$_what" ] || ! grep -qF -- " $1/" "$_p/maps" 2>/dev/null ||
			_what="mapping under $1"
		if [ -z "$_what" ]; then
			_t=$(readlink -- "$_p/cwd" 2>/dev/null) || _t=""
			case $_t in
			"$1" | "$1"/*) _what="working directory $_t" ;;
			esac
		fi
		[ -z "$_what" ] ||
			printf '%s (%s): %s\n' "${_p#/proc/}" \
				"$(cat -- "$_p/comm" 2>/dev/null)" "$_what"
	done
}
