# pyti fetch sandbox: find the test requirements a source distribution declares and fetch them.
#
#   testreqs.py SRC OWN_WHEEL EXTRAS [REQUIRES...]
#   testreqs.py --list SRC [PROJECT]      only print what would be fetched (tests)
#
# Runs inside the fetch sandbox with the guest's own Python and pip (never on the host): SRC is an
# sdist (.tar.*, .zip) or a source directory, OWN_WHEEL the distribution's own wheel, EXTRAS its
# extras to fetch ("test,tests" or ""), REQUIRES the recipe's requirements. Reads, without
# extracting or running anything:
#   1. tox.ini [testenv] deps and extras, when it has any (what `tox` would install);
#   2. else PEP 735 [dependency-groups] test, tests, testing of pyproject.toml (include-group followed);
#   3. else the first test requirements file of TEST_FILES, else of DEV_FILES (-r followed inside
#      the source).
# A reference to the project itself (`-e .[socks]`, `.[socks]`, `-e .`, its own name) is the
# distribution under test with those extras, pinned to the version being tested. Options, other
# paths and URLs cannot be fetched by name and are dropped with that reason. Then one pip wheel
# of everything together; when it fails, each requirement is tried alone and those pip cannot get
# are dropped (with pip's own error), so one bad line does not lose the rest.
# Writes /io/out/testreqs.txt (the fetched requirements, one a line) and /io/out/testreqs.json
# ({"declared": [...], "fetched": [...], "dropped": [...]}: each {"requirement", "from"[, "reason"]}),
# both read back by pyti as untrusted input. Embedded into pyti at build time (meson: testreqs_py.h).
import configparser
import json
import os
import posixpath
import re
import subprocess
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
MAX_PROBES = 64
OUT = "/io/out"


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
        return rel in ("pyproject.toml", "tox.ini") or rel.endswith(".txt") and rel.count("/") <= 2

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
    """Declared requirements, split into what pip can fetch by name, the project itself, and the rest."""

    def __init__(self, project):
        self.project = norm(project)
        self.declared = []   # {"requirement", "from"}
        self.reqs = []       # (requirement, from): fetchable by name
        self.self_extras = []
        self.dropped = []    # {"requirement", "from", "reason"}

    def _declare(self, text, where):
        if len(self.declared) < MAX_REQS:
            self.declared.append({"requirement": text, "from": where})

    def drop(self, text, where, reason):
        self._declare(text, where)
        self.dropped.append({"requirement": text, "from": where, "reason": reason})

    def add_self(self, text, where, extras):
        self._declare(text, where)
        for e in extras:
            if e not in self.self_extras:
                self.self_extras.append(e)

    def add(self, text, where):
        try:
            r = Requirement(text)
        except InvalidRequirement as e:
            self.drop(text, where, f"not a requirement: {e}")
            return
        if norm(r.name) == self.project:
            self.add_self(text, where, sorted(r.extras))
            return
        self._declare(text, where)
        s = str(r)
        if s not in [q for q, _ in self.reqs] and len(self.reqs) < MAX_REQS:
            self.reqs.append((s, where))

    def add_line(self, line, where, base="."):
        """One line of a requirements file or of tox's deps; base: its directory in the source."""
        m = re.match(r"^(?:-e|--editable)(?:\s+|=)(\S+)$", line)
        target = m.group(1) if m else line
        pm = re.match(r"^(\.{1,2}(?:/[^\[\s;]*)?|/[^\[\s;]*)(\[[^\]]*\])?\s*(;.*)?$", target)
        if pm:
            path = posixpath.normpath(posixpath.join(base, pm.group(1)))
            extras = [e.strip() for e in (pm.group(2) or "[]")[1:-1].split(",") if e.strip()]
            if path == "." and all(re.match(r"^[A-Za-z0-9._-]+$", e) for e in extras):
                self.add_self(line, where, extras)
            else:
                self.drop(line, where, "a local path other than the project itself: not fetchable by name")
            return
        if m:
            self.drop(line, where, "an editable requirement that is not the project itself")
            return
        if line.startswith("-"):
            self.drop(line, where, "a pip option, not a requirement")
            return
        if "://" in line.split("@")[0] or re.match(r"^[A-Za-z0-9._-]+\s*@", line):
            self.drop(line, where, "a direct URL reference: pyti fetches by name from the configured index")
            return
        self.add(line, where)


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
                out.add(item, f"pyproject.toml [dependency-groups] {name}")
            elif isinstance(item, dict) and isinstance(item.get("include-group"), str):
                expand(norm(item["include-group"]))

    found = [g for g in GROUPS if g in groups]
    for g in found:
        expand(g)
    return bool(found)


def file_lines(text):
    text = text.replace("\\\n", "")
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            yield line


def from_file(src, rel, out, depth=0):
    data = src.read(rel)
    if data is None or depth > 5:
        return False
    for line in file_lines(data.decode("utf-8", "replace")):
        m = re.match(r"^(?:-r|--requirement|-c|--constraint)(?:\s+|=)(\S+)$", line)
        if m:
            inc = posixpath.normpath(posixpath.join(posixpath.dirname(rel), m.group(1)))
            if line.startswith(("-c", "--constraint")):
                out.drop(line, rel, "a constraints file: not a requirement")
            elif inc.startswith("../") or inc.startswith("/") or not from_file(src, inc, out, depth + 1):
                out.drop(line, rel, f"{inc}: not a file of the source")
            continue
        out.add_line(line, rel, posixpath.dirname(rel) or ".")
    return True


def from_tox(src, out):
    """tox.ini [testenv] deps and extras: what tox installs for its test environment. Factor
    conditions ("py311: pytest") are kept only when unconditional; substitutions make a line
    unfetchable and drop it."""
    data = src.read("tox.ini")
    if data is None:
        return False
    cp = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        cp.read_string(data.decode("utf-8", "replace"))
    except configparser.Error as e:
        print(f"pyti: tox.ini: {e}", file=sys.stderr)
        return False
    if not cp.has_section("testenv"):
        return False
    found = False
    for extra in re.split(r"[\s,]+", cp.get("testenv", "extras", fallback="")):
        if re.match(r"^[A-Za-z0-9._-]+$", extra):
            out.add_self(f"extras = {extra}", "tox.ini [testenv] extras", [extra])
            found = True
    for line in file_lines(cp.get("testenv", "deps", fallback="")):
        found = True
        where = "tox.ini [testenv] deps"
        if re.match(r"^[A-Za-z0-9_,!.-]+:\s", line):
            out.drop(line, where, "conditional on a tox factor")
            continue
        if "{" in line:
            out.drop(line, where, "uses a tox substitution")
            continue
        m = re.match(r"^(?:-r|--requirement)(?:\s+|=)?(\S+)$", line)
        if m:
            inc = posixpath.normpath(m.group(1))
            if inc.startswith("../") or inc.startswith("/") or not from_file(src, inc, out, 1):
                out.drop(line, where, f"{inc}: not a file of the source")
            continue
        out.add_line(line, where)
    return found


def pip_wheel(args):
    """Run pip wheel; (ok, pip's error lines)."""
    cmd = [sys.executable, "-m", "pip", "wheel", "--log", f"{OUT}/pip-testreqs.log", "--find-links",
           "/io/wheels", "-w", "/io/wheels"] + args
    print("+ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    sys.stdout.write(p.stdout[-20000:])
    errors = [ln.strip() for ln in p.stdout.splitlines() if ln.startswith("ERROR:")]
    return p.returncode == 0, " ".join(errors[-3:])[:600] or f"pip exited with status {p.returncode}"


def collect(srcpath, project):
    out = Collector(project)
    src = Source(srcpath)
    if from_tox(src, out):
        print("pyti: test requirements from tox.ini [testenv]", file=sys.stderr)
    elif not from_groups(src, out):
        for rel in TEST_FILES + DEV_FILES:
            if from_file(src, rel, out):
                print(f"pyti: test requirements from {rel}", file=sys.stderr)
                break
    return out


def list_only(srcpath, project):
    """--list: what would be fetched by name, one a line; the rest on stderr. Nothing is fetched."""
    out = collect(srcpath, project)
    for r, _ in out.reqs:
        print(r)
    if out.self_extras:
        print(f"pyti: the project itself with extras: {','.join(out.self_extras)}", file=sys.stderr)
    for d in out.dropped:
        print(f"pyti: dropped {d['requirement']!r} ({d['from']}): {d['reason']}", file=sys.stderr)


def main(srcpath, own, extras, requires):
    base = os.path.basename(own).split("-")
    project, version = base[0], base[1] if len(base) > 1 else None
    out = collect(srcpath, project)
    fetched = []
    if out.reqs or out.self_extras:
        all_extras = [e for e in extras.split(",") if e] + [e for e in out.self_extras if e not in extras.split(",")]
        me = own + (f"[{','.join(all_extras)}]" if all_extras else "")
        reqs = list(out.reqs)
        ok, why = pip_wheel([me] + requires + [r for r, _ in reqs])
        if not ok:
            # one by one: keep what pip can get, drop the rest with pip's own words
            good = []
            for i, (r, where) in enumerate(reqs):
                if i >= MAX_PROBES:
                    out.dropped.append({"requirement": r, "from": where, "reason": "not tried: too many failed"})
                    continue
                ok1, why1 = pip_wheel([me] + requires + [r])
                if ok1:
                    good.append((r, where))
                else:
                    out.dropped.append({"requirement": r, "from": where, "reason": f"pip: {why1}"})
            reqs = good
            if out.self_extras and not pip_wheel([me] + requires)[0]:
                # the project's own extras cannot be had: test without them
                for e in out.self_extras:
                    out.dropped.append({"requirement": f"{project}[{e}]", "from": "the project itself",
                                        "reason": f"pip: {why}"})
                out.self_extras = []
                me = own
            ok, why = pip_wheel([me] + requires + [r for r, _ in reqs])
            if not ok:
                for r, where in reqs:
                    out.dropped.append({"requirement": r, "from": where,
                                        "reason": f"conflicts with the other test requirements: pip: {why}"})
                reqs = []
        fetched = [r for r, _ in reqs]
        if out.self_extras and version:
            fetched.append(f"{project}[{','.join(out.self_extras)}]=={version}")
    with open(f"{OUT}/testreqs.txt", "w") as f:
        f.write("".join(r + "\n" for r in fetched))
    with open(f"{OUT}/testreqs.json", "w") as f:
        json.dump({"declared": out.declared, "fetched": fetched, "dropped": out.dropped}, f)
    for d in out.dropped:
        print(f"pyti: dropped {d['requirement']!r} ({d['from']}): {d['reason']}", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1] == "--list":  # testreqs.py --list SRC [PROJECT]
        list_only(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")
    else:
        main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
