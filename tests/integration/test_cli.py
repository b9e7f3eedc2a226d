"""Issue 14: the command line behaves like the tools Python developers already use. Every test
drives the real pyti binary (real fetch, real sandbox, real pytest where a job runs)."""
import json
import os
import pty
import select
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from conftest import missing
from pkgs import make_demo_project


def write_recipe(tmp_path, body, name="r.ini"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return str(p)


def need_image(state_dir):
    if not (Path(state_dir) / "images" / "bookworm" / "manifest.json").exists():
        missing("no bookworm image in the test state directory (pyti image build)")


def run_in(pyti_bin, state_dir, cwd, *args, env=None, timeout=900):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([pyti_bin, "--state-dir", state_dir, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=e)


def task(res, name):
    return next(t for t in res["tasks"] if t["task"] == name)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_project(tmp_path_factory.mktemp("cli"), name="pyti_cli_demo", passing=2, failing=1)


# ---- arguments and errors ----

USAGE = [
    (["rn", "six"], "did you mean 'run'?"),
    (["--jsn", "run"], "unknown option '--jsn'"),
    (["run", "--jsn", "six"], "did you mean '--json'?"),
    (["run", "--backend", "xx", "six"], "unknown backend 'xx'"),
    (["run", "-b", "nss", "six"], "did you mean 'ns'?"),
    (["run"], "a distribution is needed"),
    (["run", "--suite"], "option '--suite' needs a value"),
    (["run", "--re", "x", "six"], "ambiguous"),
    (["run", "-s", "sid", "six"], "cannot build a 'sid' image"),
    (["run", "--env", "1X=2", "six"], "--env '1X=2'"),
    (["run", "--jobs", "0", "six", "iniconfig"], "--jobs '0'"),
    (["help", "rnu"], "did you mean 'run'?"),
    (["help", "run", "extra"], "unexpected argument 'extra'"),
    (["cache", "infp"], "did you mean 'info'?"),
    (["cache", "info", "extra"], "unexpected argument 'extra'"),
    (["cache", "clean", "--older-than", "soon"], "--older-than 'soon'"),
    (["image", "build", "extra"], "unexpected argument 'extra'"),
    ([], "a command is needed"),
    (["image"], "a subcommand is needed"),
    (["image", "buld"], "did you mean 'build'?"),
    (["image", "rm", "a", "b"], "unexpected argument 'b'"),
    (["disk", "lss"], "did you mean 'ls'?"),
    (["disk", "df", "a.img", "b.img"], "unexpected argument 'b.img'"),
    (["vm", "strt", "x"], "did you mean 'start'?"),
]


@pytest.mark.parametrize("args,needle", USAGE, ids=[" ".join(a) or "none" for a, _ in USAGE])
def test_usage_errors(pyti, args, needle):
    """Every usage error: "pyti: " prefix, exit 2, the nearest command/option suggested, and with
    --json the error object on stdout (before any work: these return at once)."""
    t0 = time.monotonic()
    r = pyti(*args, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("pyti: ") and needle in last, r.stderr
    assert r.stdout == "", r.stdout
    assert time.monotonic() - t0 < 20
    if args:
        rj = pyti("--json", *args, timeout=60)  # pyti --json CMD = pyti CMD --json
        assert rj.returncode == 2, rj.stderr
        obj = json.loads(rj.stdout)
        assert obj["status"] == "error" and obj["exit_status"] == 2 and needle in obj["error"], rj.stdout


def test_help_and_version(pyti):
    assert pyti("help", "run").stdout == pyti("run", "--help").stdout != ""
    assert pyti("help", "cache").stdout == pyti("cache", "--help").stdout != ""
    assert pyti("help").stdout == pyti("--help").stdout
    v = pyti("-V")
    assert v.returncode == 0 and v.stdout == pyti("--version").stdout and v.stdout.startswith("pyti ")


def test_junit_checked_before_any_work(pyti, tmp_path, state_dir):
    need_image(state_dir)
    jobs = Path(state_dir) / "jobs"
    before = set(os.listdir(jobs)) if jobs.exists() else set()
    for bad, why in [(tmp_path / "no" / "such" / "dir" / "x.xml", "no directory"), (tmp_path, "is a directory")]:
        t0 = time.monotonic()
        r = pyti("run", "--junit", bad, "six", timeout=60)
        assert r.returncode == 2 and why in r.stderr, r.stderr
        assert r.stderr.startswith("pyti: run: --junit"), r.stderr
        assert "fetch" not in r.stderr and time.monotonic() - t0 < 10
        r = pyti("run", "--json", "--junit", bad, "six", timeout=60)
        assert r.returncode == 2 and json.loads(r.stdout)["exit_status"] == 2
    after = set(os.listdir(jobs)) if jobs.exists() else set()
    assert not (after - before) or all(not (jobs / n).exists() for n in after - before)


def test_dot_and_dotdot(pyti_bin, state_dir, demo):
    """`pyti run .` and `pyti run ..` test the project in that directory."""
    need_image(state_dir)
    r = run_in(pyti_bin, state_dir, demo, "run", "--json", "-q", ".")
    assert r.returncode == 1, r.stderr  # its one failing test
    res = json.loads(r.stdout)
    assert res["dist"] == "pyti-cli-demo==0.1.0", res["dist"]
    assert task(res, "test")["tests"]["passed"] == 2 and task(res, "test")["tests"]["failed"] == 1
    r = run_in(pyti_bin, state_dir, demo / "tests", "run", "--json", "-q", "..")
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["dist"] == "pyti-cli-demo==0.1.0"


def test_bare_name_that_is_a_directory(pyti_bin, state_dir, tmp_path):
    """A bare name that is also a directory here is the index's project, and pyti says so and how
    to pick the directory."""
    need_image(state_dir)
    (tmp_path / "six").mkdir()
    (tmp_path / "six" / "setup.py").write_text("raise SystemExit('not this one')\n")
    r = run_in(pyti_bin, state_dir, tmp_path, "run", "--json", "six")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["dist"].startswith("six==")
    assert "'six' is taken as a requirement" in r.stderr and "pyti run ./six" in r.stderr, r.stderr


def test_posargs_reach_pytest(pyti, demo):
    """`pyti run DIST -- ARGS` hands ARGS to the test runner ({posargs} of the default recipe)."""
    r = pyti("run", "--json", "-q", "--keep", demo, "--", "-k", "test_pass_0 or nothing", "-p", "no:xdist")
    assert r.returncode == 0, r.stderr  # the failing test is deselected
    res = json.loads(r.stdout)
    tests = task(res, "test")["tests"]
    assert (tests["passed"], tests["failed"]) == (1, 0), tests
    job = Path(res["job_dir"])
    run = next(t for t in json.loads((job / "job.json").read_text())["tasks"] if t["name"] == "test")["run"]
    assert "'-k' 'test_pass_0 or nothing' '-p' 'no:xdist'" in run, run
    assert "pyti: job directory kept: " in r.stderr and "kept" not in r.stdout
    subprocess.run(["rm", "-rf", str(job)])


def test_env_for_every_task(pyti, tmp_path, state_dir):
    need_image(state_dir)
    recipe = write_recipe(tmp_path, """\
        [recipe]
        name = env
        [task:a]
        run = test "$PYTI_X" = "a b'c" && test "$PYTI_Y" = 2
        [task:b]
        run = test "$PYTI_X" = "a b'c" && test "$LANG" = C
        """)
    r = pyti("run", "--json", "-q", "--recipe", recipe, "--env", "PYTI_X=a b'c", "-e", "PYTI_Y=2", "--env", "LANG=C",
             "six")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert [t["status"] for t in json.loads(r.stdout)["tasks"]] == ["passed", "passed"]


def test_unknown_name_and_version_are_usage_errors(pyti, state_dir):
    need_image(state_dir)
    r = pyti("run", "--json", "-q", "six==0.0.0.1")
    res = json.loads(r.stdout)
    assert r.returncode == 2 and (res["failure_class"], res["exit_status"]) == ("Fetch", 2), r.stdout
    assert "from versions:" in res["error"] and "1.17.0" in res["error"]  # what the index has
    assert "; the index has … " in res["error"].splitlines()[0] and "1.17.0" in res["error"].splitlines()[0]
    r = pyti("run", "--json", "-q", "pyti-no-such-dist-xyzzy")
    res = json.loads(r.stdout)
    assert r.returncode == 2 and "the index has no release of that name" in res["error"], res["error"]
    assert "pyti: error (Fetch): " in r.stderr


# ---- signals ----

SLOW = """\
    [recipe]
    name = slow
    [task:first]
    run = echo first done
    [task:second]
    needs = first
    run = echo started; sleep {secs} & sleep {secs}
    """


def procs_with(word):
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if word in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def start_slow(pyti_bin, state_dir, tmp_path, secs, *extra):
    recipe = write_recipe(tmp_path, SLOW.format(secs=secs))
    p = subprocess.Popen([pyti_bin, "--state-dir", state_dir, "run", "--json", "--recipe", recipe, *extra, "six"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        seen.append(line)
        if "task 2/2 second" in line:
            break
    assert any("task 2/2 second" in l for l in seen), "".join(seen)
    # the task's own sleep is running
    for _ in range(100):
        if procs_with(f"sleep {secs}"):
            break
        time.sleep(0.1)
    return p, seen


@pytest.mark.parametrize("sig,code,keep", [(signal.SIGINT, 130, False), (signal.SIGTERM, 143, True)])
def test_signal_ends_the_run(pyti_bin, state_dir, tmp_path, sig, code, keep):
    """SIGINT/SIGTERM mid-task: the sandbox and its processes end, the finished task's results stay
    in STATE/runs/JOB, the job directory goes (stays with --keep), pyti says so, exits 130/143."""
    need_image(state_dir)
    secs = 3000 + code  # a sleep of this test's own, to find
    p, seen = start_slow(pyti_bin, state_dir, tmp_path, secs, *(["--keep"] if keep else []))
    assert procs_with(f"sleep {secs}"), "the task's sleep never showed up"
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    err = "".join(seen) + err
    assert p.returncode == code, (p.returncode, err)
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert f"interrupted by {name}" in err and "its sandbox and processes are ended" in err, err
    assert not procs_with(f"sleep {secs}"), "the task's processes outlived pyti"
    res = json.loads(out)
    assert res["exit_status"] == code and res["status"] == "error"
    partial = res["partial"]
    assert partial["status"] == "interrupted"
    assert [t["task"] for t in partial["tasks"]][:1] == ["first"] and partial["tasks"][0]["status"] == "passed"
    logs = Path(partial["logs"])
    assert json.loads((logs / "results.json").read_text())["status"] == "interrupted"
    assert (logs / "logs" / "first.log").read_text().strip() == "first done"
    job_dir = Path(state_dir) / "jobs" / partial["job"]
    assert job_dir.exists() == keep, err
    assert ("job directory kept" in err) == keep
    if keep:
        subprocess.run(["rm", "-rf", str(job_dir)])


def test_killed_run_is_swept_by_the_next(pyti_bin, pyti, state_dir, tmp_path):
    """kill -9 of pyti mid-task: its sandbox dies with it (PR_SET_PDEATHSIG), and the next run
    removes its STATE/jobs/ directory."""
    need_image(state_dir)
    secs = 3009
    p, seen = start_slow(pyti_bin, state_dir, tmp_path, secs)
    jobs = Path(state_dir) / "jobs"
    mine = [d for d in jobs.iterdir() if (d / "job.json").exists() and f"sleep {secs}" in (d / "job.json").read_text()]
    assert len(mine) == 1, mine
    p.kill()
    p.wait()
    for _ in range(100):
        if not procs_with(f"sleep {secs}"):
            break
        time.sleep(0.1)
    assert not procs_with(f"sleep {secs}"), "the sandbox outlived a kill -9 of pyti"
    assert mine[0].exists()  # nobody removed it: pyti was killed
    r = pyti("run", "-q", "--recipe", write_recipe(tmp_path, "[task:t]\nrun = true\n", "t.ini"), "six")
    assert r.returncode == 0, r.stderr
    assert not mine[0].exists() and not (jobs / f".owner.{mine[0].name}").exists()


# ---- cache ----

def test_refresh_and_cache_hit_messages(pyti, state_dir):
    need_image(state_dir)
    r = pyti("run", "-q", "--json", "six")  # cached now, if it was not
    assert r.returncode == 0, r.stderr
    r = pyti("run", "six")
    assert r.returncode == 0, r.stderr
    assert "fetch: from the cache" in r.stderr and "fetch: own" not in r.stderr, r.stderr
    assert "downloading" not in r.stderr
    r = pyti("run", "--refresh", "six")
    assert r.returncode == 0, r.stderr
    assert "fetch: own" in r.stderr and "fetch: from the cache" not in r.stderr, r.stderr
    r = pyti("run", "six", env={"PYTI_FETCH_TTL": "0"})  # 0: re-resolved every time
    assert r.returncode == 0 and "fetch: own" in r.stderr, r.stderr
    r = pyti("run", "six==1.17.0", env={"PYTI_FETCH_TTL": "0"})  # pinned: the cache
    assert r.returncode == 0, r.stderr


def test_cache_info_and_clean(pyti, tmp_path):
    """Entries, blobs, sizes; clean --older-than removes old entries, then the blobs no entry names."""
    state = tmp_path / "state"
    blobs, entries = state / "cache" / "blobs", state / "cache" / "fetch"
    blobs.mkdir(parents=True)
    entries.mkdir(parents=True)
    old, new = time.time() - 40 * 86400, time.time()
    shas = {}
    for name, size in [("a", 1000), ("b", 2000), ("c", 4000), ("orphan", 8000)]:
        sha = (name * 64)[:64] if name != "orphan" else "f" * 64
        (blobs / sha).write_bytes(b"x" * size)
        os.utime(blobs / sha, (old, old))
        shas[name] = sha
    (entries / ("1" * 64 + ".json")).write_text(json.dumps(
        {"dist": "old", "created": old, "dist_wheel": "a.whl",
         "files": [{"name": "a.whl", "sha256": shas["a"]}], "sdist": {"name": "b.tar.gz", "sha256": shas["b"]}}))
    (entries / ("2" * 64 + ".json")).write_text(json.dumps(
        {"dist": "new", "created": new, "dist_wheel": "c.whl", "files": [{"name": "c.whl", "sha256": shas["c"]}],
         "sdist": None}))
    r = pyti("cache", "info", "--json", state=state)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["entries"], info["blobs"], info["bytes"]) == (2, 4, 15000), info
    assert (info["unreferenced_blobs"], info["unreferenced_bytes"]) == (1, 8000)
    r = pyti("cache", "info", state=state)
    assert "entries:      2" in r.stdout and "unreferenced: 1 blob" in r.stdout, r.stdout
    r = pyti("cache", "clean", "--older-than", "30d", "--json", state=state)
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert (c["entries_removed"], c["blobs_removed"], c["bytes_removed"]) == (1, 3, 11000), c
    assert sorted(p.name for p in blobs.iterdir()) == [shas["c"]]
    r = pyti("cache", "clean", state=state)
    assert r.returncode == 0 and "removed 1 entry and 1 blob" in r.stdout, r.stdout
    assert not list(blobs.iterdir()) and not list(entries.iterdir())


# ---- reports and progress ----

def test_report_times_and_errors_apart(pyti, tmp_path, state_dir):
    """The summary line is the whole command's time; the JSON has fetch_s beside wall_s; the table
    counts errors apart from failures, as pytest does."""
    need_image(state_dir)
    d = make_demo_project(tmp_path, name="pyti_cli_errs", passing=1, failing=1)
    (d / "tests" / "test_err.py").write_text(textwrap.dedent("""\
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("fixture")

        def test_e1(broken):
            pass

        def test_e2(broken):
            pass

        @pytest.mark.skip
        def test_s():
            pass
        """))
    t0 = time.monotonic()
    r = pyti("run", d)
    took = time.monotonic() - t0
    assert r.returncode == 1, r.stderr
    assert "1 passed, 1 failed, 2 errors, 1 skipped" in r.stdout, r.stdout
    line = next(l for l in r.stdout.splitlines() if l.startswith("result: "))
    secs = float(line.split(" in ")[1].split("s")[0])
    assert "(fetch " in line and abs(secs - took) < 1.5, (line, took)
    res = json.loads(pyti("run", "--json", "-q", d).stdout)
    assert isinstance(res["fetch_s"], float) and isinstance(res["wall_s"], float)
    # messages on stderr, each with the prefix; stdout only the report
    r = pyti("run", "--keep", d)
    assert all(l.startswith("pyti: ") for l in r.stderr.splitlines() if l.strip()), r.stderr
    assert "job directory kept" in r.stderr and "job directory kept" not in r.stdout
    subprocess.run(["rm", "-rf", r.stderr.split("job directory kept: ")[1].split()[0]])


def test_verbose_streams_task_output(pyti, tmp_path, state_dir):
    need_image(state_dir)
    recipe = write_recipe(tmp_path, """\
        [task:talk]
        run = for i in 1 2 3; do echo "pyti-line-$i"; sleep 0.4; done
        """)
    r = pyti("run", "-v", "--recipe", recipe, "six")
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stderr.splitlines() if "| pyti-line-" in l]
    assert [l.split("| ")[1] for l in lines] == ["pyti-line-1", "pyti-line-2", "pyti-line-3"], r.stderr
    assert all(l.startswith("pyti: talk| ") for l in lines)
    r = pyti("run", "--recipe", recipe, "six")
    assert "pyti-line-" not in r.stderr and "task talk passed" in r.stderr


def test_tty_live_line(pyti_bin, state_dir, tmp_path):
    """On a terminal: a live line per running task (its elapsed time and last output line),
    redrawn in place; without one, plain timestamped lines only (no escape sequences)."""
    need_image(state_dir)
    recipe = write_recipe(tmp_path, """\
        [task:talk]
        run = echo pyti-live-marker; sleep 2
        """)
    master, slave = pty.openpty()
    p = subprocess.Popen([pyti_bin, "--state-dir", state_dir, "run", "--recipe", recipe, "six"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    data = b""
    while True:
        r, _, _ = select.select([master], [], [], 120)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    p.wait(timeout=60)
    os.close(master)
    text = data.decode(errors="replace")
    assert p.returncode == 0, text
    assert "\x1b[J" in text and "talk 1/1" in text and "| pyti-live-marker" in text, text[-2000:]
    plain = subprocess.run([pyti_bin, "--state-dir", state_dir, "run", "--recipe", recipe, "six"],
                           capture_output=True, text=True, timeout=600)
    assert "\x1b" not in plain.stderr and "pyti: [" in plain.stderr


def test_bash_completion(pyti_bin, tmp_path):
    comp = Path(__file__).resolve().parents[2] / "contrib" / "bash-completion" / "pyti"
    assert comp.exists()
    script = f"""
        source {comp}
        complete -p pyti
        COMP_WORDS=(pyti r); COMP_CWORD=1; _pyti; echo "cmds: ${{COMPREPLY[*]}}"
        COMP_WORDS=(pyti run --re); COMP_CWORD=2; _pyti; echo "opts: ${{COMPREPLY[*]}}"
        COMP_WORDS=(pyti run --suite ''); COMP_CWORD=3; _pyti; echo "suites: ${{COMPREPLY[*]}}"
        COMP_WORDS=(pyti cache ''); COMP_CWORD=2; _pyti; echo "cache: ${{COMPREPLY[*]}}"
        """
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, PATH=f"{Path(pyti_bin).parent}:{os.environ['PATH']}"))
    assert r.returncode == 0, r.stderr
    out = dict(l.split(": ", 1) for l in r.stdout.splitlines() if ": " in l)
    assert out["cmds"].split() == ["run"], r.stdout
    assert set(out["opts"].split()) == {"--recipe", "--refresh", "--requirement"}, r.stdout
    assert set(out["suites"].split()) == {"bookworm", "trixie"}, r.stdout
    assert set(out["cache"].split()) == {"info", "clean"}, r.stdout
