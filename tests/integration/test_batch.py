"""Issue 11, local batches: `pyti run DIST...` and `pyti run -r FILE` with --jobs, one line per job as
it ends, a summary with a verdict per distribution (manager_verdict), exit 0/1/3. Real jobs: real
fetch, real sandboxes, real pytest."""
import json
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from conftest import missing
from pkgs import make_demo_project


@pytest.fixture(scope="module")
def projects(tmp_path_factory, state_dir):
    if not (Path(state_dir) / "images" / "bookworm" / "manifest.json").exists():
        missing("no bookworm image in the test state directory (pyti image build)")
    root = tmp_path_factory.mktemp("batch")
    failing = make_demo_project(root, name="pyti_batch_fails", passing=1, failing=1)
    empty = make_demo_project(root, name="pyti_batch_empty", passing=0, failing=0)
    (empty / "tests" / "test_demo.py").write_text("")
    broken = make_demo_project(root, name="pyti_batch_broken", passing=1, failing=0)
    (broken / "setup.py").write_text("raise SystemExit('pyti-batch: this build fails on purpose')\n")
    (broken / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        """))
    return {"six": "six", "failing": str(failing), "empty": str(empty), "broken": str(broken)}


EXPECTED = {"six": "passed", "failing": "test-failed", "empty": "no-tests", "broken": "build-failed"}


def test_batch_verdicts_json(pyti, projects):
    order = ["six", "failing", "empty", "broken"]
    r = pyti("run", "--json", "--jobs", "2", *[projects[k] for k in order])
    assert r.returncode == 1, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["summary"] == {"passed": 1, "test-failed": 1, "build-failed": 1, "no-tests": 1, "infra": 0}, out["summary"]
    assert len(out["jobs"]) == 4
    for k, job in zip(order, out["jobs"]):
        assert job["verdict"] == EXPECTED[k], (k, json.dumps(job)[:2000])
    # a setup.py that fails is the package's result (BuildFail, exit 1), not pyti's error
    assert out["jobs"][3]["status"] == "failed" and out["jobs"][3]["failure_class"] == "BuildFail"
    assert out["jobs"][3]["dist"] == projects["broken"]
    assert out["jobs"][0]["tasks"] and out["jobs"][0]["dist"].startswith("six==")  # each job's raw data
    done = [l for l in r.stderr.splitlines() if ": done (" in l]
    assert len(done) == 4 and all(l.startswith("pyti: [") for l in done), r.stderr[-3000:]
    assert any("build-failed BuildFail" in l for l in done), done


def test_requirements_file(pyti, projects, tmp_path):
    req = tmp_path / "reqs.txt"
    req.write_text(textwrap.dedent(f"""\
        # the batch, one requirement a line, as pip -r reads it
        six   # inline comment

        {projects['empty']}
        """))
    r = pyti("run", "-r", req, "--jobs", "2")
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]  # passed and no-tests: nothing failed
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["DIST", "VERDICT", "TESTS", "TIME", "LOGS"], r.stdout
    rows = {l.split()[0]: l.split()[1] for l in lines[1:3]}
    assert rows == {"six": "passed", projects["empty"]: "no-tests"}, r.stdout
    assert lines[-1].startswith("summary: 1 passed, 1 no-tests (2 jobs in "), r.stdout
    # several -r and DISTs add up; a file may include another (-r, relative to itself)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "top.txt").write_text("-r ../reqs.txt\n")
    r = pyti("run", "--json", "-r", tmp_path / "sub" / "top.txt", projects["failing"])
    assert r.returncode == 1 and len(json.loads(r.stdout)["jobs"]) == 3, r.stderr[-2000:]


@pytest.mark.parametrize("body,needle", [
    ("six\n--index-url http://x/simple\n", ":2: '--index-url http://x/simple': pip options are not taken"),
    ("# nothing\n\n", "no requirement in"),
])
def test_requirements_file_errors(pyti, tmp_path, body, needle):
    req = tmp_path / "r.txt"
    req.write_text(body)
    r = pyti("run", "-r", req, timeout=60)
    assert r.returncode == 2 and needle in r.stderr and r.stderr.startswith("pyti: "), r.stderr
    r = pyti("run", "-r", tmp_path / "missing.txt", timeout=60)
    assert r.returncode == 2 and "missing.txt" in r.stderr, r.stderr
    r = pyti("run", "--junit", tmp_path / "j.xml", "six", "iniconfig", timeout=60)
    assert r.returncode == 2 and "--junit FILE takes one distribution" in r.stderr


def test_batch_infra_is_exit_3(pyti, state_dir, tmp_path):
    """An index that does not answer is infrastructure: verdict infra, exit 3."""
    fresh = tmp_path / "state"
    (fresh / "images").mkdir(parents=True)
    (fresh / "images" / "bookworm").symlink_to(Path(state_dir).resolve() / "images" / "bookworm")
    r = pyti("run", "--json", "iniconfig==2.0.0", "six==1.16.0", state=fresh,
             env={"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "3"})
    assert r.returncode == 3, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["summary"]["infra"] == 2 and {j["failure_class"] for j in out["jobs"]} == {"Network"}


def test_batch_interrupted(pyti_bin, state_dir, tmp_path):
    """SIGINT in a batch stops every running job and still prints the summary of what ended."""
    recipe = tmp_path / "slow.ini"
    recipe.write_text("[task:first]\nrun = echo first\n[task:second]\nneeds = first\nrun = sleep 3210\n")
    p = subprocess.Popen([pyti_bin, "--state-dir", state_dir, "run", "--json", "--jobs", "2", "--recipe", str(recipe),
                          "six", "six==1.17.0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, started = [], 0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and started < 2:
        line = p.stderr.readline()
        if not line:
            break
        seen.append(line)
        started += "task 2/2 second" in line
    assert started == 2, "".join(seen)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    err = "".join(seen) + err
    assert p.returncode == 130, err
    res = json.loads(out)
    assert res["interrupted"] == "SIGINT" and len(res["jobs"]) == 2, out[:2000]
    assert all(j["partial"]["tasks"][0]["status"] == "passed" for j in res["jobs"]), out[:3000]
    assert "2 running jobs stopped" in err
