"""Drive the real, built pyti-agent on temporary I/O directories (no sandbox: the lead repeats these
through the ns backend). Every process tree started here is bounded.

PYTI_AGENT   the agent binary (default: build/src/agent/pyti-agent)
"""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PY = "/usr/bin/python3"


UNSHARE = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]


def _can_unshare():
    try:
        return subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def agent_path():
    p = Path(os.environ.get("PYTI_AGENT", REPO / "build" / "src" / "agent" / "pyti-agent"))
    assert p.exists(), f"pyti-agent not found at {p}; build first"
    return str(p)


@pytest.fixture(scope="session", params=["process", "pid1"])
def agent_bin(request, agent_path):
    """The agent command: as an ordinary process (a subreaper), or as PID 1 of a new pid namespace
    (as the ns backend runs it; a user namespace makes this work without privileges)."""
    if request.param == "process":
        return [agent_path]
    if not _can_unshare():
        pytest.skip("unprivileged user+pid namespaces unavailable")
    return [*UNSHARE, agent_path]


def marker_procs(marker):
    """PIDs of processes whose command line contains marker."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmd:
            found.append(int(d))
    return found


class Run:
    def __init__(self, proc, io):
        self.proc = proc
        self.io = io
        self.events = [json.loads(line[6:]) for line in proc.stdout.splitlines() if line.startswith("@pyti ")]
        rp = io / "out" / "results.json"
        self.results = json.loads(rp.read_text()) if rp.exists() else None

    def task(self, name):
        return next(t for t in self.results["tasks"] if t["task"] == name)


def run_job(agent_bin, io, tasks, env=None, timeout=120, **job):
    io.mkdir(parents=True, exist_ok=True)
    doc = {"job": "test-job", "dist": "demo==1.0", "recipe": "default", "backend": "ns",
           "image": "host", "env": env if env is not None else {"LANG": "C.UTF-8"}, "tasks": tasks}
    doc.update(job)
    (io / "job.json").write_text(json.dumps(doc))
    p = subprocess.run([*agent_bin, "--io", str(io)], capture_output=True, text=True, timeout=timeout)
    return Run(p, io)


def task(name, run, **kw):
    return {"name": name, "run": run, "needs": [], **kw}


def test_passed_failed_skipped(agent_bin, tmp_path):
    home = tmp_path.name + "-home"
    r = run_job(agent_bin, tmp_path / "io", [
        task("a", "echo out; echo err >&2; echo $FOO; pwd"),
        task("b", "exit 3", needs=["a"]),
        task("c", "echo never", needs=["b"]),
        task("d", "echo again", needs=["a"], env={"FOO": "task"}, cwd="/tmp"),
        task("e", "test -d $HOME && echo home-ok", needs=["c"]),
    ], env={"FOO": "job", "HOME": f"/tmp/{home}"})
    try:
        assert r.proc.returncode == 0, r.proc.stderr
        res = r.results
        assert res["status"] == "failed"
        assert (res["job"], res["dist"], res["recipe"], res["backend"], res["image"]) == \
            ("test-job", "demo==1.0", "default", "ns", "host")
        assert res["started_at"].endswith("Z") and "T" in res["started_at"]
        a = r.task("a")
        assert a["status"] == "passed" and a["failure_class"] is None and a["exit_code"] == 0
        assert a["output"] == f"out\nerr\njob\n{r.io}\n"
        assert (r.io / a["log"]).read_text() == a["output"]
        for k in ("wall_s", "cpu_user_s", "cpu_sys_s", "max_rss_kb", "output_bytes", "started_at"):
            assert k in a
        b = r.task("b")
        assert b["status"] == "failed" and b["exit_code"] == 3 and b["failure_class"] is None
        c = r.task("c")
        assert c["status"] == "skipped" and c["failure_class"] == "DependsOn"
        assert not (r.io / "out" / "logs" / "c.log").exists()
        d = r.task("d")
        assert d["status"] == "passed" and d["output"] == "again\n"
        assert r.task("e")["failure_class"] == "DependsOn"  # skips propagate
        kinds = [e["event"] for e in r.events]
        assert kinds[0] == "job_start" and kinds[-1] == "job_end"
        assert r.events[0]["tasks"] == 5 and r.events[-1]["status"] == "failed"
        ends = {e["task"]: e for e in r.events if e["event"] == "task_end"}
        assert ends["c"]["status"] == "skipped" and ends["c"]["failure_class"] == "DependsOn"
        starts = [e["task"] for e in r.events if e["event"] == "task_start"]
        assert starts == ["a", "b", "d"]
    finally:
        subprocess.run(["rm", "-rf", f"/tmp/{home}"])


def test_all_passed_and_heartbeat(agent_bin, tmp_path):
    r = run_job(agent_bin, tmp_path, [task("slow", "sleep 0.7; echo done")], heartbeat=0.2)
    assert r.results["status"] == "passed"
    beats = [e for e in r.events if e["event"] == "heartbeat"]
    assert len(beats) >= 2 and beats[0]["task"] == "slow"
    assert r.events[-1] == {"event": "job_end", "status": "passed"}


@pytest.mark.parametrize("doc,needle", [
    ("{not json", "job.json"),
    (json.dumps({"tasks": [{"name": "a", "run": "true", "needs": ["nope"]}]}), "unknown task nope"),
    (json.dumps({"tasks": [{"name": "a/b", "run": "true"}]}), "invalid name"),
    (None, "job.json"),
])
def test_bad_job_exit_2(agent_bin, tmp_path, doc, needle):
    if doc is not None:
        (tmp_path / "job.json").write_text(doc)
    p = subprocess.run([*agent_bin, "--io", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2
    assert needle in p.stderr
    assert not (tmp_path / "out" / "results.json").exists()


def test_usage(agent_path):
    p = subprocess.run([agent_path, "--bogus"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "usage" in p.stderr


def test_timeout(agent_bin, tmp_path):
    t0 = time.monotonic()
    r = run_job(agent_bin, tmp_path, [task("t", "echo start; sleep 60", timeout=1)])
    assert time.monotonic() - t0 < 10
    t = r.task("t")
    assert t["status"] == "failed" and t["failure_class"] == "Timeout"
    assert t["signal"] == 9 and t["exit_code"] is None
    assert 0.9 <= t["wall_s"] < 5 and t["output"] == "start\n"


def test_no_output(agent_bin, tmp_path):
    r = run_job(agent_bin, tmp_path, [task("t", "echo a; sleep 60", timeout=30, no_output_timeout=1)])
    t = r.task("t")
    assert t["failure_class"] == "NoOutput" and t["wall_s"] < 5


def test_oom(agent_bin, tmp_path):
    marker = f"pyti-oom-{os.getpid()}"
    r = run_job(agent_bin, tmp_path, [
        task("oom", f"{PY} -c \"b = b'x' * (1 << 30); print('survived')\" {marker}", memory=256 << 20,
             timeout=60),
        task("after", "echo next", needs=["oom"]),
    ])
    t = r.task("oom")
    assert t["status"] == "failed" and t["failure_class"] == "OOM"
    assert "survived" not in t["output"]
    assert t["max_rss_kb"] > 200 * 1024
    assert r.task("after")["failure_class"] == "DependsOn"
    assert marker_procs(marker) == []


def test_pids(agent_bin, tmp_path):
    marker = f"pyti-bomb-{os.getpid()}"
    # Bounded bomb: binary forking to depth 8 is at most 511 processes, each gone after 30 s.
    bomb = f"b() {{ if [ $1 -gt 0 ]; then b $(($1-1)) & b $(($1-1)) & fi; sleep 30; }}; b 8 # {marker}"
    t0 = time.monotonic()
    r = run_job(agent_bin, tmp_path, [task("bomb", f"sh -c '{bomb}' {marker}", pids=64, timeout=60)])
    assert time.monotonic() - t0 < 20
    t = r.task("bomb")
    assert t["status"] == "failed" and t["failure_class"] == "Pids"
    assert marker_procs(marker) == []


def test_gigabyte_of_output(agent_bin, tmp_path):
    r = run_job(agent_bin, tmp_path, [
        task("loud", "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 1000000000; echo; echo THE-END",
             output_limit=1 << 20, timeout=120),
    ])
    t = r.task("loud")
    assert t["status"] == "passed" and t["failure_class"] is None and t["exit_code"] == 0
    assert t["output_bytes"] == 1000000000 + len("\nTHE-END\n")
    assert t["output_truncated"] is True
    assert len(t["output"]) < 100_000 and "bytes omitted" in t["output"]
    assert t["output"].endswith("THE-END\n")
    log = r.io / t["log"]
    size = log.stat().st_size
    assert (1 << 20) <= size < (1 << 20) + 100_000
    with open(log, "rb") as f:
        assert f.read(10) == b"0123456789"
        f.seek(-8, os.SEEK_END)
        assert f.read() == b"THE-END\n"


def test_no_processes_left(agent_bin, tmp_path):
    marker = f"pyti-daemon-{os.getpid()}"
    r = run_job(agent_bin, tmp_path, [
        # A daemon that escapes the process group and keeps the output pipe open.
        task("daemon", f"(setsid sh -c 'sleep 300; : {marker}' &); echo started"),
        task("check", f"sleep 0.2; ps -eo args 2>/dev/null | grep -c '[:] {marker}' || true"),
    ])
    assert r.task("daemon")["status"] == "passed" and r.task("daemon")["wall_s"] < 5
    assert r.task("check")["output"].strip() in ("0", "")
    assert marker_procs(marker) == []


def test_cwd_missing_is_infra(agent_bin, tmp_path):
    r = run_job(agent_bin, tmp_path, [task("x", "true", cwd="/nonexistent-pyti-dir"),
                                      task("y", "echo fine")])
    x = r.task("x")
    assert x["status"] == "failed" and x["failure_class"] == "Infra"
    assert "nonexistent-pyti-dir" in x["output"]
    assert r.task("y")["status"] == "passed"


def test_vm_mode_refuses_unless_pid1(agent_path):
    p = subprocess.run([agent_path, "--vm"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "PID 1" in p.stderr


def test_foreign_proc_is_refused(agent_path, tmp_path):
    """PID 1 of a pid namespace that still sees the host's /proc must not trust it (pids there name
    other processes): limited tasks fail as Infra instead of running unwatched."""
    if not _can_unshare():
        pytest.skip("unprivileged user+pid namespaces unavailable")
    io = tmp_path
    (io / "job.json").write_text(json.dumps({"tasks": [task("a", "echo hi")]}))
    cmd = ["unshare", "--user", "--map-root-user", "--pid", "--fork", agent_path, "--io", str(io)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    r = Run(p, io)
    a = r.task("a")
    assert a["status"] == "failed" and a["failure_class"] == "Infra"
    assert "/proc" in a["output"]
