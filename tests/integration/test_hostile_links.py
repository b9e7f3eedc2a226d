"""Threat model, part: the host never follows what a sandbox made (issue 8, points 4, 8, 9).

A tested package owns its sandbox's I/O directory while it runs. Whatever it leaves there — a
symlink to a host file or directory, a link to /proc/self/fd/0 — the host reads beneath the job
directory without following links, takes regular files only, and the fetch cache copies files
instead of linking and chmodding them. A local source tree is copied with its modes. The
directories of a pyti killed mid-job are swept by the next run. Every test makes the hostile
package or task itself, checks the host file it aimed at is unchanged, and that the verdict is
honest (a failed task or a clear error with its class; never a pass with forged counts, never a
hang). Local packages only (the user's pip configuration, e.g. PIP_FIND_LINKS, provides
setuptools and pytest)."""
import re
import fcntl
import json
import os
import signal
import subprocess
import tarfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from pkgs import make_demo_project

FORGED_JUNIT = ('<?xml version="1.0"?><testsuites><testsuite name="forged" tests="1000" failures="0" '
                'errors="0" skipped="0"></testsuite></testsuites>\n')


def run_json(pyti, *args, **kw):
    r = pyti("run", "--json", "-q", *args, **kw)
    assert r.stdout.strip(), f"no JSON on stdout; rc={r.returncode}\nstderr:\n{r.stderr}"
    return r, json.loads(r.stdout)


def task(res, name):
    return next(t for t in res["tasks"] if t["task"] == name)


def write_recipe(tmp_path, body, name="r.ini"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return str(p)


def snapshot(path: Path):
    """What must not change about a host file or directory: bytes, mode, links, owner."""
    out = {}
    for p in [path, *sorted(path.rglob("*"))] if path.is_dir() else [path]:
        st = os.lstat(p)
        out[str(p)] = (st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_mtime_ns,
                       p.read_bytes() if p.is_file() and not p.is_symlink() else None)
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_project(tmp_path_factory.mktemp("demo"))


@pytest.fixture
def host_secret(tmp_path):
    """A 0600 host file holding a forged JUnit report (what a link would make the host count)."""
    p = tmp_path / "host-secret.xml"
    p.write_text(FORGED_JUNIT)
    os.chmod(p, 0o600)
    return p


# ---- point 4: the run job's out/ ----

@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_junit_symlink_to_host_file(pyti, demo, tmp_path, host_secret, kind):
    """junit-test.xml a link to a 0600 host file holding a forged report, or a FIFO (whose open
    would wait for a writer for ever): not read, not counted, the task failed."""
    before = snapshot(host_secret)
    make = f"ln -s {host_secret}" if kind == "symlink" else "mkfifo"
    recipe = write_recipe(tmp_path, f"""\
        [task:test]
        run = {make} /io/out/junit-test.xml
        junit = out/junit-test.xml
        """)
    r, res = run_json(pyti, "--recipe", recipe, demo, timeout=300)
    t = task(res, "test")
    assert "tests" not in t, t  # the forged 1000 were not read
    assert t["status"] == "failed" and ("link" if kind == "symlink" else "not a regular file") in t["junit_error"], t
    assert res["status"] == "failed" and r.returncode == 1, (r.returncode, r.stderr)
    # a count of 1000 anywhere (a float such as 0.0034779210000124 is not one)
    assert not re.search(r"(?<![\d.])1000(?![\d.])", r.stdout), r.stdout
    assert snapshot(host_secret) == before
    kept = Path(res["logs"])  # only regular files and directories are kept
    assert not os.path.lexists(kept / "junit-test.xml") and (kept / "results.json").is_file()


def test_junit_symlink_to_stdin_does_not_hang(pyti_bin, state_dir, demo, tmp_path):
    """/proc/self/fd/0 resolved by the host is pyti's stdin: here a pipe that never closes."""
    recipe = write_recipe(tmp_path, """\
        [task:test]
        run = ln -s /proc/self/fd/0 /io/out/junit-test.xml
        junit = out/junit-test.xml
        """)
    rfd, wfd = os.pipe()
    try:
        p = subprocess.Popen([pyti_bin, "--state-dir", state_dir, "run", "--json", "-q", "--recipe", recipe,
                              str(demo)], stdin=rfd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.close(rfd)
        try:
            out, errs = p.communicate(timeout=600)  # a hang is a failure, not a slow pass
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            pytest.fail("pyti hung reading a junit link to its own stdin")
    finally:
        os.close(wfd)
    res = json.loads(out)
    t = task(res, "test")
    assert "tests" not in t and t["status"] == "failed", t
    assert p.returncode == 1, errs


def test_out_replaced_by_link_to_host_dir(pyti, state_dir, demo, tmp_path):
    """/io/out swapped for a link to a host directory holding a forged results.json."""
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir()
    forged = {"status": "passed", "tasks": [{"task": "test", "status": "passed",
                                             "tests": {"passed": 1000, "failed": 0, "skipped": 0, "errors": 0}}]}
    (hostdir / "results.json").write_text(json.dumps(forged))
    (hostdir / "keep.txt").write_text("host data\n")
    before = snapshot(hostdir)
    # the agent still writes somewhere inside: a directory of the same name in the sandbox's /tmp
    recipe = write_recipe(tmp_path, f"""\
        [task:test]
        run = mkdir -p {hostdir} && cp -a /io/out/. {hostdir}/ && rm -rf /io/out && ln -s {hostdir} /io/out
        """)
    r, res = run_json(pyti, "--recipe", recipe, demo, timeout=300)
    if res["status"] == "failed":
        # Tasks run apart from the agent (their own uid; /io is sticky): the task may not remove
        # the agent's out/, so the swap fails at its first step and the verdict says so.
        assert r.returncode == 1, r.stderr
        assert [t["status"] for t in res["tasks"]] == ["failed"], res["tasks"]
    else:
        assert res["status"] == "error" and res["failure_class"] == "Crash", res
        assert r.returncode == 3 and "link" in res["error"], res
    assert snapshot(hostdir) == before
    runs = Path(state_dir) / "runs"
    assert not [p for p in runs.iterdir() if p.is_symlink() and os.readlink(p) == str(hostdir)], \
        "runs/<job> became a link to the host directory"


# ---- point 4: the fetch scratch directory ----

def test_fetch_testreqs_link_to_host_file(pyti, state_dir, tmp_path):
    """A build backend (setup.py, run by pip in the fetch sandbox) makes out/testreqs.txt a link to
    a host file: its lines must reach neither the job nor the cache."""
    secret = tmp_path / "host-reqs.txt"
    marker = "pyti-host-secret-" + uuid.uuid4().hex[:12]
    secret.write_text(f"{marker}\n")
    os.chmod(secret, 0o600)
    before = snapshot(secret)
    d = make_demo_project(tmp_path, name="pyti_evil_treqs", failing=0)
    (d / "setup.py").write_text(textwrap.dedent(f"""\
        import os
        from setuptools import setup
        # {uuid.uuid4().hex}: a fresh fetch every time
        if os.path.isdir("/io/out") and not os.path.lexists("/io/out/testreqs.txt"):
            os.makedirs({str(secret.parent)!r}, exist_ok=True)  # inside the sandbox: the redirect works
            os.symlink({str(secret)!r}, "/io/out/testreqs.txt")
        setup()
        """))
    r, res = run_json(pyti, "--keep", d, timeout=900)
    assert r.returncode == 0, r.stderr
    assert task(res, "test")["tests"]["passed"] == 1, res  # the job itself ran honestly
    job = Path(res["job_dir"])
    treqs = job / "test-requirements.txt"
    assert not treqs.exists() or marker not in treqs.read_text()
    for e in (Path(state_dir) / "cache" / "fetch").glob("*.json"):
        assert marker not in e.read_text(), e
    assert snapshot(secret) == before
    subprocess.run(["rm", "-rf", str(job)], check=True)


def make_sdist(dirpath: Path, proj: Path) -> Path:
    sd = dirpath / f"{proj.name}.tar.gz"
    with tarfile.open(sd, "w:gz") as tf:
        tf.add(proj, arcname=proj.name)
    return sd


def test_fetch_sdist_dir_link_to_host_dir(pyti, tmp_path):
    """The package's build replaces /io/sdist by a link to a host directory holding a file named
    like an sdist: the cache must not hard-link it nor chmod it 0444."""
    hostdir = tmp_path / "host-sdists"
    hostdir.mkdir()
    name = "pyti_evil_sd" + uuid.uuid4().hex[:8]  # a fresh fetch every time (a requirement is cached by name)
    victim = hostdir / f"{name}-0.1.0.tar.gz"
    victim.write_bytes(b"host data, not an sdist\n")
    os.chmod(victim, 0o600)
    before = snapshot(hostdir)
    proj = make_demo_project(tmp_path / "src", name=name, failing=0)
    (proj / "setup.py").write_text(textwrap.dedent(f"""\
        import os, shutil
        from setuptools import setup
        # Best effort: where the build runs apart from the agent (its own uid, a sticky /io) a
        # step may be refused; the build goes on either way, as a hostile one would.
        try:
            if os.path.isdir("/io/sdist") and not os.path.islink("/io/sdist"):
                shutil.rmtree("/io/sdist")
                os.makedirs({str(hostdir)!r}, exist_ok=True)
                os.symlink({str(hostdir)!r}, "/io/sdist")
        except OSError as e:
            print("refused:", e)
        setup()
        """))
    links = tmp_path / "links"
    links.mkdir()
    make_sdist(links, proj)
    find_links = " ".join(x for x in (os.environ.get("PIP_FIND_LINKS", ""), str(links)) if x)
    recipe = write_recipe(tmp_path, "[task:ok]\nrun = echo ok\n")
    r, res = run_json(pyti, "--recipe", recipe, f"{name.replace('_', '-')}==0.1.0",
                      env={"PIP_FIND_LINKS": find_links}, timeout=900)
    assert snapshot(hostdir) == before  # not linked (st_nlink), not chmodded, not rewritten
    assert r.returncode in (0, 1), (r.returncode, r.stderr)
    # Where the link got made (builds that share the agent's uid), pyti says why it refused the
    # sdist; with the tasks' own uid the build may not replace /io/sdist in the first place.
    if "link" in r.stderr:
        assert "sdist" in r.stderr, r.stderr


# ---- point 8: modes of a copied source tree ----

def test_source_tree_modes_kept(pyti, tmp_path):
    d = make_demo_project(tmp_path, name="pyti_modes_demo", failing=0)
    (d / "secret.cfg").write_text("token\n")
    os.chmod(d / "secret.cfg", 0o600)
    (d / "group.cfg").write_text("g\n")
    os.chmod(d / "group.cfg", 0o640)
    recipe = write_recipe(tmp_path, """\
        [task:modes]
        run = stat -c '%n %a' /io/src/secret.cfg /io/src/group.cfg && cat /io/src/secret.cfg
        """)
    r, res = run_json(pyti, "--recipe", recipe, d, timeout=900)
    t = task(res, "modes")
    assert t["status"] == "passed", t
    assert "/io/src/secret.cfg 600" in t["output"] and "/io/src/group.cfg 640" in t["output"], t["output"]
    assert "token" in t["output"]  # and the sandbox can still read it
    assert res["status"] == "passed"


# ---- point 9: leftovers of a killed pyti ----

@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_is_swept(pyti_bin, pyti, state_dir, demo, tmp_path, sig):
    # The task says it started (a file in out/, which the test reads); then it waits for ever.
    recipe = write_recipe(tmp_path, """\
        [task:wait]
        run = touch /io/out/started && sleep 100000
        timeout = 0
        """)
    jobs = Path(state_dir) / "jobs"
    before = set(os.listdir(jobs)) if jobs.exists() else set()
    p = subprocess.Popen([pyti_bin, "--state-dir", state_dir, "run", "-q", "--recipe", recipe, str(demo)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    mine = None
    deadline = time.monotonic() + 600  # a failsafe against a hang, not a measurement
    while mine is None and time.monotonic() < deadline and p.poll() is None:
        for name in set(os.listdir(jobs)) - before:
            if (jobs / name / "out" / "started").exists():
                mine = name
        time.sleep(0.2)
    assert mine, p.stderr.read() if p.poll() is not None else "the job never started"
    p.send_signal(sig)
    p.wait(timeout=120)
    # A SIGTERM'd pyti may or may not clean up; SIGKILL certainly does not.
    if sig == signal.SIGKILL:
        assert (jobs / mine).exists() and (jobs / f".owner.{mine}").exists()
    # the next run sweeps it, and does not touch what it cannot prove dead
    live = jobs / "pyti-test-live-unrecorded"
    live.mkdir(exist_ok=True)
    r, res = run_json(pyti, "--recipe", write_recipe(tmp_path, "[task:ok]\nrun = echo ok\n", "ok.ini"), demo)
    assert res["status"] == "passed", r.stderr
    assert not (jobs / mine).exists() and not (jobs / f".owner.{mine}").exists()
    assert live.exists()
    live.rmdir()


def test_killed_fetch_is_swept(pyti_bin, pyti, state_dir, tmp_path):
    """kill -9 while the fetch sandbox builds: tmp/fetch.* and the cache key's lock file stay behind
    and the next run removes them."""
    d = make_demo_project(tmp_path, name="pyti_slow_build", failing=0)
    (d / "setup.py").write_text(textwrap.dedent(f"""\
        import os, time
        from setuptools import setup
        # {uuid.uuid4().hex}: a fresh fetch every time
        if os.path.isdir("/io/out"):
            open("/io/out/building", "w").close()
            while True:
                print("building", flush=True)
                time.sleep(5)
        setup()
        """))
    tmp, locks = Path(state_dir) / "tmp", Path(state_dir) / "cache" / "fetch"
    tmp.mkdir(parents=True, exist_ok=True)
    locks.mkdir(parents=True, exist_ok=True)
    before_tmp, before_locks = set(os.listdir(tmp)), set(os.listdir(locks))
    p = subprocess.Popen([pyti_bin, "--state-dir", state_dir, "run", "-q", str(d)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    mine = None
    deadline = time.monotonic() + 600  # a failsafe against a hang, not a measurement
    while mine is None and time.monotonic() < deadline and p.poll() is None:
        for name in set(os.listdir(tmp)) - before_tmp:
            if name.startswith("fetch.") and (tmp / name / "out" / "building").exists():
                mine = name
        time.sleep(0.2)
    assert mine, p.stderr.read() if p.poll() is not None else "the build never started"
    new_locks = {n for n in set(os.listdir(locks)) - before_locks if n.endswith(".lock")}
    assert new_locks
    p.kill()
    p.wait(timeout=120)
    assert (tmp / mine).exists() and (tmp / f".owner.{mine}").exists()
    demo = make_demo_project(tmp_path / "next", name="pyti_next_demo", failing=0)
    r = pyti("run", "-q", "--recipe", write_recipe(tmp_path, "[task:ok]\nrun = echo ok\n", "ok.ini"),
             demo)
    assert r.returncode == 0, r.stderr
    assert not (tmp / mine).exists() and not (tmp / f".owner.{mine}").exists()
    # the killed fetch's lock file is gone; one still there is a concurrent run's, and held
    for n in new_locks:
        try:
            fd = os.open(locks / n, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


# ---- point 4, vm backend: out/ comes back through disk_download into a host directory ----

@pytest.fixture(scope="module")
def libvirtd():
    if os.geteuid() != 0:
        pytest.skip("qemu:///system set-up needs root")
    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run([str(repo / "scripts" / "libvirtd-start")], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"scripts/libvirtd-start failed:\n{r.stderr}"


def test_vm_junit_links(pyti, libvirtd, demo, tmp_path, host_secret):
    """In the guest a task makes one junit file a link inside out/ (downloaded as a link) and one an
    absolute link to a host file (never downloaded): neither is read, neither counts."""
    before = snapshot(host_secret)
    recipe = write_recipe(tmp_path, f"""\
        [task:rel]
        run = echo '{FORGED_JUNIT.strip()}' > /io/out/forged.xml && ln -s forged.xml /io/out/junit-rel.xml
        junit = out/junit-rel.xml
        [task:abs]
        run = ln -s {host_secret} /io/out/junit-abs.xml
        junit = out/junit-abs.xml
        """)
    r, res = run_json(pyti, "--backend", "vm", "--recipe", recipe, demo, timeout=900)
    rel, ab = task(res, "rel"), task(res, "abs")
    assert "tests" not in rel and rel["status"] == "failed" and "link" in rel["junit_error"], rel
    # the absolute link never left the guest: no report to read, so no test counted
    assert ab.get("tests", {}).get("total", 0) == 0 and ab.get("tests", {}).get("passed", 0) == 0, ab
    assert res["status"] == "failed" and r.returncode == 1, r.stderr
    assert snapshot(host_secret) == before
