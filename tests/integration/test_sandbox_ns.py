"""The ns sandbox backend with the real agent and the real image, driven through the small driver
built from tests/unit/test_sandbox_ns.c (`test_sandbox_ns --run IMAGE_DIR IO_DIR AGENT …`).

Needs: the build dir (PYTI_BUILD_DIR, default: the one holding PYTI_BIN) with the driver (tests/unit/) and
src/agent/pyti-agent, and the bookworm image in the test state dir."""
import base64
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import missing

REPO = Path(__file__).resolve().parents[2]


def build_dir():
    if os.environ.get("PYTI_BUILD_DIR"):
        return Path(os.environ["PYTI_BUILD_DIR"])
    pyti = Path(os.environ.get("PYTI_BIN", REPO / "build" / "src" / "cli" / "pyti"))
    return pyti.parents[2]


def find(rel):
    p = build_dir() / rel
    if not p.exists():
        missing(f"not built: {rel} in {build_dir()}")
    return str(p)


@pytest.fixture(scope="module")
def env(state_dir):
    image = Path(state_dir) / "images" / "bookworm"
    if not (image / "rootfs" / "usr" / "bin" / "python3").exists():
        missing(f"no bookworm image in {state_dir}")
    return {
        "driver": find("tests/unit/test_sandbox_ns"),
        "agent": find("src/agent/pyti-agent"),
        "image": str(image),
    }


def py(code):
    b = base64.b64encode(code.encode()).decode()
    return f"python3 -c 'import base64; exec(base64.b64decode(\"{b}\"))'"


def task(name, run, **kw):
    t = {"name": name, "run": run, "needs": [], "cwd": "/io", "env": {}, "timeout": 60,
         "no_output_timeout": 0, "memory": 0, "pids": 0, "output_limit": 1 << 20, "junit": None}
    t.update(kw)
    return t


def run_job(env, tmp_path, tasks, *extra, timeout=120):
    io = tmp_path / "io"
    io.mkdir(exist_ok=True)
    job = {"job": "nstest", "dist": "none", "recipe": "nstest", "backend": "ns", "image": "bookworm",
           "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp/home", "LANG": "C.UTF-8"},
           "tasks": tasks}
    (io / "job.json").write_text(json.dumps(job))
    r = subprocess.run([env["driver"], "--run", env["image"], str(io), env["agent"], *map(str, extra)],
                       capture_output=True, text=True, timeout=timeout)
    assert r.stdout.strip(), r.stderr
    drv = json.loads(r.stdout)
    res = None
    rp = io / "out" / "results.json"
    if rp.exists():
        res = json.loads(rp.read_text())
    return drv, res


def out(res, name):
    return next(t for t in res["tasks"] if t["task"] == name)["output"]


PROBE = """
import json, os, socket
r = {}
r["pid1"] = open("/proc/1/cmdline", "rb").read().split(b"\\0")[0].decode()
r["uid_map"] = open("/proc/self/uid_map").read().split()
r["uid"] = os.getuid()
def can_write(p):
    try:
        open(p, "w").close(); return True
    except OSError:
        return False
r["write_usr"] = can_write("/usr/pyti-probe")
r["write_root"] = can_write("/pyti-probe")
r["write_etc"] = can_write("/etc/pyti-probe")
r["write_io"] = can_write("/io/out/probe")
r["write_tmp"] = can_write("/tmp/probe") and can_write("/tmp/home/probe") and can_write("/var/tmp/probe")
r["visible"] = [p for p in ("/work", "/root/.cache", "/var/tmp/pyti-scratch", "HOSTIO") if os.path.exists(p)]
try:
    socket.create_connection(("127.0.0.1", TCPPORT), timeout=3); r["tcp"] = "open"
except OSError:
    r["tcp"] = "blocked"
try:
    socket.getaddrinfo("python.org", 443); r["dns"] = "open"
except OSError:
    r["dns"] = "blocked"
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"leak", ("127.0.0.1", UDPPORT))
except OSError:
    pass
r["hostname"] = socket.gethostname()
r["caps"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
print("PROBE" + json.dumps(r))
"""


def test_isolation(env, tmp_path):
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(5)
    tcp.settimeout(0.2)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.5)
    code = (PROBE.replace("TCPPORT", str(tcp.getsockname()[1]))
            .replace("UDPPORT", str(udp.getsockname()[1])).replace("HOSTIO", str(tmp_path)))
    drv, res = run_job(env, tmp_path, [task("probe", py(code))])
    assert drv["rc"] == 0, drv
    assert res["tasks"][0]["status"] == "passed", res
    p = json.loads(out(res, "probe").split("PROBE", 1)[1])
    assert p["pid1"] == "/run/pyti/agent"
    assert p["uid_map"][0] == "0" and p["uid_map"][2] == "1"
    if os.geteuid() == 0:
        assert int(p["uid_map"][1]) >= 65536, p["uid_map"]  # never host root
        # tasks run as a second mapped uid, the next host uid, apart from the agent's
        assert p["uid"] == 1000 and p["uid_map"][3:] == ["1000", str(int(p["uid_map"][1]) + 1), "1"]
    else:
        assert p["uid"] == 0
        assert int(p["uid_map"][1]) == os.geteuid()
    assert not p["write_usr"] and not p["write_root"] and not p["write_etc"]
    assert p["write_io"] and p["write_tmp"]
    assert p["visible"] == []
    assert p["tcp"] == "blocked" and p["dns"] == "blocked"
    assert p["hostname"] == "pyti"
    assert int(p["caps"], 16) == 0
    with pytest.raises(socket.timeout):
        tcp.accept()
    with pytest.raises(socket.timeout):
        udp.recvfrom(100)
    # the host gets the I/O directory back as its own
    assert (tmp_path / "io" / "out" / "probe").stat().st_uid == os.geteuid()
    assert {e["event"] for e in drv["events"]} >= {"job_start", "task_start", "task_end", "job_end"}


def host_state():
    """Mounts under the paths a sandbox uses (the image, temp dirs) and the process list."""
    roots = (str(REPO), tempfile.gettempdir(), os.path.abspath(os.environ.get("PYTI_TEST_STATE", REPO)))
    mounts = [l for l in Path("/proc/self/mountinfo").read_text().splitlines()
              if l.split()[4].startswith(roots)]
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return mounts, procs


def test_nothing_left_behind(env, tmp_path):
    before, _ = host_state()
    drv, res = run_job(env, tmp_path, [
        task("bg", "(setsid sleep 4242 >/dev/null 2>&1 &); nohup sleep 4243 >/dev/null 2>&1 & echo started"),
    ])
    assert drv["rc"] == 0, drv
    after, procs = host_state()
    assert after == before
    assert "sleep 4242" not in procs and "sleep 4243" not in procs
    leftovers = [p for p in (tmp_path / "io").rglob("*") if p.stat().st_uid != os.geteuid()]
    assert leftovers == []


def test_backstop_timeout(env, tmp_path):
    t0 = time.monotonic()
    drv, res = run_job(env, tmp_path, [task("hang", "(setsid sleep 4244 &); sleep 4245", timeout=0)],
                       "--timeout", "2")
    assert drv["rc"] == -1
    assert drv["fclass"] == "Timeout"
    assert time.monotonic() - t0 < 15
    _, procs = host_state()
    assert "sleep 4244" not in procs and "sleep 4245" not in procs


def test_fetch_mode_network_and_ro_binds(env, tmp_path):
    """--network is a network namespace of its own, linked to the outside by slirp4netns: the
    host's loopback listeners stay out of reach, resolv.conf names slirp's DNS forwarder; ro binds
    appear read-only at the same path."""
    d = tmp_path / "shared"
    d.mkdir()
    (d / "f.txt").write_text("hello")
    os.chmod(tmp_path, 0o755)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = []
    th = threading.Thread(target=lambda: got.append(srv.accept()), daemon=True)
    th.start()
    code = f"""
import socket, os
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=5); print("loopback=open")
except OSError:
    print("loopback=closed")
print("data=" + open("{d}/f.txt").read())
try:
    open("{d}/new", "w"); print("rw")
except OSError:
    print("ro")
print("resolv=" + open("/etc/resolv.conf").read().strip())
"""
    drv, res = run_job(env, tmp_path, [task("net", py(code))], "--network", "--ro", d)
    assert drv["rc"] == 0, drv
    o = out(res, "net")
    assert "data=hello" in o and "\nro\n" in o and "resolv=nameserver 10.0.2.3" in o, o
    assert "loopback=closed" in o, o
    assert not got  # the job is over: a connection it made would have been accepted by now


def test_start_time(env, tmp_path):
    """Sandbox start (clone → agent exec) should take milliseconds."""
    setups = []
    for i in range(5):
        drv, res = run_job(env, tmp_path, [task("t", "true")])
        assert drv["rc"] == 0
        setups.append(drv["setup_s"])
    setups.sort()
    print("setup_s:", setups)
    assert setups[2] < 0.1, setups
