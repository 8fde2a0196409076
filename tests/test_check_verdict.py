"""make check's verdict (scripts/check.sh): every stage runs, also after a
failure, and the output ends with one line counting what each stage ran,
`check: N passed, M failed`, with a non-zero exit unless M is 0; a pytest
stage that runs no test fails.  The stages here are stand-ins (a fake
make), so that this runs in a second."""

import os
import subprocess
import sys
import textwrap

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)

# A stand-in for make: `make --no-print-directory STAGE` prints what the
# real stage prints; pytest stages run a real pytest on PYTESTS.
FAKE_MAKE = textwrap.dedent('''\
    #!/bin/sh
    stage=$2
    case $stage in
    unit) echo "== build/test_seg"; echo "52 passed, 0 failed"
          echo "== build/test_perm"; echo "$UNIT_LINE"; exit $UNIT_RC ;;
    pytest) exec %s -m pytest -p no:cacheprovider -q "$PYTESTS" ;;
    fuzz-regress) echo "== fuzz corpus names: replay: 11 inputs, no failure"
          echo "== fuzz corpus ctl: replay: 12 inputs, no failure" ;;
    stress-short) printf '  ok   one\\n  ok   two\\n  ok   three\\n' ;;
    other) exit $OTHER_RC ;;
    esac
''') % sys.executable


def check(tmp_path, tests, stages=("unit", "pytest", "fuzz-regress",
                                   "stress-short"), **env):
    make = tmp_path / "make"
    make.write_text(FAKE_MAKE)
    make.chmod(0o755)
    pytests = tmp_path / "pytests"
    pytests.mkdir(exist_ok=True)
    for name, body in tests.items():
        (pytests / name).write_text(body)
    e = dict(os.environ, MAKE=str(make), PYTHON=sys.executable,
             PYTESTS=str(pytests), UNIT_LINE="20 passed, 0 failed",
             UNIT_RC="0", OTHER_RC="0")
    e.pop("PYTEST_ADDOPTS", None)
    e.update(env)
    r = subprocess.run(["sh", os.path.join(REPO, "scripts", "check.sh")] +
                       list(stages), capture_output=True, text=True,
                       env=e, timeout=120, cwd=str(tmp_path))
    return r, r.stdout.rstrip("\n").splitlines()


PASSING = {"test_a.py": "def test_one():\n    pass\n\n"
                        "def test_two():\n    pass\n"}


def test_verdict_counts_every_stage_and_is_the_last_line(tmp_path):
    r, lines = check(tmp_path, PASSING)
    assert r.returncode == 0, r.stdout + r.stderr
    # unit 52 + 20, pytest 2, fuzz 11 + 12, stress 3
    assert lines[-1] == "check: 100 passed, 0 failed"
    assert "check: unit: 72 passed, 0 failed" in lines
    assert "check: pytest: 2 passed, 0 failed" in lines
    assert "check: fuzz-regress: 23 passed, 0 failed" in lines
    assert "check: stress-short: 3 passed, 0 failed" in lines
    # the verdict comes after the stress counters
    assert lines.index("  ok   three") < len(lines) - 1


def test_a_failed_test_is_named_counted_and_fails_check(tmp_path):
    tests = dict(PASSING)
    tests["test_b.py"] = "def test_broken():\n    assert 1 == 2\n"
    r, lines = check(tmp_path, tests)
    assert r.returncode != 0
    assert lines[-1] == "check: 100 passed, 1 failed"
    assert any(l.startswith("check: FAILED pytest: ") and
               l.endswith("test_b.py::test_broken") for l in lines), lines
    # the stages after the failed one still ran
    assert "check: stress-short: 3 passed, 0 failed" in lines


def test_pytest_running_no_test_is_a_failure(tmp_path):
    r, lines = check(tmp_path, {"test_empty.py": "X = 1\n"})
    assert r.returncode != 0
    assert "check: pytest: 0 passed, 1 failed" in lines
    assert lines[-1] == "check: 98 passed, 1 failed"


def test_a_failing_unit_program_and_a_failing_plain_stage_count(tmp_path):
    r, lines = check(tmp_path, PASSING, stages=("unit", "other"),
                     UNIT_LINE="19 passed, 1 failed", UNIT_RC="1",
                     OTHER_RC="2")
    assert r.returncode != 0
    assert "check: unit: 71 passed, 1 failed" in lines
    assert "check: other: 0 passed, 1 failed" in lines
    assert lines[-1] == "check: 71 passed, 2 failed"


def test_a_unit_program_that_crashes_without_its_line_fails(tmp_path):
    r, lines = check(tmp_path, PASSING, stages=("unit",),
                     UNIT_LINE="Segmentation fault", UNIT_RC="139")
    assert r.returncode != 0
    assert lines[-1] == "check: 52 passed, 1 failed"


# -- check-asan and check-valgrind: the daemon's report fails its test -------

def test_a_daemon_report_is_a_problem_of_its_test(tmp_path, monkeypatch):
    import conftest
    monkeypatch.setattr(conftest, "DAEMON_LOGS", str(tmp_path))
    (tmp_path / "vg.100").write_text("==100== ERROR SUMMARY: 0 errors from 0 contexts\n")
    (tmp_path / "vg.101").write_text("==101== Invalid read of size 8\n"
                                     "==101== ERROR SUMMARY: 1 errors from 1 contexts\n")
    (tmp_path / "vg.102").write_text("==102== Memcheck\n")  # killed: no summary
    (tmp_path / "asan.shmfs.103").write_text("ERROR: AddressSanitizer: heap-use-after-free\n")
    (tmp_path / "vg.1010").write_text("==1010== ERROR SUMMARY: 1 errors\n")
    assert conftest.daemon_log_problems(100) == []
    assert conftest.daemon_log_problems(102) == []
    p = conftest.daemon_log_problems(101)
    assert len(p) == 1 and "vg.101:" in p[0] and "Invalid read" in p[0]
    p = conftest.daemon_log_problems(103)
    assert len(p) == 1 and "heap-use-after-free" in p[0]
    assert conftest.daemon_log_problems(104) == []
