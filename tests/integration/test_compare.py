"""Regressions (issue 13): two real local runs of a small project made here, recorded in a store of
their own, compared with `pyti compare` — version 0.1 passes, 0.2 fails one test and adds one
(regressed, the newly failing test id, added/removed from the stored JUnit files, --json and
--markdown); a task killed by its timeout or its memory limit on one side (spurious); a new dependency whose sdist does
not build (broken-dependency, grouped under it); `pyti rerun` queues exactly the
failed jobs as a run linked to the old one, `--now` runs them here; `--confirm` reruns a regression
on both sides and keeps it only when every rerun agrees (flaky when the source changed under A)."""
import io
import json
import os
import subprocess
import tarfile
import textwrap

import pytest

from pkgs import make_demo_project
from test_store import need_image

NAME = "pyti_cmp_demo"


def js(r, rc=0):
    assert r.returncode == rc, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return json.loads(r.stdout)


def newest_run(pyti_bin, state_dir, db):
    r = subprocess.run([pyti_bin, "--state-dir", state_dir, "--store", str(db), "runs", "--json", "--limit", "1"],
                       capture_output=True, text=True, timeout=60)
    return json.loads(r.stdout)["runs"][0]["run_id"]


def run_dist(pyti_bin, state_dir, db, dist, *extra, env=None, rc=None):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([pyti_bin, "--state-dir", state_dir, "--store", str(db), "run", "-q", *extra, str(dist)],
                       capture_output=True, text=True, timeout=900, env=e)
    if rc is not None:
        assert r.returncode == rc, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return newest_run(pyti_bin, state_dir, db)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, pyti_bin, state_dir):
    need_image(state_dir)
    d = tmp_path_factory.mktemp("compare")
    db = d / "hist" / "pyti.db"
    good = make_demo_project(d, name=NAME, version="0.1", passing=2, failing=0)
    bad = make_demo_project(d, name=NAME, version="0.2", passing=2, failing=0)
    (bad / "tests" / "test_demo.py").write_text(textwrap.dedent(f"""\
        def test_pass_0():
            from {NAME} import answer
            assert answer() == 42


        def test_pass_1():
            import json
            json.loads("not json")


        def test_added():
            pass
        """))
    ra = run_dist(pyti_bin, state_dir, db, good, rc=0)
    rb = run_dist(pyti_bin, state_dir, db, bad, rc=1)
    return {"db": db, "dir": d, "good": good, "bad": bad, "a": ra, "b": rb}


def test_compare_regressed(pyti, runs):
    db = runs["db"]
    r = pyti("--store", db, "compare", "--json", runs["a"], runs["b"])
    cmp = js(r, rc=1)  # 1: a regression
    assert set(cmp) >= {"a", "b", "pairs", "groups", "summary"}
    assert cmp["a"] == runs["a"] and cmp["b"] == runs["b"]
    (pair,) = cmp["pairs"]
    assert set(pair) >= {"dist", "a", "b", "verdict", "tests"}
    # the two versions are two local directories of one project: paired by its name
    assert pair["dist"] == str(runs["good"]) and pair["dist_b"] == str(runs["bad"])
    assert pair["verdict"] == "regressed"
    assert pair["verdict_a"] == "passed" and pair["verdict_b"] == "test-failed"
    assert pair["tests"]["newly_failing"] == ["tests.test_demo::test_pass_1"]
    assert pair["tests"]["newly_passing"] == []
    # every test id from the JUnit files the store keeps as artefacts
    assert pair["tests"]["added"] == ["tests.test_demo::test_added"]
    assert pair["tests"]["removed"] == []
    # what differs between the two sides' resolved wheel sets: the project's own version
    assert {"name": "pyti-cmp-demo", "a": "0.1", "b": "0.2"} in pair["wheels"]
    assert cmp["summary"]["regressed"] == 1 and cmp["regressions"] == 1
    assert sum(cmp["summary"].values()) == 1
    (g,) = cmp["groups"]
    assert g["kind"] == "test" and g["count"] == 1
    assert g["signature"].startswith("JSONDecodeError at ")  # exception type + innermost frame
    assert g["tests"] == [{"dist": str(runs["good"]), "id": "tests.test_demo::test_pass_1"}]

    md = pyti("--store", db, "compare", "--markdown", runs["a"], runs["b"])
    assert md.returncode == 1, md.stderr
    assert "**1 regression**" in md.stdout
    assert "| regressed |" in md.stdout and "`tests.test_demo::test_pass_1`" in md.stdout
    assert "### Failures by cause" in md.stdout

    t = pyti("--store", db, "compare", runs["a"][:8], runs["b"][:8])  # unique prefixes
    assert t.returncode == 1, t.stderr
    assert "regressed" in t.stdout and "newly_failing: tests.test_demo::test_pass_1" in t.stdout

    # the other way round: fixed, exit 0
    back = js(pyti("--store", db, "compare", "--json", runs["b"], runs["a"]))
    assert back["pairs"][0]["verdict"] == "fixed"
    assert back["pairs"][0]["tests"]["newly_passing"] == ["tests.test_demo::test_pass_1"]
    assert back["pairs"][0]["tests"]["removed"] == ["tests.test_demo::test_added"]


def test_compare_usage(pyti, runs):
    db = runs["db"]
    r = pyti("--store", db, "compare", runs["a"], "rffffffffffffffff")
    assert r.returncode == 2 and "no run" in r.stderr
    job = js(pyti("--store", db, "show", runs["a"], "--json"))["jobs"][0]["job_id"]
    r = pyti("--store", db, "compare", runs["a"], job)
    assert r.returncode == 2 and "not a run id" in r.stderr
    assert pyti("--store", db, "compare", runs["a"]).returncode == 2
    assert pyti("--store", db, "compare", "--json", "--markdown", runs["a"], runs["b"]).returncode == 2


def test_compare_spurious(pyti, runs, pyti_bin, state_dir, tmp_path):
    """The same distribution; on one side its task is killed by its timeout, or by its memory limit:
    spurious, not regressed."""
    quick = tmp_path / "quick.ini"
    quick.write_text("[recipe]\nname = quick\n\n[task:test]\nrun = true\ntimeout = 60\n")
    slow = tmp_path / "slow.ini"
    slow.write_text("[recipe]\nname = slow\n\n[task:test]\nrun = sleep 60\ntimeout = 2\n")
    db = runs["db"]
    ra = run_dist(pyti_bin, state_dir, db, runs["good"], "--recipe", quick, rc=0)
    rb = run_dist(pyti_bin, state_dir, db, runs["good"], "--recipe", slow, rc=1)
    cmp = js(pyti("--store", db, "compare", "--json", ra, rb))  # 0: no regression
    (pair,) = cmp["pairs"]
    assert pair["verdict"] == "spurious" and pair["class"] == "Timeout", pair
    assert cmp["regressions"] == 0
    # a job killed by its memory limit on one side: spurious too
    oom = tmp_path / "oom.ini"
    oom.write_text('[recipe]\nname = oom\n\n[task:test]\nrun = /usr/bin/python3 -c "b = bytearray(1 << 30)"\n'
                   "memory = 64M\n")
    rc = run_dist(pyti_bin, state_dir, db, runs["good"], "--recipe", oom, rc=1)
    cmp = js(pyti("--store", db, "compare", "--json", ra, rc))
    assert cmp["pairs"][0]["verdict"] == "spurious" and cmp["pairs"][0]["class"] == "OOM", cmp["pairs"][0]
    # rerun --spurious picks it; the passing side has none
    q = js(pyti("--store", db, "rerun", "--spurious", "--json", rb))
    assert len(q["runs"]) == 1 and q["runs"][0]["parent"] == rb
    r = pyti("--store", db, "rerun", "--spurious", ra)
    assert r.returncode == 2 and "no spurious job" in r.stderr


def test_rerun(pyti, runs):
    db = runs["db"]
    # queued: exactly the failed jobs, as a new run whose parent is the old one
    q = js(pyti("--store", db, "rerun", "--failed", "--json", runs["b"]))
    (nr,) = q["runs"]
    assert nr["parent"] == runs["b"] and len(nr["jobs"]) == 1
    shown = js(pyti("--store", db, "show", nr["run_id"], "--json"))
    assert shown["run"]["parent"] == runs["b"] and shown["run"]["origin"] == "submit"
    (job,) = shown["jobs"]
    assert job["state"] == "queued" and job["dist"] == str(runs["bad"])
    # --all: every job, by the store's own rerun (same recipe and options)
    q = js(pyti("--store", db, "rerun", "--all", "--json", runs["a"]))
    assert q["runs"][0]["parent"] == runs["a"] and len(q["runs"][0]["jobs"]) == 1
    # nothing failed in A
    r = pyti("--store", db, "rerun", runs["a"])
    assert r.returncode == 2 and "no failed job" in r.stderr
    # --now runs it here and records it
    r = pyti("--store", db, "rerun", "--now", "--json", runs["b"])
    now = js(r, rc=1)  # the job failed again
    (nr2,) = now["runs"]
    assert nr2["parent"] == runs["b"] and nr2["jobs"][0]["verdict"] == "test-failed"
    shown = js(pyti("--store", db, "show", nr2["run_id"], "--json"))
    assert shown["run"]["origin"] == "local" and shown["jobs"][0]["state"] == "done"


def test_confirm(pyti, runs):
    db = runs["db"]
    # both sides stable: the regression is confirmed by one more run on each side
    r = pyti("--store", db, "compare", "--json", "--confirm", "--times", "1", "-q", runs["a"], runs["b"])
    cmp = js(r, rc=1)
    (pair,) = cmp["pairs"]
    assert pair["verdict"] == "regressed", pair
    assert pair["runs"] == {"a": ["passed", "passed"], "b": ["test-failed", "test-failed"]}
    assert pair["tests"]["newly_failing"] == ["tests.test_demo::test_pass_1"]
    cr = cmp["confirm_runs"]
    assert js(pyti("--store", db, "show", cr["a"], "--json"))["run"]["parent"] == runs["a"]
    assert js(pyti("--store", db, "show", cr["b"], "--json"))["run"]["parent"] == runs["b"]
    # A and its reruns agree: nothing flaky to run again
    r = pyti("--store", db, "rerun", "--flaky", runs["a"])
    assert r.returncode == 2 and "no flaky job" in r.stderr

    # A's source changes under it (its test now fails): A's reruns disagree with A → flaky, not regressed
    (runs["good"] / "tests" / "test_demo.py").write_text("def test_pass_0():\n    pass\n\n\ndef test_pass_1():\n"
                                                         "    assert 0\n")
    r = pyti("--store", db, "compare", "--json", "--confirm", "--times", "1", "-q", runs["a"], runs["b"])
    cmp = js(r)  # 0: no regression left
    (pair,) = cmp["pairs"]
    assert pair["verdict"] == "flaky", pair
    fl = pair["tests"]["flaky"]
    assert {"id": "tests.test_demo::test_pass_1", "side": "a", "runs": 2, "passed": 1, "pass_rate": 0.5} in fl
    # now A's runs (A and the runs made again from it) disagree: rerun --flaky picks A's job
    q = js(pyti("--store", db, "rerun", "--flaky", "--json", runs["a"]))
    assert q["runs"][0]["parent"] == runs["a"] and len(q["runs"][0]["jobs"]) == 1
    # an A/A control (the first confirmation's run of A): no flake in it, the regression stands
    ctl = js(pyti("--store", db, "compare", "--json", "--control", cr["a"], runs["a"], runs["b"]), rc=1)
    assert ctl["control"]["run"] == cr["a"]
    assert ctl["control"]["packages"][0]["runs"] == 2 and ctl["control"]["packages"][0]["flake_rate"] == 0.0
    assert ctl["pairs"][0]["verdict"] == "regressed"
    # --control alone: A over its own job and the runs made again from it (two confirmations; the
    # queued --flaky run has not run and does not count): test_pass_1 passed 2 of 3 times
    alone = js(pyti("--store", db, "compare", "--control", runs["a"], "--json"))
    (pk,) = alone["packages"]
    assert pk["runs"] == 3 and pk["passed"] == 2
    assert [(t["id"], t["runs"], t["passed"]) for t in alone["known_flaky"]] == [("tests.test_demo::test_pass_1", 3, 2)]
    t = pyti("--store", db, "compare", "--control", runs["a"])
    assert t.returncode == 0 and "known flaky tests:" in t.stdout


def broken_sdist(links, name="pyti_cmp_brokendep", version="1.0"):
    """An sdist whose metadata builds and whose wheel does not (setup.py refuses bdist_wheel)."""
    files = {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n',
        "setup.py": textwrap.dedent(f"""\
            import sys
            from setuptools import setup
            if "bdist_wheel" in sys.argv:
                raise SystemExit("pyti test: this dependency does not build")
            setup(name="{name}", version="{version}", py_modules=[])
            """),
    }
    links.mkdir(parents=True, exist_ok=True)
    with tarfile.open(links / f"{name}-{version}.tar.gz", "w:gz") as tf:
        for n, d in files.items():
            ti = tarfile.TarInfo(f"{name}-{version}/{n}")
            b = d.encode()
            ti.size = len(b)
            tf.addfile(ti, io.BytesIO(b))


def test_broken_dependency(pyti, runs, pyti_bin, state_dir):
    """B's version depends on a distribution that fails to build (from a find-links directory the
    user's pip configuration names): broken-dependency, grouped under that dependency."""
    d = runs["dir"] / "dep"
    broken_sdist(d / "links")
    ok = make_demo_project(d, name="pyti_cmp_user", version="0.1", passing=1, failing=0)
    bad = make_demo_project(d, name="pyti_cmp_user", version="0.2", passing=1, failing=0)
    pp = bad / "pyproject.toml"
    pp.write_text(pp.read_text().replace('version = "0.2"', 'version = "0.2"\ndependencies = ["pyti-cmp-brokendep"]'))
    env = {"PIP_FIND_LINKS": str(d / "links")}
    db = runs["dir"] / "dep.db"
    ra = run_dist(pyti_bin, state_dir, db, ok, env=env, rc=0)
    rb = run_dist(pyti_bin, state_dir, db, bad, env=env, rc=1)  # a dependency failed to build: the package's result (BuildFail)
    cmp = js(pyti("--store", db, "compare", "--json", ra, rb), rc=1)
    (pair,) = cmp["pairs"]
    assert pair["verdict"] == "broken-dependency", pair
    assert pair["verdict_b"] == "build-failed"
    assert pair["dependency"] == "pyti-cmp-brokendep"
    (g,) = cmp["groups"]
    assert g == {"signature": "dependency pyti-cmp-brokendep", "kind": "broken-dependency", "count": 1,
                 "dists": [str(ok)], "tests": []}
    assert cmp["summary"]["broken-dependency"] == 1 and cmp["regressions"] == 1
