"""The tree's own rules (issue 12): no C file of the daemon or the library
over 900 lines, shmfs(1) an operator's page of at most 900 lines, a README
of at most 250, and no document or comment that names a file of the
project the project does not have."""

import glob
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A path of the project's own tree, as the documents and comments write
# it: a top-level folder, then a name or a glob (src/pheap*.c).  Groff
# writes a hyphen as \-.
PATH = re.compile(
    r"(?<![\w/.-])((?:src|lib|tests|docs|bench|contrib|examples|scripts"
    r"|include|mk|debian)/[A-Za-z0-9_./@*-]*[A-Za-z0-9_])")
# Paths that name something outside the tree: the kernel's uapi header,
# an install directory.
OUTSIDE = ("include/uapi/", "lib/pkgconfig")


def lines(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return sum(1 for _ in f)


def tree(*patterns):
    return sorted(p for pat in patterns
                  for p in glob.glob(pat, root_dir=REPO))


@pytest.mark.parametrize("path", tree("src/*.c", "lib/*.c"))
def test_c_file_at_most_900_lines(path):
    assert lines(path) <= 900, f"{path}: {lines(path)} lines"


@pytest.mark.parametrize("path,most", [("shmfs.1", 900), ("README", 250)])
def test_document_within_its_size(path, most):
    assert lines(path) <= most, f"{path}: {lines(path)} lines, most {most}"


# The Makefiles are left out: their patterns (test_%.c) are not names,
# and a source they lack fails the build.  This file names a missing one
# on purpose.
DOCUMENTS = [p for p in tree("README", "*.1", "*.3", "*.7", "docs/*.md",
                             "bench/*.md", "src/*.[ch]", "lib/*.[ch]",
                             "include/*.h", "tests/*.py", "tests/unit/*.[ch]",
                             "scripts/*")
             if p != "tests/test_tree.py"]


def named_paths(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        text = f.read().replace("\\-", "-")
    return {m.group(1) for m in PATH.finditer(text)
            if not m.group(1).startswith(OUTSIDE)}


def test_the_rule_sees_a_missing_file():
    text = "see src/nothing_here.c and docs/reliability.md."
    found = {m.group(1) for m in PATH.finditer(text)}
    assert found == {"src/nothing_here.c", "docs/reliability.md"}


@pytest.mark.parametrize("path", DOCUMENTS)
def test_every_named_file_exists(path):
    missing = sorted(p for p in named_paths(path)
                     if not glob.glob(os.path.join(REPO, p)))
    assert not missing, f"{path} names files the tree lacks: {missing}"
