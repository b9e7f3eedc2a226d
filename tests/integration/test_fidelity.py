"""Fidelity (issue 10): the default recipe tests in a clean venv with the runner the resolver chose
(point 1), against the installed distribution (2), the way the project declares (3: tox.ini, pytest's
configuration, unittest), with its test requirements kept one by one (4), built with the image's build
tools or failed as BuildFail (5), every failed or erroring test in --json and --junit (6), tests that
needed the network counted as such (7); the raw data says which runner and which module copy were used.

Every test makes its package, task or JUnit file itself (no network: local projects, the wheelhouse
from the configured index), checks that what it tries fails (Debian's packages stay invisible, a
hostile JUnit or runtime file is capped or refused) and that the job's verdict and counts stay honest."""
import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path


def make_project(root: Path, name: str, tests: dict, pyproject_extra: str = "") -> Path:
    """A setuptools project `name` whose tests/ holds `tests` (file name → source)."""
    d = root / f"{name}-0.1.0"
    (d / name).mkdir(parents=True)
    (d / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{name.replace('_', '-')}"
        version = "0.1.0"

        [tool.setuptools]
        packages = ["{name}"]
        """) + textwrap.dedent(pyproject_extra))
    (d / name / "__init__.py").write_text("ANSWER = 42\n")
    if tests:
        (d / "tests").mkdir()
        for fn, src in tests.items():
            (d / "tests" / fn).write_text(textwrap.dedent(src))
    return d


def run_json(pyti, *args, **kw):
    r = pyti("run", "--json", "-q", *args, **kw)
    assert r.stdout.strip(), f"no JSON on stdout; rc={r.returncode}\nstderr:\n{r.stderr}"
    return r, json.loads(r.stdout)


def task(res, name):
    return next(t for t in res["tasks"] if t["task"] == name)


CLEAN_TEST = """\
    import importlib.util
    import sys

    import packaging
    import pytest


    def test_no_debian_site_packages():
        assert not [p for p in sys.path if "dist-packages" in p], sys.path


    def test_runner_is_the_wheelhouse_pytest():
        # the test extra pins pytest>=8; Debian 12's is 7.2.1
        assert int(pytest.__version__.split(".")[0]) >= 8, pytest.__version__
        assert pytest.__file__.startswith("/tmp/pyti-venv/"), pytest.__file__


    def test_debian_only_packages_invisible():
        # attrs, more_itertools and zipp are in the image's dist-packages, not in this job's wheelhouse
        assert importlib.util.find_spec("attr") is None
        assert importlib.util.find_spec("more_itertools") is None
        assert importlib.util.find_spec("zipp") is None
        # packaging is in both: the venv's copy wins (Debian's is 23.0)
        assert packaging.__file__.startswith("/tmp/pyti-venv/"), packaging.__file__
    """


def test_clean_venv_and_runtime_record(pyti, tmp_path):
    """Point 1: the tests see no Debian site-packages and run under the wheelhouse's pytest (>= 8,
    pinned by the test extra); the raw data records the runner, its version and the module's path."""
    d = make_project(tmp_path, "fid_clean_pkg", {"test_clean.py": CLEAN_TEST},
                     '\n[project.optional-dependencies]\ntest = ["pytest>=8"]\n')
    r, res = run_json(pyti, d)
    assert r.returncode == 0, r.stderr + json.dumps(res, indent=1)[:6000]
    t = task(res, "test")
    assert t["status"] == "passed" and t["failure_class"] is None
    assert t["tests"]["passed"] == 3 and t["tests"]["failed"] == 0 and t["tests"]["errors"] == 0
    assert t["tests"]["no_tests"] is False and t["tests"]["failures"] == []
    inst = task(res, "install")
    assert "Requirement already satisfied" not in inst["output"], inst["output"][-3000:]
    assert "dist-packages" not in inst["output"], inst["output"][-3000:]
    rt = t["runtime"]
    assert rt["runner"] == "pytest"
    assert int(rt["runner_version"].split(".")[0]) >= 8, rt
    assert rt["runner_file"].startswith("/tmp/pyti-venv/lib/"), rt
    assert not [p for p in rt["sys_path"] if "dist-packages" in p], rt
    imp = task(res, "import")["runtime"]
    path = imp["modules"]["fid_clean_pkg"]
    assert path.startswith("/tmp/pyti-venv/lib/") and "site-packages/fid_clean_pkg/" in path, imp
    assert not [p for p in imp["sys_path"] if "dist-packages" in p], imp


OUTCOMES_TEST = """\
    import pytest


    @pytest.fixture
    def broken():
        raise RuntimeError("fixture exploded")


    def test_pass_a():
        assert True


    def test_pass_b():
        assert 1 + 1 == 2


    def test_fails():
        assert 1 == 2, "one is not two"


    def test_errors(broken):
        pass


    def test_skipped():
        pytest.skip("not here")


    @pytest.mark.xfail(reason="known bug")
    def test_xfail():
        assert False
    """


def test_per_test_results_json_and_junit(pyti, tmp_path):
    """Point 6: 2 passed, 1 failed, 1 error (a fixture), 1 skipped, 1 xfail: the totals per outcome
    and the failed/erroring tests with their messages are in --json; --junit has one testcase per
    test (in a suite for the task) beside the task cases, the test failure a <failure>, the fixture
    error an <error>."""
    d = make_project(tmp_path, "fid_outcomes_pkg", {"test_outcomes.py": OUTCOMES_TEST})
    junit = tmp_path / "out.xml"
    r, res = run_json(pyti, "--junit", junit, d)
    assert r.returncode == 1, r.stderr  # a test fails: the package's failure
    assert res["status"] == "failed"
    t = task(res, "test")
    assert t["status"] == "failed" and t["failure_class"] is None
    tests = t["tests"]
    assert {k: tests[k] for k in ("passed", "failed", "errors", "skipped", "xfailed", "xpassed", "total")} == \
        {"passed": 2, "failed": 1, "errors": 1, "skipped": 1, "xfailed": 1, "xpassed": 0, "total": 6}, tests
    assert tests["no_tests"] is False and tests["failures_truncated"] is False
    by_id = {f["id"]: f for f in tests["failures"]}
    assert set(by_id) == {"tests.test_outcomes::test_fails", "tests.test_outcomes::test_errors"}, by_id
    fail, err = by_id["tests.test_outcomes::test_fails"], by_id["tests.test_outcomes::test_errors"]
    assert fail["outcome"] == "failed" and "one is not two" in fail["message"], fail
    assert "one is not two" in fail["traceback"], fail
    assert err["outcome"] == "error" and "fixture exploded" in err["traceback"], err

    root = ET.parse(junit).getroot()
    suites = root.findall("testsuite")
    assert len(suites) == 2, ET.tostring(root)[:3000]
    tasks_suite, test_suite = suites
    assert [c.get("name") for c in tasks_suite.findall("testcase")] == ["install", "import", "test"]
    assert tasks_suite.find("testcase[@name='test']/failure") is not None
    assert test_suite.get("name").endswith(":test")
    cases = {c.get("name"): c for c in test_suite.findall("testcase")}
    assert sorted(cases) == sorted(["test_pass_a", "test_pass_b", "test_fails", "test_errors",
                                    "test_skipped", "test_xfail"]), list(cases)
    assert cases["test_fails"].find("failure") is not None
    assert cases["test_errors"].find("error") is not None
    assert cases["test_skipped"].find("skipped").get("type") == "pytest.skip"
    assert cases["test_xfail"].find("skipped").get("type") == "pytest.xfail"
    assert list(cases["test_pass_a"]) == []
    assert (test_suite.get("tests"), test_suite.get("failures"), test_suite.get("errors")) == ("6", "1", "1")

    table = pyti("run", "-q", d)
    assert table.returncode == 1
    assert "FAILED tests.test_outcomes::test_fails: AssertionError: one is not two" in table.stdout, table.stdout
    assert "ERROR  tests.test_outcomes::test_errors" in table.stdout, table.stdout
    assert "1 xfailed" in table.stdout, table.stdout


def test_no_tests_is_said(pyti, tmp_path):
    """Point 6: a distribution whose sdist ships no tests is "no tests" (table and JSON), not a
    silent pass of 0 tests."""
    d = make_project(tmp_path, "fid_notests_pkg", {})
    r, res = run_json(pyti, d)
    assert r.returncode == 0, r.stderr
    t = task(res, "test")
    assert t["status"] == "passed"
    assert t["tests"]["total"] == 0 and t["tests"]["no_tests"] is True, t["tests"]
    table = pyti("run", "-q", d)
    line = next(ln for ln in table.stdout.splitlines() if ln.startswith("test "))
    assert line.rstrip().endswith("no tests"), table.stdout
    assert "task test ran no tests" in table.stdout, table.stdout


def write_recipe(tmp_path, body):
    p = tmp_path / "r.ini"
    p.write_text(textwrap.dedent(body))
    return p


def test_hostile_junit_and_runtime(pyti, tmp_path):
    """A task that writes 5000 failures with 4 KiB messages, a right-to-left override and markup in
    its ids, and a runtime file with unknown keys and wrong types: the list is capped at 1000
    (truncated), each text at 1024 bytes, the JSON stays valid, the task's own status decides,
    --junit still parses and the table shows no raw bidi control."""
    d = make_project(tmp_path, "fid_hostile_pkg", {})
    (d / "gen.py").write_text(textwrap.dedent("""\
        import json
        big = "M" * 4096
        cases = "".join(
            f'<testcase classname="c\u202e&lt;b&gt;" name="t{i}"><failure message="{big}">E   boom {i}\\n</failure></testcase>'
            for i in range(5000))
        open("/io/out/junit-test.xml", "w").write(
            f'<testsuites><testsuite tests="5000" failures="5000" errors="0" skipped="0">{cases}</testsuite></testsuites>')
        json.dump({"runner": "x" * 20000, "runner_version": 7, "evil": "e", "sys_path": ["a"] * 500,
                   "modules": {"m%d" % i: i for i in range(200)}}, open("/io/out/runtime-test.json", "w"))
        """))
    recipe = write_recipe(tmp_path, """\
        [task:test]
        run = python3 /io/src/gen.py
        junit = out/junit-test.xml
        """)
    junit = tmp_path / "out.xml"
    r, res = run_json(pyti, "--recipe", recipe, "--junit", junit, d)
    t = res["tasks"][0]
    assert t["status"] == "passed" and t["failure_class"] is None, json.dumps(t)[:3000]
    assert r.returncode == 0, r.stderr[-3000:]
    tests = t["tests"]
    assert tests["failed"] == 5000 and tests["total"] == 5000
    assert len(tests["failures"]) == 1000 and tests["failures_truncated"] is True
    assert all(len(f["message"].encode()) <= 1024 for f in tests["failures"])
    assert tests["failures"][0]["traceback"] == "boom 0", tests["failures"][0]
    assert tests["failures"][0]["id"] == "c\u202e<b>::t0"
    rt = t["runtime"]
    assert set(rt) <= {"python", "runner", "runner_version", "runner_file", "sys_path", "modules"}, rt
    assert "runner_version" not in rt and len(rt["runner"]) <= 4096
    assert len(rt["sys_path"]) == 64 and len(rt["modules"]) == 64
    assert all(v is None for v in rt["modules"].values())
    root = ET.parse(junit).getroot()
    assert len(root.findall("testsuite")[1].findall("testcase")) == 5000
    # the table lists the first failures of a failed task, with no raw bidi control
    recipe.write_text(recipe.read_text().replace("gen.py\n", "gen.py; exit 1\n"))
    table = pyti("run", "-q", "--recipe", recipe, d)
    assert table.returncode == 1, table.stderr[-2000:]
    assert "FAILED c" in table.stdout and "::t0: MMMM" in table.stdout, table.stdout[-3000:]
    assert "\u202e" not in table.stdout


def test_junit_with_dtd_refused(pyti, tmp_path):
    """A JUnit file with a DOCTYPE (entity expansion, external entities) is refused: no counts are
    made up from it, and the task's own status stands."""
    d = make_project(tmp_path, "fid_dtd_pkg", {})
    (d / "gen.py").write_text(textwrap.dedent("""\
        lol = '<!DOCTYPE t [<!ENTITY a "aaaaaaaaaa">' + "".join(
            f'<!ENTITY a{i+1} "' + f"&a{i};" * 10 + '">' for i in range(0, 9)).replace("&a0;", "&a;") + ']>'
        open("/io/out/junit-test.xml", "w").write(
            lol + '<testsuite tests="1" failures="1"><testcase name="x"><failure message="&a9;"/></testcase></testsuite>')
        """))
    recipe = write_recipe(tmp_path, """\
        [task:test]
        run = python3 /io/src/gen.py
        junit = out/junit-test.xml
        """)
    r, res = run_json(pyti, "--recipe", recipe, d)
    t = res["tasks"][0]
    assert r.returncode == 0 and t["status"] == "passed", r.stderr[-2000:]
    assert "tests" not in t, t.get("tests")
    assert "DOCTYPE" in r.stderr, r.stderr[-2000:]


def test_infra_class_is_junit_error(pyti, tmp_path):
    """--junit: a task failed by the infrastructure (here Infra: its cwd does not exist) is an
    <error> with its class, a task the package failed is a <failure>."""
    d = make_project(tmp_path, "fid_infra_pkg", {})
    recipe = write_recipe(tmp_path, """\
        [task:nocwd]
        run = true
        cwd = /io/no/such/dir

        [task:fails]
        run = exit 3
        """)
    junit = tmp_path / "out.xml"
    r, res = run_json(pyti, "--recipe", recipe, "--junit", junit, d)
    assert r.returncode == 1, r.stderr
    assert task(res, "nocwd")["failure_class"] == "Infra"
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.find("testcase[@name='nocwd']/error").get("type") == "Infra"
    assert suite.find("testcase[@name='nocwd']/failure") is None
    assert suite.find("testcase[@name='fails']/failure") is not None
    assert (suite.get("failures"), suite.get("errors")) == ("1", "1")


def test_runtime_record_cannot_fail_the_import(pyti, tmp_path):
    """A module that replaces itself in sys.modules by an object whose __file__ is not a string:
    the import worked, so the import task passes; the record carries the path as a string instead
    of making the task fail on it."""
    d = make_project(tmp_path, "fid_vanish_pkg", {})
    (d / "fid_vanish_pkg" / "__init__.py").write_text(
        "import pathlib, sys\n"
        "class M:\n    __file__ = pathlib.PurePosixPath('/x/y.py')\n"
        "sys.modules[__name__] = M()\n")
    r, res = run_json(pyti, d)
    imp = task(res, "import")
    assert imp["status"] == "passed" and imp["failure_class"] is None, imp["output"][-2000:]
    assert imp["runtime"]["modules"] == {"fid_vanish_pkg": "/x/y.py"}
    assert r.returncode == 0, r.stderr


def test_editable_self_reference_and_unfetchable_line(pyti, tmp_path):
    """Point 4: requirements-dev.txt with `-e .[extra]` (the project itself with its extra, pinned
    to the version under test), a real test dependency and one line no index has: only that line
    is dropped, with pip's own error; the JSON records declared, fetched and dropped, a second
    (cached) run warns and records it again."""
    d = make_project(tmp_path, "fid_selfref_pkg", {"test_selfref.py": """\
        import decorator
        import wcwidth


        def test_extra_and_dev_requirement_installed():
            assert wcwidth.wcwidth("a") == 1
            assert decorator.__version__
        """}, '\n[project.optional-dependencies]\nfancy = ["wcwidth"]\n')
    (d / "requirements-dev.txt").write_text("-e .[fancy]\ndecorator\npyti-no-such-dist-xyzzy==9.9\n")
    for attempt in ("fresh", "cached"):
        r, res = run_json(pyti, d)
        assert r.returncode == 0, (attempt, r.stderr[-4000:], json.dumps(res)[:4000])
        tr = res["test_requirements"]
        assert [x["requirement"] for x in tr["declared"]] == \
            ["-e .[fancy]", "decorator", "pyti-no-such-dist-xyzzy==9.9"], tr
        assert "decorator" in tr["fetched"] and "fid_selfref_pkg[fancy]==0.1.0" in tr["fetched"], tr
        assert [x["requirement"] for x in tr["dropped"]] == ["pyti-no-such-dist-xyzzy==9.9"], tr
        reason = tr["dropped"][0]["reason"]
        assert "pyti-no-such-dist-xyzzy" in reason and "ERROR" in reason, reason
        assert "test requirement 'pyti-no-such-dist-xyzzy==9.9' (requirements-dev.txt) dropped" in r.stderr, \
            (attempt, r.stderr[-3000:])
        assert "see above" not in r.stderr
        assert task(res, "test")["tests"]["passed"] == 1


C_EXT_SETUP = """\
    from setuptools import Extension, setup

    setup(name="fid-cext-pkg", version="0.1.0", packages=["fid_cext_pkg"],
          ext_modules=[Extension("fid_cext_pkg._speed", ["fid_cext_pkg/_speed.c"])])
    """

C_EXT_SRC = """\
    #include <Python.h>
    static PyObject *twice(PyObject *self, PyObject *arg) {
        long v = PyLong_AsLong(arg);
        return PyLong_FromLong(2 * v);
    }
    static PyMethodDef methods[] = {{"twice", twice, METH_O, NULL}, {NULL, NULL, 0, NULL}};
    static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_speed", NULL, -1, methods};
    PyMODINIT_FUNC PyInit__speed(void) { return PyModule_Create(&mod); }
    """


def make_cext(tmp_path, src=C_EXT_SRC):
    d = tmp_path / "fid_cext_pkg-0.1.0"
    (d / "fid_cext_pkg").mkdir(parents=True)
    (d / "tests").mkdir()
    (d / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=61"]\n'
                                      'build-backend = "setuptools.build_meta"\n')
    (d / "setup.py").write_text(textwrap.dedent(C_EXT_SETUP))
    (d / "fid_cext_pkg" / "__init__.py").write_text(
        "try:\n    from ._speed import twice\n    HAVE_SPEEDUPS = True\n"
        "except ImportError:\n    HAVE_SPEEDUPS = False\n")
    (d / "fid_cext_pkg" / "_speed.c").write_text(textwrap.dedent(src))
    (d / "tests" / "test_speed.py").write_text(textwrap.dedent("""\
        import os

        import fid_cext_pkg


        def test_extension_loaded_from_the_install():
            assert fid_cext_pkg.HAVE_SPEEDUPS, fid_cext_pkg.__file__
            assert fid_cext_pkg.twice(21) == 42
            assert "/site-packages/" in os.path.realpath(fid_cext_pkg.__file__), fid_cext_pkg.__file__
        """))
    return d


def test_c_extension_builds_and_loads(pyti, tmp_path):
    """Point 5: a flat-layout sdist with a C extension is built with the image's gcc and Python
    headers in the fetch sandbox; its test imports the installed copy, extension loaded."""
    import tarfile
    d = make_cext(tmp_path)
    sdist = tmp_path / "fid_cext_pkg-0.1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        tf.add(d, arcname=d.name)
    for dist in (d, sdist):  # the source tree, and the sdist made of it
        r, res = run_json(pyti, dist)
        assert r.returncode == 0, r.stderr[-4000:] + json.dumps(res)[:4000]
        t = task(res, "test")
        assert t["tests"]["passed"] == 1 and t["tests"]["failed"] == 0, t["output"][-3000:]
        assert "/site-packages/fid_cext_pkg/" in t["runtime"]["modules"]["fid_cext_pkg"], t["runtime"]


def test_failing_build_is_buildfail(pyti, tmp_path):
    """Point 5: a C extension that does not compile is the package's failure: BuildFail, exit 1,
    with the compiler's message — not `error (Fetch)`, exit 3."""
    d = make_cext(tmp_path, C_EXT_SRC.replace("return PyLong_FromLong(2 * v);",
                                              "return PyLong_FromLong(2 * v) fid_no_such_symbol;"))
    r = pyti("run", "-q", d)
    assert r.returncode == 1, (r.returncode, r.stderr[-4000:])
    assert "pyti: error (BuildFail): " in r.stderr, r.stderr[-4000:]
    assert "error:" in r.stderr and "_speed.c" in r.stderr, r.stderr[-4000:]
    r, res = run_json(pyti, d)
    assert r.returncode == 1
    assert (res["status"], res["failure_class"], res["exit_status"]) == ("failed", "BuildFail", 1), res


def test_flat_layout_tests_the_installed_copy(pyti, tmp_path):
    """Point 2: a flat-layout package (its source directory at the top of the sdist) is imported
    from the venv's site-packages, not from the source tree; the tests' conftest.py and data files
    are still found; the raw data says where the tests ran and which copy was imported.
    test_from = source (a recipe key) runs them in the source tree instead."""
    d = make_project(tmp_path, "fid_flat_pkg", {
        "conftest.py": """\
            import pytest


            @pytest.fixture
            def answer():
                return 42
            """,
        "test_flat.py": """\
            import os
            import pathlib

            import fid_flat_pkg


            def test_installed_copy(answer):
                assert "/site-packages/fid_flat_pkg/" in os.path.realpath(fid_flat_pkg.__file__), fid_flat_pkg.__file__
                assert fid_flat_pkg.ANSWER == answer
                assert (pathlib.Path(__file__).parent / "data.txt").read_text() == "data\\n"
            """})
    (d / "tests" / "data.txt").write_text("data\n")
    r, res = run_json(pyti, d)
    assert r.returncode == 0, r.stderr[-3000:] + task(res, "test")["output"][-3000:]
    t = task(res, "test")
    assert t["tests"]["passed"] == 1
    rt = t["runtime"]
    assert rt["tests_from"] == "installed" and rt["declared_by"] == "default", rt
    assert "/site-packages/fid_flat_pkg/" in rt["modules"]["fid_flat_pkg"], rt

    recipe = tmp_path / "source.ini"
    recipe.write_text(textwrap.dedent("""\
        [recipe]
        requires = pytest
        test_from = source

        [task:install]
        run = /usr/bin/python3 -m venv --without-pip /tmp/pyti-venv &&
          /usr/bin/python3 -m pip --python /tmp/pyti-venv/bin/python install --no-index --find-links /io/wheels '{requirement}' {test_requirements}

        [task:test]
        needs = install
        run = /tmp/pyti-venv/bin/python /io/pyti/runtests.py
        junit = out/junit-test.xml
        """))
    r, res = run_json(pyti, "--recipe", recipe, d)
    t = task(res, "test")
    assert r.returncode == 1 and t["tests"]["failed"] == 1, t["output"][-3000:]
    assert t["runtime"]["tests_from"] == "source"
    assert t["runtime"]["modules"]["fid_flat_pkg"] == "/io/src/fid_flat_pkg/__init__.py", t["runtime"]


UNITTEST_SUITE = """\
    import unittest


    class TestThings(unittest.TestCase):
        def test_one(self):
            self.assertEqual(1, 1)

        def test_two(self):
            self.assertTrue(True)

        def test_broken(self):
            self.assertEqual(1, 2, "one is not two")
    """


def check_unittest_counts(res, runner="unittest"):
    t = task(res, "test")
    tests = t["tests"]
    assert (tests["passed"], tests["failed"], tests["errors"]) == (2, 1, 0), (tests, t["output"][-3000:])
    assert t["runtime"]["runner"] == runner, t["runtime"]
    (f,) = tests["failures"]
    assert f["id"].endswith("TestThings::test_broken") and "one is not two" in f["message"], f
    return t


def test_unittest_only_root_tests_py(pyti, tmp_path):
    """Point 3: a suite written for unittest in a root tests.py (pytest collects nothing from it:
    not test_*.py) runs under unittest discovery, with per-test JUnit and counts 2/1."""
    d = make_project(tmp_path, "fid_ut_root_pkg", {})
    (d / "tests.py").write_text(textwrap.dedent(UNITTEST_SUITE))
    r, res = run_json(pyti, d)
    assert r.returncode == 1, r.stderr[-3000:]
    t = check_unittest_counts(res)
    assert "pytest collected no tests; trying unittest discovery" in t["output"]


def test_unittest_only_tests_test_py(pyti, tmp_path):
    """Point 3: decorator's layout, tests/test.py without __init__.py: 2 passed, 1 failed."""
    d = make_project(tmp_path, "fid_ut_dir_pkg", {"test.py": UNITTEST_SUITE})
    r, res = run_json(pyti, d)
    assert r.returncode == 1, r.stderr[-3000:]
    check_unittest_counts(res)


def test_tox_ini_unittest_discover(pyti, tmp_path):
    """Point 3: tox.ini [testenv] runs `python -m unittest discover -s tests`: pyti runs just that
    (read on the host, nothing of tox executed), per test in JUnit, declared_by tox.ini:LINE."""
    d = make_project(tmp_path, "fid_tox_pkg", {"test_things.py": UNITTEST_SUITE})
    (d / "tox.ini").write_text(textwrap.dedent("""\
        [tox]
        envlist = py311

        [testenv]
        deps =
            decorator
        commands =
            py311: echo only for py311
            python -m unittest discover -s tests {posargs}
        """))
    r, res = run_json(pyti, d)
    assert r.returncode == 1, r.stderr[-3000:]
    t = check_unittest_counts(res)
    assert t["runtime"]["declared_by"] == "tox.ini:9", t["runtime"]
    assert t["runtime"]["args"] == ["discover", "-s", "tests"], t["runtime"]
    assert "decorator" in res["test_requirements"]["fetched"], res["test_requirements"]


def test_tox_ini_pytest_args(pyti, tmp_path):
    """Point 3: tox.ini's `pytest {posargs:-k keep}` selects what it declares (posargs default)."""
    d = make_project(tmp_path, "fid_toxpy_pkg", {"test_sel.py": """\
        def test_keep_me():
            pass


        def test_not_selected():
            raise AssertionError("tox.ini deselects this one")
        """})
    (d / "tox.ini").write_text("[testenv]\ncommands = pytest {posargs:-k keep} tests\n")
    r, res = run_json(pyti, d)
    assert r.returncode == 0, r.stderr[-3000:] + task(res, "test")["output"][-3000:]
    t = task(res, "test")
    assert t["tests"]["passed"] == 1 and t["tests"]["failed"] == 0, t["tests"]
    assert t["runtime"]["declared_by"] == "tox.ini:2" and t["runtime"]["args"] == ["-k", "keep", "tests"]


def test_network_needing_tests_are_network(pyti, tmp_path):
    """Point 7: tests that connect to an outside address or look a name up fail in the sandbox
    (no network): they are counted under `network` in the per-test totals and marked in the
    failures list, apart from a real failure; the runtime record lists what was tried, with counts."""
    d = make_project(tmp_path, "fid_net_pkg", {"test_net.py": """\
        import socket


        def test_connects_out():
            for _ in range(2):
                try:
                    socket.create_connection(("192.0.2.7", 80), timeout=3).close()
                except OSError as e:
                    err = e
            raise err


        def test_resolves_a_name():
            socket.getaddrinfo("pyti-fidelity.example.org", 443)


        def test_real_failure():
            assert 1 == 2
        """})
    r, res = run_json(pyti, d)
    assert r.returncode == 1, r.stderr[-3000:]
    t = task(res, "test")
    tests = t["tests"]
    assert tests["failed"] == 3 and tests["network"] == 2, (tests, t["output"][-3000:])
    by_id = {f["id"].split("::")[-1]: f["network"] for f in tests["failures"]}
    assert by_id == {"test_connects_out": True, "test_resolves_a_name": True, "test_real_failure": False}
    net = {(n["kind"], n["destination"]): n["count"] for n in t["runtime"]["network"]}
    assert net[("connect", "192.0.2.7:80")] == 2, net
    assert net[("getaddrinfo", "pyti-fidelity.example.org:443")] == 1, net


def test_tests_inside_the_package_see_the_extension(pyti, tmp_path):
    """Point 2: when the tests live inside the package (pkg/tests/), the source copy's package is
    overlaid with the installed files, so the compiled extension is there for them too."""
    d = make_cext(tmp_path)
    (d / "tests" / "test_speed.py").unlink()
    (d / "tests").rmdir()
    (d / "fid_cext_pkg" / "tests").mkdir()
    (d / "fid_cext_pkg" / "tests" / "__init__.py").write_text("")
    (d / "fid_cext_pkg" / "tests" / "test_inside.py").write_text(textwrap.dedent("""\
        import fid_cext_pkg


        def test_extension_there():
            assert fid_cext_pkg.HAVE_SPEEDUPS and fid_cext_pkg.twice(2) == 4
        """))
    r, res = run_json(pyti, d)
    assert r.returncode == 0, r.stderr[-3000:] + task(res, "test")["output"][-3000:]
    t = task(res, "test")
    assert t["tests"]["passed"] == 1
    assert t["runtime"]["tests_from"] == "installed"


def test_pytest_configuration_and_src_layout(pyti, tmp_path):
    """Point 3: without tox.ini, pytest runs with the project's own configuration
    ([tool.pytest.ini_options]: testpaths, addopts); point 2: a src layout whose configuration puts
    src/ on sys.path still imports the installed copy."""
    d = tmp_path / "fid_srclay_pkg-0.1.0"
    (d / "src" / "fid_srclay_pkg").mkdir(parents=True)
    (d / "src" / "fid_srclay_pkg" / "__init__.py").write_text("X = 1\n")
    (d / "checks").mkdir()
    (d / "checks" / "test_cfg.py").write_text(textwrap.dedent("""\
        import os

        import fid_srclay_pkg


        def test_selected_installed():
            assert "/site-packages/" in os.path.realpath(fid_srclay_pkg.__file__), fid_srclay_pkg.__file__


        def test_dropped_by_addopts():
            raise AssertionError("addopts -k deselects this")
        """))
    (d / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "fid-srclay-pkg"
        version = "0.1.0"

        [tool.setuptools.packages.find]
        where = ["src"]

        [tool.pytest.ini_options]
        testpaths = ["checks"]
        addopts = "-k installed"
        pythonpath = ["src"]
        """))
    r, res = run_json(pyti, d)
    t = task(res, "test")
    assert r.returncode == 0, r.stderr[-3000:] + t["output"][-3000:]
    assert t["tests"]["passed"] == 1 and t["tests"]["total"] == 1, t["tests"]
