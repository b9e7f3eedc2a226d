"""The store (issue 11, "One store"): `pyti run` records its job in the local store (SQLite),
`pyti runs` and `pyti show` read it back, `pyti store copy` moves the history into a real PostgreSQL
(a throwaway cluster started here with scripts/pg-start) and it reads back from there with --store."""
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import REPO, missing
from pkgs import make_demo_project


def need_image(state_dir):
    if not (Path(state_dir) / "images" / "bookworm" / "manifest.json").exists():
        missing(f"no bookworm image in {state_dir} (pyti image build)")


def js(r):
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, pyti_bin, state_dir):
    """One `pyti run` of a demo project (1 passing, 1 failing test) recorded in a store of its own
    (the shared state directory's STATE/pyti.db is left alone)."""
    need_image(state_dir)
    d = tmp_path_factory.mktemp("store")
    proj = make_demo_project(d, name="pyti_store_demo")
    db = d / "hist" / "pyti.db"
    r = subprocess.run([pyti_bin, "--state-dir", state_dir, "--store", str(db), "run", "--json", "-q", str(proj)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 1, r.stderr  # a test failed
    return db, proj, json.loads(r.stdout)


def test_run_is_recorded(pyti, recorded):
    db, proj, res = recorded
    assert db.exists()
    runs = js(pyti("--store", db, "runs", "--json"))["runs"]
    assert len(runs) == 1
    run = runs[0]
    assert run["origin"] == "local" and run["jobs"] == 1
    assert run["counts"]["done"] == 1 and run["verdicts"]["test-failed"] == 1
    assert run["dists"] == [str(proj)]

    shown = js(pyti("--store", db, "show", run["run_id"], "--json"))
    (job,) = shown["jobs"]
    assert job["verdict"] == "test-failed" and job["state"] == "done"
    assert job["results"]["tasks"] == res["tasks"]  # the raw data as `pyti run --json` printed it

    # a unique prefix of the job's id, and the job's own detail
    detail = js(pyti("--store", db, "show", job["job_id"][:8], "--json"))["job"]
    (att,) = detail["attempts"]
    assert att["outcome"] == "done"
    assert [t["task"] for t in att["tasks"]] == [t["task"] for t in res["tasks"]]
    assert [c["id"] for c in att["testcases"]] == ["tests.test_demo::test_fail_0"]
    assert att["testcases"][0]["outcome"] == "failed"
    names = {a["name"] for a in att["artefacts"]}
    assert {"results.json", "logs/test.log"} <= names
    assert any(n.startswith("junit") for n in names)

    # the same, for people
    t = pyti("--store", db, "runs")
    assert t.returncode == 0 and run["run_id"] in t.stdout and "test-failed 1" in t.stdout
    t = pyti("--store", db, "show", job["job_id"])
    assert t.returncode == 0, t.stderr
    assert "tests.test_demo::test_fail_0" in t.stdout and "logs/test.log" in t.stdout
    # PYTI_STORE names the store as --store does
    assert js(pyti("runs", "--json", env={"PYTI_STORE": str(db)}))["runs"][0]["run_id"] == run["run_id"]


def test_show_errors(pyti, recorded):
    db = recorded[0]
    r = pyti("--store", db, "show", "rffffffffffffffff")
    assert r.returncode == 2 and "no run" in r.stderr
    r = pyti("--store", db, "show", "not-an-id")
    assert r.returncode == 2
    r = pyti("--store", "host=/nonexistent-pyti-pg dbname=x", "runs")
    assert r.returncode == 3 and "cannot connect" in r.stderr


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL on a unix socket (its path must be short: /tmp)."""
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        missing("PostgreSQL's server is not installed (apt-get install postgresql)")
    d = tempfile.mkdtemp(prefix="pyti-pg-", dir="/tmp")
    r = subprocess.run([REPO / "scripts" / "pg-start", d], capture_output=True, text=True, timeout=120)
    try:
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"host={d} dbname=pyti user=pyti"
        yield d
    finally:
        subprocess.run([REPO / "scripts" / "pg-stop", d, "--rm"], timeout=120)
        shutil.rmtree(d, ignore_errors=True)


def test_copy_to_postgresql(pyti, recorded, postgres):
    db = recorded[0]
    url = f"postgresql:///pyti?host={postgres}&user=pyti"
    r = pyti("store", "copy", db, url)
    assert r.returncode == 0, r.stderr
    assert "copied 1 runs (1 jobs" in r.stdout
    again = js(pyti("store", "copy", "--json", db, url))
    assert again["runs"] == 0 and again["runs_skipped"] == 1 and again["complete"]

    local = js(pyti("--store", db, "runs", "--json"))["runs"]
    shared = js(pyti("--store", url, "runs", "--json"))["runs"]
    assert [r["run_id"] for r in shared] == [r["run_id"] for r in local]
    assert shared[0]["verdicts"] == local[0]["verdicts"]
    job_id = js(pyti("--store", db, "show", local[0]["run_id"], "--json"))["jobs"][0]["job_id"]
    a = js(pyti("--store", db, "show", job_id, "--json"))["job"]
    b = js(pyti("--store", f"host={postgres} dbname=pyti user=pyti", "show", job_id, "--json"))["job"]
    assert a == b  # everything, down to the artefacts' digests
    # one artefact read back through PostgreSQL's copy of the blob: the same bytes
    assert any(x["name"] == "logs/test.log" and x["size"] > 0 for x in b["attempts"][0]["artefacts"])
    la = pyti("--store", db, "show", job_id, "--artefact", "logs/test.log")
    pa = pyti("--store", url, "show", job_id, "--artefact", "logs/test.log")
    assert la.returncode == 0 and pa.returncode == 0, pa.stderr
    assert "test_fail_0" in pa.stdout and pa.stdout == la.stdout
    assert pyti("--store", url, "show", job_id, "--artefact", "no/such").returncode == 2


def test_run_records_into_postgresql(pyti, recorded, postgres):
    """`pyti run --store postgresql://…` (the global option) records straight into PostgreSQL."""
    proj = recorded[1]
    url = f"postgresql:///pyti?host={postgres}&user=pyti"
    r = pyti("--store", url, "run", "-q", proj)
    assert r.returncode == 1, r.stderr
    (run,) = js(pyti("--store", url, "runs", "--json"))["runs"]
    assert run["verdicts"]["test-failed"] == 1 and run["dists"] == [str(proj)]


def test_store_failure_is_a_warning(pyti, recorded):
    """A store that cannot be written costs a warning; the run keeps its own exit status."""
    proj = recorded[1]
    r = pyti("--store", "host=/nonexistent-pyti-pg dbname=x connect_timeout=2", "run", "-q", proj)
    assert r.returncode == 1, r.stderr  # the demo's failing test, not an infrastructure error
    assert "not recorded in the store" in r.stderr
    assert "test_fail_0" in r.stdout
