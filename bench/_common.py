"""Shared pieces of the benchmarks: run pyti, and run the same tasks directly on the host.

The host baseline deliberately runs a corpus package's own tests on the host, outside any sandbox: it
is the measurement the sandbox is compared against, meant for the trusted development corpus only.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTI = os.environ.get("PYTI_BIN", str(REPO / "build" / "src" / "cli" / "pyti"))
STATE = os.environ.get("PYTI_STATE_DIR", str(REPO / ".state"))
HOST_PY = "/usr/bin/python3"  # Debian's python, the same version as the bookworm guest


def pyti_run(dist, *extra, keep=False):
    """Run `pyti run --json`; returns (wall seconds of the whole command, results, io dir or None)."""
    args = [PYTI, "--state-dir", STATE, "run", "--json", "-q"]
    if keep:
        args.append("--keep")
    args += [*extra, dist]
    t0 = time.monotonic()
    r = subprocess.run(args, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if not r.stdout.strip():
        raise RuntimeError(f"pyti run {dist} failed ({r.returncode}): {r.stderr[-2000:]}")
    res = json.loads(r.stdout)
    return wall, res, res.get("job_dir")


def ensure_host_venv():
    """The host baseline needs Debian's venv and pip for HOST_PY (installed here when missing, as root)."""
    ok = subprocess.run([HOST_PY, "-c", "import venv, ensurepip; import pip"], capture_output=True).returncode == 0
    if ok:
        return
    if os.geteuid() != 0:
        raise SystemExit("bench: the host baseline needs python3-venv and python3-pip (apt-get install them)")
    e = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "python3-venv", "python3-pip"],
                   env=e, check=True)


def host_tasks(io_dir):
    """The default recipe's tasks on the host, from the job's own wheelhouse and src/.
    Returns (wall seconds, {task: wall}, test counts)."""
    ensure_host_venv()
    job = json.loads(Path(io_dir, "job.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="pyti-bench-"))
    venv = work / "venv"
    # the default recipe's test runner (src/recipe/runtests.py) reads and writes under these
    env = dict(os.environ, PATH=f"{venv}/bin:/usr/bin:/bin", VIRTUAL_ENV=str(venv), HOME=str(work),
               PYTHONUNBUFFERED="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTI_RUNTESTS_IO=str(io_dir),
               PYTI_RUNTESTS_OUT=str(work), PYTI_RUNTESTS_WORK=str(work / "src"))
    times = {}
    t_all = time.monotonic()
    for t in job["tasks"]:
        cmd = (t["run"].replace("/tmp/pyti-venv", str(venv)).replace("/io/wheels", f"{io_dir}/wheels")
               .replace("/io/out", str(work)).replace("/io/src", f"{io_dir}/src")
               .replace("/io/test-requirements.txt", f"{io_dir}/test-requirements.txt")
               .replace("/io/pyti/", f"{io_dir}/pyti/"))
        cwd = t.get("cwd", "/io").replace("/io", str(io_dir), 1)
        t0 = time.monotonic()
        try:  # the task's own timeout, as the sandbox applies it (setsid: kill the whole group)
            p = subprocess.Popen(["/bin/sh", "-c", cmd], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            p.wait(timeout=t.get("timeout") or None)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()
        times[t["name"]] = time.monotonic() - t0
    wall = time.monotonic() - t_all
    counts = None
    j = work / "junit-test.xml"
    if j.exists():
        import xml.etree.ElementTree as ET
        p = f = s = 0
        for ts in ET.parse(j).getroot().iter("testsuite"):
            n, fl, er, sk = (int(ts.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
            p += n - fl - er - sk; f += fl + er; s += sk
        counts = {"passed": p, "failed": f, "skipped": s}
    shutil.rmtree(work, ignore_errors=True)
    return wall, times, counts


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]
