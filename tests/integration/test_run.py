"""`pyti run` end to end with the ns backend: real pip fetch, real sandbox, real pytest."""
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from pkgs import make_demo_project, make_evil_sdist


def run_json(pyti, *args, **kw):
    r = pyti("run", "--json", "-q", *args, **kw)
    assert r.stdout.strip(), f"no JSON on stdout; rc={r.returncode}\nstderr:\n{r.stderr}"
    return r, json.loads(r.stdout)


def task(res, name):
    return next(t for t in res["tasks"] if t["task"] == name)


def py(code, mark=""):
    """A one-line shell command running a multi-line Python program (INI values are one line)."""
    b = base64.b64encode(code.encode()).decode()
    return f"python3 -c 'import base64; exec(base64.b64decode(\"{b}\"))' {mark}".rstrip()


def write_recipe(tmp_path, body, name="r.ini"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return str(p)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_project(tmp_path_factory.mktemp("demo"))


GROUPS = """
[dependency-groups]
lint = ["pyti-no-such-linter-xyzzy"]
runtime = ["six"]
test = [{include-group = "runtime"}, "not a requirement !!"]
"""


@pytest.mark.parametrize("form", ["dir", "sdist"])
def test_dependency_groups(pyti, tmp_path, form):
    """PEP 735: the test group (and the groups it includes) is fetched and installed; other
    groups are not; an entry pip would not accept is skipped."""
    d = make_demo_project(tmp_path, name="pyti_groups_demo", failing=0, pyproject_extra=GROUPS,
                          test_imports=["six"])
    dist = d
    if form == "sdist":
        dist = tmp_path / f"{d.name}.tar.gz"
        with tarfile.open(dist, "w:gz") as tf:
            tf.add(d, arcname=d.name)
    r, res = run_json(pyti, "--keep", dist)
    assert r.returncode == 0, r.stderr
    assert task(res, "test")["tests"]["passed"] == 1, json.dumps(res)[:3000]
    job = Path(res["job_dir"])
    assert (job / "test-requirements.txt").read_text().splitlines() == ["pytest", "pytest-cov", "six"]
    assert any(w.name.startswith("six-") for w in (job / "wheels").iterdir())
    # one install command takes the file, whichever installer (uv or pip) the image gives it
    install = next(t for t in json.loads((job / "job.json").read_text())["tasks"] if t["name"] == "install")
    assert install["run"].count(" -r /io/test-requirements.txt") == 1, install["run"]
    assert install["run"].endswith(" -r /io/test-requirements.txt"), install["run"]
    # and installed it: six is in what pip ("Successfully installed … six-1.x") or uv (" + six==1.x") says
    assert re.search(r"(?m)^(Successfully installed .*\bsix-\d| \+ six==\d)", task(res, "install")["output"]), \
        task(res, "install")["output"][-3000:]
    shutil.rmtree(job)


def test_install_uv_or_pip(pyti, state_dir, tmp_path):
    """The default install task uses the image's uv when it has one (`pyti image build` adds it),
    pip when it has none or the job sets PYTI_INSTALLER=pip; both install the same set."""
    has_uv = (Path(state_dir) / "images" / "bookworm" / "rootfs" / "usr" / "local" / "bin" / "uv").exists()
    d = make_demo_project(tmp_path, name="pyti_uv_demo", failing=0)
    sets = {}
    for env in ([], ["-e", "PYTI_INSTALLER=pip"]):
        r, res = run_json(pyti, *env, d)
        assert r.returncode == 0, r.stderr + json.dumps(res)[:3000]
        out = task(res, "install")["output"]
        uv = has_uv and not env
        assert bool(re.search(r"(?m)^Installed \d+ packages? in ", out)) == uv, out[-3000:]
        assert bool(re.search(r"(?m)^Successfully installed ", out)) == (not uv), out[-3000:]
        sets[bool(env)] = sorted(re.findall(r"(?m)^ \+ ([\w.-]+)==", out) if uv else
                                 re.search(r"(?m)^Successfully installed (.*)$", out).group(1).split())
    if has_uv:
        pip = sorted(w.rsplit("-", 1)[0].lower().replace("_", "-") for w in sets[True])
        assert sets[False] == pip, sets


def test_local_project_counts(pyti, demo, tmp_path):
    junit = tmp_path / "out.xml"
    r, res = run_json(pyti, "--junit", junit, demo)
    assert r.returncode == 1, r.stderr  # one test fails
    assert res["status"] == "failed"
    assert res["backend"] == "ns"
    assert [t["task"] for t in res["tasks"]] == ["install", "import", "test"]
    assert task(res, "install")["status"] == "passed"
    assert task(res, "import")["status"] == "passed"
    t = task(res, "test")
    assert t["status"] == "failed" and t["exit_code"] == 1
    assert {k: t["tests"][k] for k in ("passed", "failed", "skipped", "errors")} == \
        {"passed": 1, "failed": 1, "skipped": 0, "errors": 0}
    for k in ("wall_s", "cpu_user_s", "cpu_sys_s", "max_rss_kb", "output", "output_bytes",
              "output_truncated", "started_at"):
        assert k in t, k
    assert t["max_rss_kb"] > 1000 and t["wall_s"] > 0
    assert "test_fail_0" in t["output"]
    assert junit.read_text().count("<testcase") == 3 + 2  # the tasks, then the tests


def test_real_pypi_package_and_cache(pyti):
    r, res = run_json(pyti, "six")
    assert r.returncode == 0, r.stderr + json.dumps(res, indent=1)[:4000]
    assert res["status"] == "passed"
    assert res["dist"].startswith("six==")
    tests = task(res, "test")["tests"]
    assert tests["passed"] > 50 and tests["failed"] == 0
    # A second run of the same DIST fetches nothing: pip's index is made unreachable and it still works.
    r2, res2 = run_json(pyti, "six", env={"PIP_INDEX_URL": "http://127.0.0.1:9/simple",
                                          "PIP_NO_INDEX": "1"})
    assert r2.returncode == 0, r2.stderr
    assert task(res2, "test")["tests"] == tests


def test_table_output(pyti, demo):
    r = pyti("run", "-q", demo)
    assert r.returncode == 1
    assert "TASK" in r.stdout and "install" in r.stdout and "1 passed, 1 failed" in r.stdout


def test_no_network_inside(pyti, demo, tmp_path):
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(5)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.5)
    accepted = []
    tcp.settimeout(10)
    def accept():
        try:
            accepted.append(tcp.accept())
        except OSError:
            pass  # nobody came: what we want

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    probe = textwrap.dedent(f"""\
        import socket
        out = []
        try:
            socket.create_connection(("127.0.0.1", {tcp.getsockname()[1]}), timeout=3); out.append("tcp-open")
        except OSError as e:
            out.append("tcp-blocked")
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b"leak", ("127.0.0.1", {udp.getsockname()[1]})); out.append("udp-sent")
        except OSError:
            out.append("udp-blocked")
        try:
            socket.getaddrinfo("python.org", 443); out.append("dns-open")
        except OSError:
            out.append("dns-blocked")
        print(" ".join(out))
        """)
    recipe = write_recipe(tmp_path, f"[recipe]\nname = netprobe\n[task:probe]\nrun = {py(probe)}\ntimeout = 60\n")
    r, res = run_json(pyti, "--recipe", recipe, demo)
    t = task(res, "probe")
    assert "tcp-blocked" in t["output"], t["output"]
    assert "dns-blocked" in t["output"], t["output"]
    # A UDP send inside an empty network namespace may "succeed" locally; it must never arrive.
    with pytest.raises(socket.timeout):
        udp.recvfrom(100)
    assert not accepted


# Every hostile command carries MARK as an extra argument, inherited by its forks, so the
# leftover check looks for our own processes only (a CI host may run anything else).
MARK = "pyti-hostile-" + uuid.uuid4().hex

HOSTILE = {
    "oom": ("memory = 512M\nrun = " + py("b = bytearray(4 << 30)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\n", MARK),
            "failed", "OOM"),
    "pids": ("pids = 64\ntimeout = 120\nrun = " + py(
        "import os, time\nfor i in range(500):\n    try:\n        pid = os.fork()\n    except OSError:\n"
        "        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\ntime.sleep(30)\n", MARK),
             "failed", "Pids"),
    "timeout": ("timeout = 3\nrun = " + py("while True:\n    pass\n", MARK), "failed", "Timeout"),
    "nooutput": ("no_output_timeout = 2\nrun = " + py("import time\nprint('start', flush=True)\ntime.sleep(60)\n", MARK),
                 "failed", "NoOutput"),
    "output": (f"run = sh -c \"head -c 1000000000 /dev/zero | tr '\\0' x\" {MARK}", "passed", None),
}


def host_state(state_dir):
    """Mounts under the paths a sandbox uses, and processes carrying MARK."""
    roots = (state_dir, tempfile.gettempdir())
    mounts = [l for l in Path("/proc/mounts").read_text().splitlines()
              if l.split()[1].startswith(roots) or "pyti" in l]
    procs = subprocess.run(["ps", "-eo", "pid,uid,args"], capture_output=True, text=True).stdout
    return mounts, [l for l in procs.splitlines() if MARK in l]


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_task(pyti, demo, tmp_path, state_dir, kind):
    body, status, fclass = HOSTILE[kind]
    mounts_before, _ = host_state(os.path.abspath(state_dir))
    recipe = write_recipe(tmp_path, f"[recipe]\nname = hostile\n[task:bad]\n{body}\n"
                                    "[task:after]\nrun = echo clean\n")
    r, res = run_json(pyti, "--recipe", recipe, demo, timeout=300)
    bad = task(res, "bad")
    assert bad["status"] == status, json.dumps(bad)[:2000]
    assert bad["failure_class"] == fclass, json.dumps(bad)[:2000]
    if kind == "output":
        assert bad["output_truncated"] is True
        assert bad["output_bytes"] == 1000000000
        assert len(bad["output"]) < 1 << 20
    # The next task of the same job and the next job run clean.
    assert task(res, "after")["status"] == "passed"
    r2, res2 = run_json(pyti, "--recipe", write_recipe(tmp_path, "[task:ok]\nrun = echo ok\n", "ok.ini"), demo)
    assert res2["status"] == "passed", r2.stderr
    mounts_after, procs = host_state(os.path.abspath(state_dir))
    assert mounts_after == mounts_before
    assert procs == []


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "device", "bomb"])
def test_hostile_sdist_refused(pyti, tmp_path, state_dir, kind):
    evil = make_evil_sdist(tmp_path / "evil-1.0.tar.gz", kind)
    r = pyti("run", "-q", evil)
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert "pyti: error" in r.stderr and "refus" in r.stderr.lower(), r.stderr
    assert not Path("/tmp/pyti-evil-absolute.txt").exists()
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_unknown_distribution(pyti):
    r = pyti("run", "-q", "pyti-no-such-distribution-xyzzy==0.0.1")
    assert r.returncode == 2  # the user's mistake (issue 14), class Fetch
    err = [l for l in r.stderr.splitlines() if l.startswith("pyti: error")]
    assert len(err) == 1 and "pyti-no-such-distribution-xyzzy" in err[0], r.stderr
    assert err[0].startswith("pyti: error (Fetch): "), r.stderr
    # --json is machine-readable on failure too
    r = pyti("run", "-q", "--json", "pyti-no-such-distribution-xyzzy==0.0.1")
    res = json.loads(r.stdout)
    assert (res["status"], res["failure_class"], res["exit_status"]) == ("error", "Fetch", 2)
    assert "pyti-no-such-distribution-xyzzy" in res["error"]


def test_unreachable_index(pyti, state_dir, tmp_path):
    # a state dir of its own (the image linked in): the shared cache may hold the distribution
    fresh = tmp_path / "state"
    (fresh / "images").mkdir(parents=True)
    (fresh / "images" / "bookworm").symlink_to(Path(state_dir).resolve() / "images" / "bookworm")
    r = pyti("run", "-q", "iniconfig==2.0.0", state=fresh,
             env={"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "3"})
    assert r.returncode == 3
    assert "pyti: error (Network): " in r.stderr, r.stderr


def test_options_after_dist(pyti, demo, tmp_path):
    recipe = write_recipe(tmp_path, "[task:ok]\nrun = echo ok\n")
    r = pyti("run", demo, "--json", "-q", "--recipe", recipe)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "passed"


def test_bad_recipe(pyti, demo, tmp_path):
    recipe = write_recipe(tmp_path, "[recipe]\nname = x\n[task:test]\nrun = true\ntimout = 3\n")
    r = pyti("run", "-q", "--recipe", recipe, demo)
    assert r.returncode == 2
    assert f"{recipe}:5:" in r.stderr and "timout" in r.stderr, r.stderr


def test_missing_image(pyti, demo, tmp_path):
    r = pyti("run", "-q", demo, state=str(tmp_path / "empty-state"))
    assert r.returncode == 2
    assert "pyti image build" in r.stderr
    # nothing half-written
    assert not any((tmp_path / "empty-state").glob("jobs/*"))


def test_usage_errors(pyti):
    assert pyti("run").returncode == 2
    assert pyti("run", "--backend", "xen", "six").returncode == 2
    assert pyti("frobnicate").returncode == 2
    h = pyti("run", "--help")
    assert h.returncode == 0 and "--backend" in h.stdout


def test_local_wheel(pyti):
    """A local wheel (here: one a kept job fetched) runs; with no sdist there are no tests: 0, not a failure."""
    r, res = run_json(pyti, "--keep", "six")
    wheels = Path(res["job_dir"], "wheels")
    whl = next(wheels.glob("six-*.whl"))
    r2, res2 = run_json(pyti, whl)
    assert r2.returncode == 0, r2.stderr
    assert res2["dist"] == res["dist"]
    tests2 = task(res2, "test")["tests"]
    assert {k: tests2[k] for k in ("passed", "failed", "skipped", "errors")} == \
        {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    assert tests2["no_tests"] is True  # said, not a silent pass
    import shutil
    shutil.rmtree(res["job_dir"])
