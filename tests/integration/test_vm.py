"""`pyti vm` and `pyti run --backend vm` against a real libvirtd and QEMU (TCG unless KVM works).

Guest boots cost seconds under TCG, so the suite keeps them few: one `pyti vm` domain boot, and the
vm runs share the image's warm snapshot (built by the first warm run if missing).
"""
import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from conftest import missing

from pkgs import make_demo_project

REPO = Path(__file__).resolve().parents[2]
SYSTEM = "qemu:///system"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="qemu:///system set-up needs root")


@pytest.fixture(scope="session")
def libvirtd():
    r = subprocess.run([str(REPO / "scripts" / "libvirtd-start")], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"scripts/libvirtd-start failed:\n{r.stderr}"
    yield
    # warm runs leave a paused standby guest for the next one: not after the suite (a helper may
    # still be restoring one: let it finish first)
    state = os.environ.get("PYTI_TEST_STATE", str(REPO / ".state"))
    for _ in range(300):
        recs = [f.read_text().split()[:1] for f in Path(state).glob("vm/*/warm-*/standby")]
        if ["prep"] not in recs:
            break
        time.sleep(0.1)
    for n in virsh("list", "--name").stdout.split():
        if n.startswith("pyti-warm-"):
            virsh("destroy", n)


@pytest.fixture(scope="session")
def image(state_dir):
    if not (Path(state_dir) / "images" / "bookworm" / "manifest.json").exists():
        missing("no bookworm image in the test state dir (scripts/test builds it)")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_project(tmp_path_factory.mktemp("vmdemo"))


def virsh(*args):
    return subprocess.run(["virsh", "-c", SYSTEM, *args], capture_output=True, text=True, timeout=120)


def vm_list(pyti, uri=SYSTEM):
    r = pyti("vm", "list", "--json", "--connect", uri, check=True)
    return {d["name"]: d for d in json.loads(r.stdout)}


def test_vm_usage(pyti):
    assert pyti("vm").returncode == 2
    assert pyti("vm", "frobnicate", "x").returncode == 2
    assert pyti("vm", "start").returncode == 2  # NAME missing
    assert pyti("vm", "start", "../etc").returncode == 2
    h = pyti("vm", "--help")
    assert h.returncode == 0 and "rollback" in h.stdout


def test_vm_test_driver(pyti):
    """test:///default lives inside one process: each command sees a fresh driver."""
    r = pyti("vm", "define", "unit", "--connect", "test:///default")
    assert r.returncode == 0, r.stderr
    assert "pyti-unit" in r.stdout
    assert vm_list(pyti, "test:///default") == {}  # the driver's own "test" domain is not pyti's
    r = pyti("vm", "destroy", "nosuch", "--connect", "test:///default")
    assert r.returncode == 2 and "no domain named 'pyti-nosuch'" in r.stderr


@needs_root
def test_vm_lifecycle(pyti, libvirtd, image, state_dir):
    name = f"it{os.getpid()}"
    full = "pyti-" + name
    pyti("vm", "destroy", name)  # a leftover of an earlier run, if any
    r = pyti("vm", "define", name, "--memory", "512", timeout=900)
    assert r.returncode == 0, r.stderr
    try:
        d = vm_list(pyti)[full]
        assert d["state"] == "shut off" and d["persistent"]
        xml = virsh("dumpxml", full).stdout
        assert "<interface" not in xml and "<graphics" not in xml
        assert "<memballoon model='none'/>" in xml and "<acpi/>" in xml
        assert (Path(state_dir) / "vm" / "domains" / name / "system.qcow2").exists()

        pyti("vm", "start", name, check=True)
        assert vm_list(pyti)[full]["state"] == "running"
        pyti("vm", "snapshot", name, "s1", check=True, timeout=300)
        assert vm_list(pyti)[full]["snapshots"] == ["s1"]
        pyti("vm", "rollback", name, "s1", check=True, timeout=300)
        assert vm_list(pyti)[full]["state"] == "running"
        # the agent (PID 1) has no ACPI handler: stop ends in destroy after the timeout
        r = pyti("vm", "stop", name, "--timeout", "2", check=True)
        assert "stopped" in r.stdout
        assert vm_list(pyti)[full]["state"] == "shut off"
    finally:
        r = pyti("vm", "destroy", name)
    assert r.returncode == 0, r.stderr
    assert full not in vm_list(pyti)
    assert not (Path(state_dir) / "vm" / "domains" / name).exists()


def run_json(pyti, *args):
    r = pyti("run", "--json", "-q", *args, timeout=1800)
    assert r.stdout.strip(), f"no JSON; rc={r.returncode}\n{r.stderr}"
    return r, json.loads(r.stdout)


@needs_root
def test_vm_run_matches_ns(pyti, libvirtd, image, demo, state_dir):
    # a stale domain as a crashed pyti would leave it: named after a process that is gone
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"pyti-job-{dead.pid}-1"
    xml = textwrap.dedent(f"""\
        <domain type='qemu'><name>{stale}</name><memory unit='MiB'>64</memory>
        <os><type arch='x86_64'>hvm</type></os><features><acpi/></features>
        <devices><memballoon model='none'/></devices></domain>""")
    r = subprocess.run(["virsh", "-c", SYSTEM, "create", "/dev/stdin", "--paused"], input=xml,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    # and its run directory
    stale_dir = Path(state_dir) / "vm" / f"run-{dead.pid}-1"
    (stale_dir / "sub").mkdir(parents=True, exist_ok=True)
    (stale_dir / "sub" / "system.qcow2").write_bytes(b"x")

    rn, ns = run_json(pyti, "--backend", "ns", demo)
    rv, vm = run_json(pyti, "--backend", "vm", demo)
    assert vm["backend"] == "vm" and ns["backend"] == "ns"
    assert rv.returncode == rn.returncode, rv.stderr
    assert vm["status"] == ns["status"]
    assert [(t["task"], t["status"], t["failure_class"]) for t in vm["tasks"]] == \
        [(t["task"], t["status"], t["failure_class"]) for t in ns["tasks"]]
    assert [t.get("tests") for t in vm["tasks"]] == [t.get("tests") for t in ns["tasks"]]

    assert stale not in virsh("list", "--all", "--name").stdout
    # nothing of the job is left: no pyti-job domains of ours, no run directories
    left = [n for n in virsh("list", "--all", "--name").stdout.split() if n.startswith("pyti-job-")]
    assert left == []
    assert list((Path(state_dir) / "vm").glob("run-*")) == []  # the stale one included


def test_vm_run_relative_state_dir(pyti_bin, libvirtd, image, demo, state_dir, tmp_path):
    """libvirtd opens disks from its own working directory: a relative --state-dir must still work."""
    recipe = tmp_path / "ok.ini"
    recipe.write_text("[task:ok]\nrun = echo ok\n")
    parent = Path(state_dir).resolve().parent
    rel = os.path.relpath(Path(state_dir).resolve(), parent)
    r = subprocess.run([pyti_bin, "--state-dir", rel, "run", "--json", "-q", "--backend", "vm",
                        "--recipe", str(recipe), str(demo)], cwd=parent, capture_output=True, text=True, timeout=900)
    assert r.stdout.strip(), r.stderr
    res = json.loads(r.stdout)
    assert res["status"] == "passed", r.stderr
    assert res["logs"].startswith("/")


@needs_root
def break_guest_mid_task(pyti_bin, state_dir, recipe, demo, action, env=None, timeout=900):
    """Run a cold vm job and, once its task has started, `virsh ACTION` its guest from the host.
    Tasks run as an unprivileged uid in the guest and can no longer panic or freeze its kernel
    themselves (/proc/sysrq-trigger is root's), so the test plays the failing guest."""
    e = dict(os.environ, **(env or {}))
    p = subprocess.Popen([pyti_bin, "--state-dir", state_dir, "run", "--backend", "vm", "--cold", "--json",
                          "--recipe", str(recipe), str(demo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=e)
    seen = []
    try:
        for line in p.stderr:
            seen.append(line)
            if "task 1/1" in line:
                r = virsh(action, f"pyti-job-{p.pid}-1")
                assert r.returncode == 0, r.stderr
                break
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, out, "".join(seen) + err


def test_vm_guest_panic_is_crash(pyti_bin, libvirtd, image, demo, state_dir, tmp_path):
    recipe = tmp_path / "crash.ini"
    recipe.write_text(textwrap.dedent("""\
        [recipe]
        name = crash
        description = a guest that dies mid-task

        [task:boom]
        run = sleep 600
        timeout = 300
        """))
    rc, out, err = break_guest_mid_task(pyti_bin, state_dir, recipe, demo, "destroy")
    assert rc == 3, err
    assert "error (Crash)" in err, err
    assert json.loads(out)["failure_class"] == "Crash"


def standby_record(state_dir):
    """The newest warm snapshot's standby record ("ready PID SECONDS", …) and its domain name."""
    recs = sorted(Path(state_dir).glob("vm/bookworm/warm-*/standby"), key=lambda p: p.stat().st_mtime)
    assert recs, "no warm snapshot with a standby record"
    return recs[-1], "pyti-" + recs[-1].parent.name


def wait_standby(state_dir, timeout=60):
    rec, name = standby_record(state_dir)
    for _ in range(int(timeout / 0.1)):
        words = rec.read_text().split()
        if words and words[0] in ("ready", "failed"):
            return words[0], name
        time.sleep(0.1)
    raise AssertionError(f"standby helper still at work: {rec.read_text()}")


@needs_root
def test_vm_standby(pyti, libvirtd, image, demo, state_dir, tmp_path):
    """A warm run leaves the next job a paused standby guest (restored by a helper process after it
    ended); the next warm run adopts it; PYTI_VM_STANDBY=0 leaves none; a standby whose record is not
    "ready" is thrown away, not trusted."""
    recipe = tmp_path / "ok.ini"
    recipe.write_text("[task:ok]\nrun = echo ok; test -f /io/job.json\n")

    def reset(r):
        """How the job got its guest, from results.json's "vm" (docs/contracts.md), not from a log line."""
        vm = json.loads(r.stdout)["vm"]
        assert vm["ready_s"] >= 0 and (vm["restore_s"] is None) == (vm["reset"] == "cold"), vm
        return vm["reset"]

    def warm(env=None):
        r = pyti("-v", "run", "--json", "-q", "--backend", "vm", "--recipe", recipe, demo, env=env, timeout=900)
        assert r.returncode == 0 and json.loads(r.stdout)["status"] == "passed", r.stderr
        return r

    warm()
    # right away: the job waits for the helper's restore, not for its warm-up (which "go" ends)
    r = warm()
    assert reset(r) == "standby", r.stderr
    state, name = wait_standby(state_dir)
    assert state == "ready", (Path(state_dir) / "vm").glob("bookworm/warm-*/standby.log")
    assert vm_list(pyti)[name]["state"] == "paused"

    r = warm(env={"PYTI_VM_STANDBY": "0"})
    assert reset(r) == "standby", r.stderr
    assert name not in vm_list(pyti)  # used, destroyed, and no helper started

    r = warm()
    assert reset(r) == "restore", r.stderr
    assert wait_standby(state_dir)[0] == "ready"

    rec, _ = standby_record(state_dir)
    rec.write_text("failed 1\n")
    r = warm()
    assert "discarding a used or unfinished standby" in r.stderr and reset(r) == "restore", r.stderr
    wait_standby(state_dir)
    assert pyti("vm", "destroy", name).returncode == 0


@needs_root
def test_vm_guest_hang_is_timeout(pyti, pyti_bin, libvirtd, image, demo, state_dir, tmp_path):
    """A guest that stops printing (here: paused from the host, as good as a kernel that stopped
    but a domain still running) is found by the silence watchdog, long before the backstop."""
    recipe = tmp_path / "hang.ini"
    recipe.write_text(textwrap.dedent("""\
        [recipe]
        name = hang
        description = a guest that freezes mid-task

        [task:freeze]
        run = sleep 600
        timeout = 600
        """))
    t0 = time.monotonic()
    rc, out, err = break_guest_mid_task(pyti_bin, state_dir, recipe, demo, "suspend",
                                        env={"PYTI_VM_HANG_S": "15"})
    assert rc == 3, err
    assert "error (Timeout)" in err and "printed nothing for 15 s (hung)" in err, err
    res = json.loads(out)
    assert res["status"] == "error" and res["failure_class"] == "Timeout" and res["exit_status"] == 3
    assert time.monotonic() - t0 < 300  # the backstop would be 600 + 5 + 120 s
    assert not [n for n in vm_list(pyti) if n.startswith("pyti-job-")]


def test_vm_session_uri(pyti, image, demo, tmp_path):
    """qemu:///session (the per-user libvirtd, started on demand by libvirt itself) runs a job too."""
    recipe = tmp_path / "ok.ini"
    recipe.write_text("[task:ok]\nrun = test -f /io/job.json\n")
    r = pyti("run", "--backend", "vm", "--cold", "--connect", "qemu:///session", "--json", "-q",
             "--recipe", recipe, demo, timeout=900)
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "passed", r.stderr
    assert pyti("vm", "list", "--connect", "qemu:///session").returncode == 0


@needs_root
def test_vm_image_rm_drops_standby(pyti, libvirtd, image, demo, state_dir, tmp_path):
    """`pyti image rm` also removes the image's VM artefacts and destroys its standby guest."""
    # beside the shared state dir, which QEMU (user libvirt-qemu) can reach, unlike pytest's tmp
    own = Path(state_dir).resolve() / "test-image-rm"
    subprocess.run(["rm", "-rf", str(own)], check=True)
    (own / "images").mkdir(parents=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(Path(state_dir) / "images" / "bookworm"),
                    str(own / "images" / "bookworm")], check=True, timeout=300)
    recipe = tmp_path / "ok.ini"
    recipe.write_text("[task:ok]\nrun = echo ok\n")
    r = pyti("run", "--backend", "vm", "-q", "--recipe", recipe, demo, state=own, timeout=900)
    assert r.returncode == 0, r.stderr
    _, name = wait_standby(own)
    assert vm_list(pyti)[name]["state"] == "paused"
    r = pyti("image", "rm", "bookworm", state=own)
    assert r.returncode == 0, r.stderr
    assert name not in vm_list(pyti)
    assert not (own / "vm" / "bookworm").exists()
    subprocess.run(["rm", "-rf", str(own)], check=True)
