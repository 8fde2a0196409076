#!/bin/sh
# `make check`: run each stage named (make targets: unit, pytest, then
# CHECK_EXTRA's), every one even after a failure, and end with one
# verdict line that counts what every stage ran:
#
#   check: N passed, M failed
#
# Exit status 0 only when M is 0 and every stage ran something: a pytest
# stage that collects no test is a failure.  How a stage is counted: a
# unit program by its "N passed, M failed" line; a stage that runs pytest
# by its JUnit XML (PYTEST_ADDOPTS asks for it), which also names each
# failed test; the fuzz replay by its inputs; the stress run by its
# "ok"/"FAIL" invariants; anything else as one check.
set -u
MAKE=${MAKE:-make}
PYTHON=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmfs-check.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

total_pass=0
total_fail=0
summary=""
failed_names=""

# Counts of one stage from its log (and JUnit file): "passed failed skipped".
count() {
	stage=$1 log=$2 junit=$3 rc=$4
	if [ -s "$junit" ]; then
		"$PYTHON" - "$junit" "$tmp/failed.$stage" <<'EOPY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
n = f = s = 0
bad = []
for suite in suites:
    for case in suite.iter("testcase"):
        n += 1
        kinds = [c.tag for c in case]
        if "failure" in kinds or "error" in kinds:
            f += 1
            name = case.get("classname", "").replace(".", "/") + ".py::" + \
                case.get("name", "")
            bad.append(name)
        elif "skipped" in kinds:
            s += 1
with open(sys.argv[2], "w") as out:
    out.write("".join(b + "\n" for b in bad))
print(n - f - s, f, s)
EOPY
		return
	fi
	case $stage in
	pytest)
		echo 0 1 0 # pytest wrote no report: it did not get to run
		;;
	unit)
		awk -v rc="$rc" '
			/^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3; n++ }
			END { if (rc != 0 && f == 0) f = 1; print p + 0, f + 0, 0 }' "$log"
		;;
	fuzz-regress)
		awk -v rc="$rc" '
			/replay: [0-9]+ inputs, no failure/ {
				for (i = 1; i < NF; i++) if ($(i + 1) == "inputs,") p += $i
			}
			END { print p + 0, (rc != 0) ? 1 : 0, 0 }' "$log"
		;;
	stress*)
		awk -v rc="$rc" '
			/^  ok   / { p++ } /^  FAIL / { f++ }
			END { if (rc != 0 && f == 0) f = 1; print p + 0, f + 0, 0 }' "$log"
		;;
	*)
		if [ "$rc" = 0 ]; then echo 1 0 0; else echo 0 1 0; fi
		;;
	esac
}

for stage in "$@"; do
	log=$tmp/$stage.log
	junit=$tmp/$stage.xml
	# make's status, not tee's (POSIX sh has no pipefail)
	{
		PYTEST_ADDOPTS="${PYTEST_ADDOPTS:-} --junitxml=$junit" \
			$MAKE --no-print-directory "$stage" 2>&1
		echo $? >"$tmp/rc.$stage"
	} | tee "$log"
	rc=$(cat "$tmp/rc.$stage")
	read -r p f s <<EOT
$(count "$stage" "$log" "$junit" "$rc")
EOT
	if [ -s "$junit" ] && [ $((p + f)) = 0 ]; then
		f=1 # pytest collected nothing: that is no pass
		echo "check: $stage ran no test" >&2
	fi
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
		f=1 # the stage failed outside what it counts
	fi
	line="check: $stage: $p passed, $f failed"
	[ "$s" = 0 ] || line="$line, $s skipped"
	summary="$summary$line
"
	[ ! -s "$tmp/failed.$stage" ] ||
		failed_names="$failed_names$(sed "s/^/check: FAILED $stage: /" "$tmp/failed.$stage")
"
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
done
echo
printf '%s' "$summary"
printf '%s' "$failed_names"
echo "check: $total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
