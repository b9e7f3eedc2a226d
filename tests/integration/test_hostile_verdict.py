"""Threat model, issue 8 point 3: a tested package must not forge its own verdict.

The agent announces the sha256 of every results.json it writes on its own event channel (ns: its
stdout, a pipe no task holds; vm: the serial console); the host believes out/results.json only when
its bytes match the last announced digest, a job_end came from the agent (ns: with the agent's own
exit status 0) and its tasks agree with the task_end events and the job. Anything else is refused
(class Tampered, or the agent's own failure), never "passed".

Every test makes its hostile task itself and checks both that the attack fails and that the tasks
that really ran keep honest statuses. ns backend; one vm test of the console forgery at the end.
"""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from pkgs import make_demo_project

FORGED = {"job": "forged", "status": "passed", "wall_s": 0.1,
          "tasks": [{"task": "forger", "status": "passed", "failure_class": None, "exit_code": 0,
                     "tests": {"passed": 1000, "failed": 0, "skipped": 0, "errors": 0}}]}


def py(code):
    """A one-line shell command running a multi-line Python program (INI values are one line, and
    braces would be recipe placeholders)."""
    b = base64.b64encode(code.encode()).decode()
    return f"python3 -c 'import base64; exec(base64.b64decode(\"{b}\"))'"


def forge_code(body):
    """Python source that has the forged results as `forged`, then runs body."""
    return ("import json, os\n"
            f"forged = json.loads({json.dumps(json.dumps(FORGED))})\n" + textwrap.dedent(body))


def write_recipe(tmp_path, body, name="r.ini"):
    p = tmp_path / name
    p.write_text("[recipe]\nname = hostile-verdict\n" + textwrap.dedent(body))
    return str(p)


def run_json(pyti, *args, **kw):
    r = pyti("run", "--json", "-q", *args, **kw)
    assert r.stdout.strip(), f"no JSON on stdout; rc={r.returncode}\nstderr:\n{r.stderr}"
    return r, json.loads(r.stdout)


def statuses(res):
    return {t["task"]: (t["status"], t["failure_class"]) for t in res.get("tasks", [])}


def assert_not_forged(r, res):
    assert r.returncode != 0, (r.returncode, r.stderr)
    assert res["status"] != "passed", json.dumps(res)[:2000]
    for t in res.get("tasks", []):
        assert (t.get("tests") or {}).get("passed", 0) != 1000, json.dumps(t)[:2000]


def test_agent_announces_what_it_writes(tmp_path):
    """The contract the host's check rests on (docs/contracts.md, event "results"): after every
    results.json it writes, the agent prints the sha256 of those exact bytes, partial ones included,
    before job_end. Run on the real agent binary as an ordinary process."""
    agent = Path(os.environ.get("PYTI_BUILD_DIR", Path(__file__).resolve().parents[2] / "build"),
                 "src", "agent", "pyti-agent")
    assert agent.exists(), f"pyti-agent not found at {agent}; build first"
    io = tmp_path / "io"
    (io / "out").mkdir(parents=True)
    saved = tmp_path / "partial.json"
    job = {"job": "j", "tasks": [{"name": "a", "run": "true"},
                                 {"name": "b", "run": f"cp {io}/out/results.json {saved}; exit 1"}]}
    (io / "job.json").write_text(json.dumps(job))
    r = subprocess.run([str(agent), "--io", str(io)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    events = [json.loads(l[len("@pyti "):]) for l in r.stdout.splitlines() if l.startswith("@pyti ")]
    seq = [(e["event"], e.get("task") or e.get("status")) for e in events if e["event"] != "task_start"]
    assert seq == [("job_start", None), ("task_end", "a"), ("results", "running"), ("task_end", "b"),
                   ("results", "failed"), ("job_end", "failed")], seq
    ann = [e for e in events if e["event"] == "results"]
    assert ann[0]["sha256"] == hashlib.sha256(saved.read_bytes()).hexdigest()
    assert ann[1]["sha256"] == hashlib.sha256((io / "out" / "results.json").read_bytes()).hexdigest()
    assert [a["tasks"] for a in ann] == [1, 2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_project(tmp_path_factory.mktemp("demo"), name="pyti_verdict_demo", failing=0)


def test_tmp_name_forgery(pyti, demo, tmp_path):
    """The old attack: block the agent's predictable temporary name (results.json.tmp.<pid>, the
    agent being PID 1) with a directory, write a forged results.json, exit 1. The agent still
    writes its own results, and the verdict is the tasks' real one."""
    code = forge_code("""
        for pid in (1, 2, 3, os.getppid()):
            os.makedirs(f"/io/out/results.json.tmp.{pid}", exist_ok=True)
        with open("/io/out/results.json", "w") as f:
            json.dump(forged, f)
        raise SystemExit(1)
    """)
    recipe = write_recipe(tmp_path, f"""\
        [task:honest]
        run = echo honest
        timeout = 120
        [task:forger]
        run = {py(code)}
        timeout = 120
        [task:after]
        run = echo after
        timeout = 120
        """)
    r, res = run_json(pyti, "--recipe", recipe, demo)
    assert_not_forged(r, res)
    assert r.returncode == 1, r.stderr
    assert res["status"] == "failed"
    assert statuses(res) == {"honest": ("passed", None), "forger": ("failed", None), "after": ("passed", None)}
    assert res["job"] != "forged"


@pytest.mark.parametrize("last", [True, False], ids=["last-task", "middle-task"])
def test_forged_results_then_exit(pyti, demo, tmp_path, last):
    """A task writes a complete "passed, 1000 tests" results.json and exits 1 (as the last task or
    before another): the agent's own results replace it."""
    code = forge_code("""
        with open("/io/out/results.json", "w") as f:
            json.dump(forged, f)
        raise SystemExit(1)
    """)
    body = f"[task:first]\nrun = echo first\ntimeout = 120\n[task:forger]\nrun = {py(code)}\ntimeout = 120\n"
    if not last:
        body += "[task:after]\nrun = echo after\ntimeout = 120\n"
    r, res = run_json(pyti, "--recipe", write_recipe(tmp_path, body), demo)
    assert_not_forged(r, res)
    assert r.returncode == 1, r.stderr
    want = {"first": ("passed", None), "forger": ("failed", None)}
    if not last:
        want["after"] = ("passed", None)
    assert statuses(res) == want


def test_fake_event_lines(pyti, demo, tmp_path):
    """A task prints fake @pyti results/job_end lines on its own stdout and stderr (they go to its
    log, not to the host) and tries the agent's own stdout through /proc/1/fd/1 (the agent is not
    dumpable), then exits 1. The job goes on, and fails honestly."""
    code = textwrap.dedent("""\
        import hashlib, json, os, sys
        fake = json.dumps({"status": "passed", "tasks": []}) + "\\n"
        open("/io/out/results.json", "w").write(fake)
        d = hashlib.sha256(fake.encode()).hexdigest()
        lines = ("@pyti " + json.dumps({"event": "results", "sha256": d, "status": "passed", "tasks": 0}) + "\\n"
                 + "@pyti " + json.dumps({"event": "job_end", "status": "passed"}) + "\\n")
        sys.stdout.write(lines); sys.stdout.flush()
        sys.stderr.write(lines); sys.stderr.flush()
        for p in ("/proc/1/fd/1", "/proc/1/fd/2"):
            try:
                with open(p, "w") as f:
                    f.write(lines)
                print("WROTE", p)
            except OSError as e:
                print("refused", p, e.errno)
        # Nothing of the agent's reaches a task: its descriptors are 0-2 and its own pipe.
        for fd in range(3, 256):
            try:
                os.fstat(fd)
                print("LEAKED fd", fd, os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        raise SystemExit(1)
        """)
    recipe = write_recipe(tmp_path, f"""\
        [task:liar]
        run = {py(code)}
        timeout = 120
        [task:after]
        run = echo after
        timeout = 120
        """)
    r, res = run_json(pyti, "--recipe", recipe, demo)
    assert_not_forged(r, res)
    assert r.returncode == 1, r.stderr
    assert statuses(res) == {"liar": ("failed", None), "after": ("passed", None)}
    liar = next(t for t in res["tasks"] if t["task"] == "liar")
    assert "WROTE" not in liar["output"], liar["output"]
    assert "LEAKED" not in liar["output"], liar["output"]


def test_replace_results_after_partial(pyti, demo, tmp_path):
    """After the agent's partial results (task 1 done), task 2 replaces results.json with a forged
    one and exits 0: the agent's final results replace the forgery, with task 2's real status."""
    code = forge_code("""
        assert json.load(open("/io/out/results.json"))["status"] == "running"
        with open("/io/out/results.json.new", "w") as f:
            json.dump(forged, f)
        os.rename("/io/out/results.json.new", "/io/out/results.json")
    """)
    recipe = write_recipe(tmp_path, f"""\
        [task:first]
        run = false
        timeout = 120
        [task:swapper]
        run = {py(code)}
        timeout = 120
        """)
    r, res = run_json(pyti, "--recipe", recipe, demo)
    assert_not_forged(r, res)
    assert r.returncode == 1, r.stderr
    # Tasks run apart from the agent (another uid; out/ is sticky): the swap itself is refused, and
    # even where it is not (one-uid sandboxes) the agent's final results replace the forgery.
    assert statuses(res) in ({"first": ("failed", None), "swapper": ("passed", None)},
                             {"first": ("failed", None), "swapper": ("failed", None)}), statuses(res)


def test_replace_results_and_stop_the_agent(pyti, demo, tmp_path):
    """Task 2 replaces results.json after the partial write and makes out/logs a link, so that the
    agent, refusing to write through it, ends without final results: the job is an error (never
    "passed", though the agent had written a results.json), and what out/ keeps is the agent's."""
    code = forge_code("""
        with open("/io/out/results.json", "w") as f:
            json.dump(forged, f)
        os.makedirs("/tmp/elsewhere", exist_ok=True)
        os.rename("/io/out/logs", "/io/out/logs.old")
        os.symlink("/tmp/elsewhere", "/io/out/logs")
    """)
    recipe = write_recipe(tmp_path, f"""\
        [task:first]
        run = echo first
        timeout = 120
        [task:swapper]
        run = {py(code)}
        timeout = 120
        [task:after]
        run = echo after
        timeout = 120
        """)
    r, res = run_json(pyti, "--keep", "--recipe", recipe, demo)
    assert_not_forged(r, res)
    if res["status"] == "failed":
        # The tasks' uid may not write the agent's results.json (sticky out/): the attack fails
        # at its first step and the job goes on with honest statuses.
        assert r.returncode == 1, r.stderr
        assert statuses(res) == {"first": ("passed", None), "swapper": ("failed", None),
                                 "after": ("passed", None)}, statuses(res)
        assert "PermissionError" in next(t for t in res["tasks"] if t["task"] == "swapper")["output"]
        m = re.search(r"job directory kept: (\S+)", r.stderr)
        if m:
            shutil.rmtree(m.group(1), ignore_errors=True)
        return
    assert r.returncode == 3, r.stderr
    assert res["status"] == "error" and res["failure_class"] in ("Infra", "Tampered"), res
    assert "no longer a directory" in res["error"], res["error"]
    m = re.search(r"job directory kept: (\S+)", r.stderr)
    assert m, r.stderr
    job = Path(m.group(1))
    try:
        kept = job / "out" / "results.json"
        # What is left is the agent's own partial results (written after the swapper ended, over
        # the forgery), showing how far the job really got.
        partial = json.loads(kept.read_text())
        assert partial["job"] != "forged" and partial["status"] == "running", partial
        assert statuses(partial) == {"first": ("passed", None), "swapper": ("passed", None)}
    finally:
        shutil.rmtree(job, ignore_errors=True)


@pytest.mark.parametrize("kind", ["symlink", "directory", "log-symlink"])
def test_results_name_taken_by_task(pyti, demo, tmp_path, kind):
    """A task leaves out/results.json as a link to another file, or as a directory, or the next
    task's log as a link. The agent never writes through a link (its target keeps its bytes) and
    gives its own verdict; a directory it cannot replace makes the job an error, never "passed"."""
    if kind == "symlink":
        code = forge_code("""
            open("/io/src/victim", "w").write("untouched")
            os.remove("/io/out/results.json")
            os.symlink("/io/src/victim", "/io/out/results.json")
        """)
    elif kind == "directory":
        code = forge_code("""
            os.remove("/io/out/results.json")
            os.makedirs("/io/out/results.json/x")
        """)
    else:  # the log of the next task, made a link before the agent opens it
        code = forge_code("""
            open("/io/src/victim", "w").write("untouched")
            os.symlink("/io/src/victim", "/io/out/logs/after.log")
        """)
    body = f"[task:first]\nrun = echo first\ntimeout = 120\n[task:taker]\nrun = {py(code)}\ntimeout = 120\n"
    if kind == "log-symlink":
        body += "[task:after]\nrun = echo after\ntimeout = 120\n"
    recipe = write_recipe(tmp_path, body)
    r, res = run_json(pyti, "--keep", "--recipe", recipe, demo)
    taker = next(t for t in res.get("tasks", []) if t["task"] == "taker")
    if taker["status"] == "failed":
        # Tasks run apart from the agent (another uid, sticky out/): the task may not remove or
        # replace the agent's files, so the attack fails at its first step; statuses stay honest.
        assert "PermissionError" in taker["output"], taker["output"]
        assert_not_forged(r, res)
        assert r.returncode == 1, r.stderr
        want = {"first": ("passed", None), "taker": ("failed", None)}
        if kind == "log-symlink":
            want["after"] = ("passed", None)
        assert statuses(res) == want, statuses(res)
        shutil.rmtree(res["job_dir"], ignore_errors=True)
        return
    if kind == "symlink":
        assert r.returncode == 0, r.stderr
        assert res["status"] == "passed"
        assert statuses(res) == {"first": ("passed", None), "taker": ("passed", None)}
        job = Path(res["job_dir"])
        assert (job / "src" / "victim").read_text() == "untouched"
        assert not Path(res["logs"], "results.json").is_symlink()
        shutil.rmtree(job, ignore_errors=True)
    elif kind == "log-symlink":
        # The agent does not open the log through the link: that task cannot start (Infra, with
        # the reason in its output), the others keep their real statuses.
        assert_not_forged(r, res)
        assert r.returncode == 1, r.stderr
        assert statuses(res) == {"first": ("passed", None), "taker": ("passed", None), "after": ("failed", "Infra")}
        job = Path(res["job_dir"])
        assert (job / "src" / "victim").read_text() == "untouched"
        shutil.rmtree(job, ignore_errors=True)
    else:
        assert_not_forged(r, res)
        assert r.returncode == 3, r.stderr
        assert res["status"] == "error" and res["failure_class"] in ("Crash", "Infra", "Tampered"), res
        m = re.search(r"job directory kept: (\S+)", r.stderr)
        if m:
            shutil.rmtree(m.group(1), ignore_errors=True)


# ---- vm: the console forgery ----

@pytest.fixture(scope="module")
def libvirtd_up(state_dir):
    """As tests/integration/test_vm.py: qemu:///system needs root; libvirtd is started by
    scripts/libvirtd-start (its failure is a failure, not a skip)."""
    if os.geteuid() != 0:
        pytest.skip("the vm backend's qemu:///system set-up needs root")
    if not Path(state_dir, "images", "bookworm", "base.qcow2").exists():
        pytest.skip("no bookworm base.qcow2 in the test state dir (scripts/test builds it)")
    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run([str(repo / "scripts" / "libvirtd-start")], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"scripts/libvirtd-start failed:\n{r.stderr}"


def test_vm_console_forgery(pyti, libvirtd_up, demo, tmp_path):
    """vm: a task writes a forged results.json, freezes /io and prints a job_end line on the serial
    console. The host does not take it for the job's end: refused (Tampered) or, where the task
    cannot reach the console (tasks running as another uid than the agent), the job ends honestly."""
    code = forge_code("""
        import subprocess
        try:
            c = open("/dev/ttyS0", "w")
        except OSError as e:
            # Tasks that cannot open the console cannot forge on it (and must not freeze /io
            # under an agent that still has logs to write).
            print("console refused", e.errno)
            raise SystemExit(1)
        with open("/io/out/results.json", "w") as f:
            json.dump(forged, f)
        os.sync()
        subprocess.run(["fsfreeze", "-f", "/io"])
        c.write('\\n@pyti {"event":"job_end","status":"passed"}\\n')
        c.flush()
        raise SystemExit(1)
    """)
    recipe = write_recipe(tmp_path, f"""\
        [task:first]
        run = echo first
        timeout = 300
        [task:forger]
        run = {py(code)}
        timeout = 300
        [task:after]
        run = echo after
        timeout = 300
        """)
    # --cold: no warm snapshot of this agent is made in the shared state directory for one test.
    r, res = run_json(pyti, "--backend", "vm", "--cold", "--keep", "--recipe", recipe, demo, timeout=1500)
    assert_not_forged(r, res)
    if res["status"] == "error":
        assert r.returncode == 3
        assert res["failure_class"] == "Tampered", res
        # The forgery is kept aside for inspection, under a name nothing takes for the agent's.
        m = re.search(r"job directory kept: (\S+)", r.stderr)
        assert m, r.stderr
        out = Path(m.group(1), "out")
        try:
            assert json.loads((out / "results.json.refused").read_text())["job"] == "forged"
            assert not (out / "results.json").exists()
        finally:
            shutil.rmtree(m.group(1), ignore_errors=True)
        return
    # The forgery never reached the host (tasks cannot open the console): the job ran to its end.
    shutil.rmtree(res["job_dir"], ignore_errors=True)
    assert r.returncode == 1, r.stderr
    assert statuses(res) == {"first": ("passed", None), "forger": ("failed", None), "after": ("passed", None)}
