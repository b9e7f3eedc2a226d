# pyti fetch sandbox: print the test requirements a source distribution declares, one a line.
#
# Runs inside the fetch sandbox with the guest's own Python (never on the host): argv[1] is an
# sdist (.tar.*, .zip) or a source directory. Reads, without extracting anything:
#   1. PEP 735 [dependency-groups] test, tests, testing of pyproject.toml (include-group followed);
#   2. else the first test requirements file of TEST_FILES, else of DEV_FILES (-r followed inside
#      the source; options, editables and paths dropped).
# Every line printed is a PEP 508 requirement as pip's own parser accepts it; the rest is noted on
# stderr. Embedded into pyti at build time (meson: testreqs_py.h).
import os
import posixpath
import re
import sys
import tarfile
import zipfile

from pip._vendor.packaging.requirements import InvalidRequirement, Requirement

GROUPS = ("test", "tests", "testing")
TEST_FILES = ("requirements-test.txt", "requirements-tests.txt", "requirements_test.txt",
              "requirements_tests.txt", "test-requirements.txt", "tests-requirements.txt",
              "test_requirements.txt", "requirements/test.txt", "requirements/tests.txt",
              "requirements/testing.txt", "tests/requirements.txt", "test/requirements.txt")
DEV_FILES = ("requirements-dev.txt", "requirements_dev.txt", "dev-requirements.txt",
             "requirements/dev.txt", "requirements/development.txt")
MAX_FILE = 1 << 20
MAX_TOTAL = 8 << 20
MAX_REQS = 256


class Source:
    """The files of an sdist or a source tree, by path relative to the project root."""

    def __init__(self, path):
        self.files = {}
        self.total = 0
        if os.path.isdir(path):
            self.root = path
            return
        self.root = None
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for i in z.infolist():
                    self._add(i.filename, i.file_size, lambda i=i: z.read(i))
                self._load()
        else:
            with tarfile.open(path) as t:
                for m in t:
                    if m.isfile():
                        self._add(m.name, m.size, lambda m=m: t.extractfile(m).read())
                self._load()

    def _add(self, name, size, read):
        # "project-1.0/sub/file": drop the top directory
        parts = name.split("/", 1)
        if len(parts) == 2 and size < MAX_FILE and self._wanted(parts[1]) and self.total + size < MAX_TOTAL:
            self.total += size
            self.files[parts[1]] = read

    @staticmethod
    def _wanted(rel):
        return rel == "pyproject.toml" or rel.endswith(".txt") and rel.count("/") <= 2

    def _load(self):
        self.files = {k: read() for k, read in self.files.items()}

    def read(self, rel):
        if self.root is None:
            return self.files.get(rel)
        p = os.path.join(self.root, rel)
        if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) < MAX_FILE:
            with open(p, "rb") as f:
                return f.read()
        return None


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


class Collector:
    def __init__(self):
        self.reqs = []

    def add(self, text, where):
        try:
            r = str(Requirement(text))
        except InvalidRequirement:
            print(f"pyti: skipping {text!r} ({where}): not a requirement", file=sys.stderr)
            return
        if r not in self.reqs and len(self.reqs) < MAX_REQS:
            self.reqs.append(r)


def from_groups(src, out):
    data = src.read("pyproject.toml")
    if data is None:
        return False
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        return False
    try:
        groups = tomllib.loads(data.decode("utf-8", "replace")).get("dependency-groups")
    except tomllib.TOMLDecodeError as e:
        print(f"pyti: pyproject.toml: {e}", file=sys.stderr)
        return False
    if not isinstance(groups, dict):
        return False
    groups = {norm(k): v for k, v in groups.items() if isinstance(v, list)}
    seen = set()

    def expand(name):
        if name in seen or len(seen) > 64:
            return
        seen.add(name)
        for item in groups.get(name, []):
            if isinstance(item, str):
                out.add(item, f"[dependency-groups] {name}")
            elif isinstance(item, dict) and isinstance(item.get("include-group"), str):
                expand(norm(item["include-group"]))

    found = [g for g in GROUPS if g in groups]
    for g in found:
        expand(g)
    return bool(found)


def from_file(src, rel, out, depth=0):
    data = src.read(rel)
    if data is None or depth > 5:
        return False
    text = data.decode("utf-8", "replace").replace("\\\n", "")
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if not line:
            continue
        m = re.match(r"^(?:-r|--requirement)(?:\s+|=)(\S+)$", line)
        if m:
            inc = posixpath.normpath(posixpath.join(posixpath.dirname(rel), m.group(1)))
            if not inc.startswith("../") and not inc.startswith("/"):
                from_file(src, inc, out, depth + 1)
            continue
        if line.startswith(("-", ".", "/")) or "://" in line.split("@")[0]:
            continue  # options, editables, local paths: nothing to fetch by name
        out.add(line, rel)
    return True


def main(path):
    src = Source(path)
    out = Collector()
    if not from_groups(src, out):
        for rel in TEST_FILES + DEV_FILES:
            if from_file(src, rel, out):
                print(f"pyti: test requirements from {rel}", file=sys.stderr)
                break
    for r in out.reqs:
        print(r)


if __name__ == "__main__":
    main(sys.argv[1])
