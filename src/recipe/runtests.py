# pyti test runner, run in the test sandbox with the job venv's Python:
#
#   runtests.py [-- POSARGS...]
#
# Runs the distribution's tests the way the project declares (docs/design.md §4, issue 10):
#   1. tox.ini [testenv] commands (pytest or unittest with their arguments), read by pyti on the
#      host into /io/pyti/plan.json ("tox"); POSARGS replace its {posargs} (else tox's default);
#   2. otherwise pytest, which reads the project's own configuration (pyproject.toml
#      [tool.pytest.ini_options], pytest.ini, setup.cfg, tox.ini [pytest]);
#   3. when pytest collects nothing, unittest discovery (., then tests/, test/).
# Tests run against the installed distribution: by default in a copy of the source tree (/io/src)
# whose top-level modules the distribution installs are replaced by links to the installed ones
# (or, when the tests live inside the package, overlaid with the installed files), so `import pkg`
# gets the venv's copy with its compiled extensions while conftest.py and data files stay where the
# tests look for them. The runtime record gives each module's real path. plan.json
# "test_from": "source" runs in /io/src itself, as a checkout would.
# Writes out/junit-test.xml (unittest too, in pytest's shape) and out/runtime-test.json.
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import unittest
import xml.etree.ElementTree as ET

# Overridable only so that bench/ can run the very same runner on the host, on a kept job directory.
IO = os.environ.get("PYTI_RUNTESTS_IO", "/io")
SRC = f"{IO}/src"
WORK = os.environ.get("PYTI_RUNTESTS_WORK", "/tmp/pyti-src")
OUT = os.environ.get("PYTI_RUNTESTS_OUT", f"{IO}/out")
JUNIT = f"{OUT}/junit-test.xml"


def load_plan():
    try:
        with open(f"{IO}/pyti/plan.json") as f:
            p = json.load(f)
        return p if isinstance(p, dict) else {}
    except (OSError, ValueError):
        return {}


def has_tests(path):
    for _, _, files in os.walk(path):
        if any(f.endswith(".py") and (f.startswith("test") or f.endswith("_test.py")) or f == "conftest.py"
               for f in files):
            return True
    return False


def installed_path(mod):
    """Where the venv's copy of a top-level module is (a package directory or a module file)."""
    code = ("import importlib.util, json, sys; s = importlib.util.find_spec(sys.argv[1]); "
            "print(json.dumps(s and (s.submodule_search_locations and list(s.submodule_search_locations) "
            "or s.origin)))")
    p = subprocess.run([sys.executable, "-I", "-c", code, mod], stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        v = json.loads(p.stdout or "null")
    except ValueError:
        return None
    if isinstance(v, list):
        return v[0] if v else None
    return v


def prepare(plan, record):
    """The directory to run the tests in."""
    if plan.get("test_from") == "source" or not os.path.isdir(SRC):
        record["tests_from"] = "source"
        return SRC
    shutil.rmtree(WORK, ignore_errors=True)
    shutil.copytree(SRC, WORK, symlinks=True)
    record["tests_from"] = "installed"
    hidden, overlaid = [], []
    for mod in plan.get("modules", []):
        if not isinstance(mod, str) or "/" in mod or mod.startswith("."):
            continue
        inst = installed_path(mod)
        if not inst or not inst.startswith(sys.prefix + "/"):
            continue
        # flat layout, and src/ layouts whose pytest configuration puts src on sys.path
        for top in ("", "src"):
            d, f = os.path.join(WORK, top, mod), os.path.join(WORK, top, mod + ".py")
            name = os.path.join(top, mod)
            if os.path.isdir(d) and not os.path.islink(d):
                if has_tests(d) and os.path.isdir(inst):
                    # the tests are inside the package: the installed files (compiled extensions,
                    # generated modules) over the source's, the tests beside them
                    shutil.copytree(inst, d, symlinks=True, dirs_exist_ok=True)
                    overlaid.append(name)
                else:
                    # a link to the installed copy: `import pkg` from here is the install, and
                    # tests that open or run the package's files by path (tabulate runs
                    # tabulate/__init__.py) still find them
                    shutil.rmtree(d)
                    os.symlink(inst, d)
                    hidden.append(name)
            elif os.path.isfile(f) and not os.path.islink(f):
                os.unlink(f)
                if os.path.isfile(inst):
                    os.symlink(inst, f)
                hidden.append(name)
    record["replaced_by_installed"] = hidden
    record["overlaid_with_installed"] = overlaid
    return WORK


def module_files(plan, cwd):
    """What `import MOD` gives where the tests run (the raw data's proof of the copy tested)."""
    code = ("import importlib, json, os, sys\nsys.path.insert(0, '.')\nout = {}\n"
            "for m in sys.argv[1:]:\n"
            "    try:\n        f = getattr(importlib.import_module(m), '__file__', None)\n"
            "        out[m] = os.path.realpath(f) if isinstance(f, str) else str(f)\n"
            "    except Exception as e:\n        out[m] = 'import failed: %r' % (e,)\n"
            "print(json.dumps(out))")
    mods = [m for m in plan.get("modules", []) if isinstance(m, str)][:64]
    p = subprocess.run([sys.executable, "-c", code] + mods, stdout=subprocess.PIPE, text=True, cwd=cwd)
    try:
        return json.loads(p.stdout)
    except ValueError:
        return {}


def fill_posargs(args, posargs, default):
    out = []
    for a in args:
        if a == "{posargs}":
            out += posargs if posargs else [x for x in (default or []) if isinstance(x, str)]
        else:
            out.append(a)
    return out


# ---- what the tests tried to reach (the sandbox has no network) ----

NET_DIR = WORK + "-net"
HOOK_DIR = WORK + "-hook"
HOOK = r"""
import atexit, json, os, sys
_seen = {}
def _pyti_net_hook(event, args):
    try:
        if event == "socket.connect":
            a = args[1]
            if not isinstance(a, tuple) or len(a) < 2:
                return  # AF_UNIX: not the network
            key = ("connect", "%s:%s" % (a[0], a[1]))
        elif event == "socket.getaddrinfo":
            key = ("getaddrinfo", "%s:%s" % (args[0], args[1]))
        elif event in ("socket.gethostbyname", "socket.gethostbyaddr"):
            key = (event.split(".")[1], str(args[0]))
        else:
            return
        if key in _seen or len(_seen) < 256:
            _seen[key] = _seen.get(key, 0) + 1
    except Exception:
        pass
def _pyti_net_dump():
    if _seen:
        try:
            os.makedirs("@DIR@", exist_ok=True)
            with open("@DIR@/%d.json" % os.getpid(), "w") as f:
                json.dump([[k[0], k[1], n] for k, n in _seen.items()], f)
        except OSError:
            pass
sys.addaudithook(_pyti_net_hook)
atexit.register(_pyti_net_dump)
""".replace("@DIR@", NET_DIR)


def install_net_hook():
    """A sitecustomize for the test processes (PYTHONPATH) and the hook in this one (unittest)."""
    os.makedirs(HOOK_DIR, exist_ok=True)
    with open(os.path.join(HOOK_DIR, "sitecustomize.py"), "w") as f:
        f.write(HOOK)
    os.environ["PYTHONPATH"] = HOOK_DIR + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    exec(compile(HOOK, "<pyti-net-hook>", "exec"), HOOK_NS)


HOOK_NS = {"__name__": "pyti_net_hook"}


def collect_net():
    seen = {}
    try:
        names = sorted(os.listdir(NET_DIR))[:1000]
    except OSError:
        return []
    for n in names:
        try:
            with open(os.path.join(NET_DIR, n)) as f:
                for kind, dest, count in json.load(f):
                    seen[(kind, dest)] = seen.get((kind, dest), 0) + int(count)
        except (OSError, ValueError, TypeError):
            continue
    return [{"kind": k, "destination": d, "count": c} for (k, d), c in sorted(seen.items())][:64]


# ---- unittest, with pytest-shaped JUnit XML ----

class JUnitResult(unittest.TextTestResult):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.cases = []
        self._t0 = 0.0

    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def _case(self, test, kind=None, text="", message=""):
        tid = test.id()
        cls, _, name = tid.rpartition(".")
        self.cases.append((cls or "unittest", name or tid, time.monotonic() - self._t0, kind, message, text))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._case(test)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._case(test, "failure", self._exc_info_to_string(err, test), str(err[1]).split("\n")[0])

    def addError(self, test, err):
        super().addError(test, err)
        self._case(test, "error", self._exc_info_to_string(err, test), str(err[1]).split("\n")[0])

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._case(test, "skipped", "", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._case(test, "xfail", "", "expected failure")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._case(test, "xpass", "", "unexpected success")


def write_junit(cases, path):
    suite = ET.Element("testsuite", name="unittest")
    counts = {"failure": 0, "error": 0, "skipped": 0}
    for cls, name, t, kind, message, text in cases:
        c = ET.SubElement(suite, "testcase", classname=cls, name=name, time=f"{t:.3f}")
        if kind in ("failure", "error"):
            counts[kind] += 1
            ET.SubElement(c, kind, message=message[:1024]).text = text
        elif kind == "skipped":
            counts["skipped"] += 1
            ET.SubElement(c, "skipped", type="unittest.skip", message=message[:1024])
        elif kind == "xfail":
            counts["skipped"] += 1
            ET.SubElement(c, "skipped", type="pytest.xfail", message=message)
        elif kind == "xpass":
            pass
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(counts["failure"]))
    suite.set("errors", str(counts["error"]))
    suite.set("skipped", str(counts["skipped"]))
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def unittest_suite(args, cwd):
    """A suite for `python -m unittest ARGS` (discover [-s S] [-p P] [-t T], or test names)."""
    loader = unittest.TestLoader()
    if args and args[0] != "discover" and not args[0].startswith("-"):
        return loader.loadTestsFromNames([a for a in args if not a.startswith("-")]), "names"
    rest = args[1:] if args and args[0] == "discover" else args
    opts, pos = {"-s": None, "-p": "test*.py", "-t": None}, []
    it = iter(rest)
    for a in it:
        key = {"--start-directory": "-s", "--pattern": "-p", "--top-level-directory": "-t"}.get(a, a)
        if key in opts:
            opts[key] = next(it, None)
        elif not a.startswith("-"):
            pos.append(a)
    for k, v in zip(("-s", "-p", "-t"), pos):
        opts[k] = v
    starts = [opts["-s"]] if opts["-s"] else [".", "tests", "test"]
    for s in starts:
        if not os.path.isdir(os.path.join(cwd, s)):
            continue
        suite = loader.discover(s, pattern=opts["-p"], top_level_dir=opts["-t"] or (None if s == "." else s))
        if suite.countTestCases():
            return suite, f"discover -s {s} -p {opts['-p']}"
        loader = unittest.TestLoader()
    return unittest.TestSuite(), "discover (nothing found)"


def run_unittest(args, cwd):
    os.chdir(cwd)
    sys.path.insert(0, cwd)
    suite, how = unittest_suite(args, cwd)
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=JUnitResult)
    res = runner.run(suite)
    write_junit(res.cases, JUNIT)
    return (0 if res.wasSuccessful() else 1), how


def run_pytest(args, cwd):
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={JUNIT}"] + args
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=cwd).returncode


def main(argv):
    posargs = argv[argv.index("--") + 1:] if "--" in argv else []
    plan = load_plan()
    record = {"python": sys.version.split()[0], "sys_path": sys.path}
    cwd = prepare(plan, record)
    record["cwd"] = cwd
    record["modules"] = module_files(plan, cwd)
    tox = plan.get("tox") if isinstance(plan.get("tox"), dict) else None
    if tox and tox.get("runner") in ("pytest", "unittest"):
        record["declared_by"] = f"tox.ini:{tox.get('line')}"
        runner = tox["runner"]
        args = fill_posargs([a for a in tox.get("args", []) if isinstance(a, str)], posargs,
                            tox.get("posargs_default"))
    else:
        record["declared_by"] = "default"
        runner, args = "pytest", posargs
    record["runner"], record["args"] = runner, args
    install_net_hook()

    def save():
        HOOK_NS["_pyti_net_dump"]()  # this process's own (unittest runs here)
        record["network"] = collect_net()
        if record["runner"] == "pytest":
            try:
                import pytest
                record["runner_version"], record["runner_file"] = pytest.__version__, pytest.__file__
            except ImportError:
                pass
        else:
            record["runner_version"] = record["python"]
            record["runner_file"] = unittest.__file__
        with open(f"{OUT}/runtime-test.json", "w") as f:
            json.dump(record, f, default=str)

    save()  # now, so that a run the task's timeout ends still says what ran; again at the end
    if runner == "pytest":
        rc = run_pytest(args, cwd)
        if rc == 5 and record["declared_by"] == "default":
            # pytest collected nothing: the project may be written for unittest
            print("pyti: pytest collected no tests; trying unittest discovery", flush=True)
            record["runner"], record["pytest_collected_nothing"] = "unittest", True
            rc, record["args"] = run_unittest([], cwd)
            record["args"] = [record["args"]]
        elif rc == 5:
            rc = 0
    else:
        rc, how = run_unittest(args, cwd)
        record["args"] = args or [how]
    save()
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        sys.exit(2)
