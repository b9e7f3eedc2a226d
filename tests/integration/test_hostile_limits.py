"""Hostile packages against pyti's limits (issue 8, points 5 and 6): what a tested package's code
may fill (tmpfs, /io/out) and reach (the host's network) — each test makes the hostile package or
task itself and checks both that the attack fails and that the verdict and classes stay honest."""
import json
import os
import socket
import sys
import textwrap
import threading
import uuid
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_fetch import fetch, fx  # noqa: E402,F401  (fx: the fetch driver fixture)

# ------------------------------------------------------------------ point 6: the fetch's network

PROBE_SETUP = '''\
import json, os, socket
from setuptools import setup

PORT = {port}
ABSTRACT = {abstract!r}

def reach(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(addr)
        return True
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()

def proc_net(name, needle):
    try:
        with open("/proc/net/" + name) as f:
            return needle in f.read()
    except OSError:
        return False

port_hex = ":%04X" % PORT
seen = {{
    "tcp4": reach(socket.AF_INET, ("127.0.0.1", PORT)),
    "tcp6": reach(socket.AF_INET6, ("::1", PORT)),
    # slirp4netns's gateway is mapped to the host's loopback unless --disable-host-loopback
    "gateway": reach(socket.AF_INET, ("10.0.2.2", PORT)),
    "abstract": reach(socket.AF_UNIX, "\\0" + ABSTRACT),
    "proc_tcp": proc_net("tcp", port_hex) or proc_net("tcp6", port_hex),
    "proc_unix": proc_net("unix", ABSTRACT),
}}
setup(name="pyti-netprobe", version="1.0", description=json.dumps(seen, sort_keys=True),
      packages=["pyti_netprobe"])
'''


class Listeners:
    """Host loopback listeners (127.0.0.1 and ::1 on one port) and a host abstract unix socket,
    each recording whether anyone connected."""

    def __init__(self):
        self.hits = []
        self.socks = []
        s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s4.bind(("127.0.0.1", 0))
        self.port = s4.getsockname()[1]
        self._serve(s4, "tcp4")
        self.has_v6 = socket.has_ipv6
        if self.has_v6:
            try:
                s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s6.bind(("::1", self.port))
                self._serve(s6, "tcp6")
            except OSError:
                self.has_v6 = False  # no IPv6 on the host's loopback: nothing to reach there
        self.abstract = "pyti-probe-" + uuid.uuid4().hex
        su = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        su.bind("\0" + self.abstract)
        self._serve(su, "abstract")

    def _serve(self, s, name):
        s.listen(16)
        self.socks.append(s)

        def loop():
            while True:
                try:
                    c, _ = s.accept()
                except OSError:
                    return
                self.hits.append(name)
                c.close()

        threading.Thread(target=loop, daemon=True).start()

    def close(self):
        for s in self.socks:
            s.close()


def wheel_summary(whl):
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Summary: "):
                return line[len("Summary: "):]
    raise AssertionError("no Summary in " + str(whl))


def test_fetch_cannot_reach_host_loopback_or_abstract_sockets(fx, pyti, tmp_path):  # noqa: F811
    """A setup.py run during the fetch (the wheel build) probes the host's loopback listeners,
    the slirp gateway's mapping of them, a host abstract unix socket and /proc/net; it records
    what it saw in its own wheel's Summary. Nothing is reachable, and the fetch still succeeds
    (its build backend, setuptools, comes from the user's index over the sandbox's network);
    `pyti run` of the same project passes, its probe as blind."""
    lis = Listeners()
    try:
        proj = tmp_path / "pyti-netprobe-1.0"
        (proj / "pyti_netprobe").mkdir(parents=True)
        (proj / "pyti_netprobe" / "__init__.py").write_text("")
        (proj / "pyproject.toml").write_text(textwrap.dedent("""\
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"
            """))
        (proj / "setup.py").write_text(PROBE_SETUP.format(port=lis.port, abstract=lis.abstract))
        rc, res = fetch(fx, tmp_path / "io", proj)
        assert rc == 0, res
        assert res.get("class") is None, res
        seen = json.loads(wheel_summary(Path(res["wheelhouse"]) / res["dist_wheel"]))
        recipe = tmp_path / "r.ini"
        recipe.write_text("[recipe]\nname = netprobe\n[task:import]\n"
                          "run = python3 -m pip install -q --no-index --find-links /io/wheels pyti-netprobe "
                          "--target /tmp/t && echo imported\n")
        r = pyti("run", "--json", "-q", "--recipe", recipe, proj)
        assert r.returncode == 0, r.stdout + r.stderr
        job = json.loads(r.stdout)
        assert job["status"] == "passed" and job["tasks"][0]["failure_class"] is None, job
    finally:
        lis.close()
    assert lis.hits == [], lis.hits
    for k in ("tcp4", "tcp6", "gateway", "abstract"):
        assert seen[k] is not True, seen  # an error name: refused, unreachable, timed out …
    assert seen["proc_tcp"] is False and seen["proc_unix"] is False, seen


def test_fetch_still_downloads_a_real_package(fx, tmp_path):  # noqa: F811
    """Through slirp4netns, with only the user's own pip configuration (no local find-links)."""
    env = {"PIP_FIND_LINKS": ""} if os.environ.get("PIP_FIND_LINKS") else {}
    rc, res = fetch(fx, tmp_path / "io", "iniconfig==2.0.0", env=env)
    assert rc == 0, res
    assert res["from_cache"] is False
    assert res["dist_wheel"] == "iniconfig-2.0.0-py3-none-any.whl"
    assert (Path(res["wheelhouse"]) / res["dist_wheel"]).stat().st_size > 0


# ------------------------------------------------------------------ point 5: tmpfs and /io/out

from pkgs import make_demo_project  # noqa: E402


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


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_project(tmp_path_factory.mktemp("demo"), failing=0)


@pytest.fixture(scope="module")
def image(state_dir):
    if not (Path(state_dir) / "images" / "bookworm" / "rootfs" / "usr" / "bin" / "python3").exists():
        pytest.skip(f"no bookworm image in {state_dir}")


# dd stops at the first short write (ENOSPC) with status 1; `sync` is not needed on a tmpfs.
FILL = "dd if=/dev/zero of={path}/pyti-fill bs=1M count={mib} status=none"


@pytest.mark.parametrize("where", ["/tmp", "/dev/shm", "/var/tmp"])
def test_tmpfs_counts_against_memory(pyti, image, demo, tmp_path, where):
    """A task under `memory = 64M` writes 300 MiB to a tmpfs and exits at once: what it left there
    is memory it holds (OOM), however fast it was; the next task still runs and passes."""
    recipe = write_recipe(tmp_path, f"""\
        [recipe]
        name = tmpfs-memory
        [task:fill]
        memory = 64M
        run = {FILL.format(path=where, mib=300)}
        [task:after]
        run = df -B1 {where}; echo clean
        """)
    r, res = run_json(pyti, "--recipe", recipe, demo, timeout=300)
    fill = task(res, "fill")
    assert fill["status"] == "failed", json.dumps(fill)[:2000]
    assert fill["failure_class"] == "OOM", json.dumps(fill)[:2000]
    after = task(res, "after")
    assert after["status"] == "passed" and "clean" in after["output"], after
    assert res["status"] == "failed"
    assert r.returncode == 1


# /run is bounded too, but tasks (uid 1000) cannot write it, as on any Debian system.
@pytest.mark.parametrize("where", ["/tmp", "/dev/shm", "/var/tmp"])
def test_tmpfs_is_bounded_and_full_is_nospace(pyti, image, demo, tmp_path, where):
    """`tmpfs = 32M` bounds each tmpfs (the kernel says so in df); a task that fills one and fails
    on ENOSPC is NoSpace, not a failure of the package's own; the next task passes."""
    recipe = write_recipe(tmp_path, f"""\
        [recipe]
        name = tmpfs-bounded
        tmpfs = 32M
        [task:size]
        run = df -B1 --output=size {where} | tail -n 1
        [task:fill]
        run = {FILL.format(path=where, mib=200)}
        [task:after]
        run = rm -f {where}/pyti-fill && echo clean
        """)
    r, res = run_json(pyti, "--recipe", recipe, demo, timeout=300)
    size = task(res, "size")
    assert size["status"] == "passed", size
    assert int(size["output"].split()[-1]) == 32 << 20, size["output"]
    fill = task(res, "fill")
    assert fill["status"] == "failed", json.dumps(fill)[:2000]
    assert fill["failure_class"] == "NoSpace", json.dumps(fill)[:2000]
    assert "No space left on device" in fill["output"]
    assert task(res, "after")["status"] == "passed"
    assert res["status"] == "failed"


def test_tmpfs_default_is_bounded(pyti, image, demo, tmp_path):
    """Without a `tmpfs` key every tmpfs still has a size: 1 GiB, not half of the host's RAM."""
    recipe = write_recipe(tmp_path, """\
        [recipe]
        name = tmpfs-default
        [task:size]
        run = df -B1 --output=size /tmp /dev/shm /var/tmp /run | tail -n +2
        """)
    r, res = run_json(pyti, "--recipe", recipe, demo, timeout=300)
    t = task(res, "size")
    assert t["status"] == "passed", t
    assert [int(x) for x in t["output"].split()] == [1 << 30] * 4, t["output"]


@pytest.mark.parametrize("value", ["1K", "lots", "0"])
def test_tmpfs_bad_value_is_a_usage_error(pyti, tmp_path, demo, value):
    recipe = write_recipe(tmp_path, f"[recipe]\nname = bad\ntmpfs = {value}\n[task:t]\nrun = true\n")
    r = pyti("run", "-q", "--recipe", recipe, demo)
    assert r.returncode == 2, r.stderr
    assert "r.ini:3" in r.stderr and "tmpfs" in r.stderr, r.stderr


def test_out_is_capped_on_the_host(pyti, image, demo, tmp_path):
    """A task writes 100 MiB into /io/out: runs/<job>/ keeps the agent's results, the logs and
    what fits in 64 MiB, leaves the rest out and says so; the task's own verdict is untouched."""
    recipe = write_recipe(tmp_path, f"""\
        [recipe]
        name = out-cap
        [task:fill]
        run = {FILL.format(path="/io/out", mib=100)} && echo small > /io/out/small.txt && echo done
        """)
    r, res = run_json(pyti, "--recipe", recipe, demo, timeout=300)
    fill = task(res, "fill")
    assert fill["status"] == "passed" and fill["failure_class"] is None, fill
    assert res["status"] == "passed"
    om = res["omitted_outputs"]
    assert om["files"] == 1 and om["first"] == [{"file": "pyti-fill", "bytes": 100 << 20}], om
    kept = Path(res["logs"])
    assert not (kept / "pyti-fill").exists()
    assert (kept / "small.txt").read_text() == "small\n"
    assert "done" in (kept / "logs" / "fill.log").read_text()
    assert json.loads((kept / "results.json").read_text())["omitted_outputs"] == om
    total = sum(p.stat().st_size for p in kept.rglob("*") if p.is_file())
    assert total <= 64 << 20
    assert "left out" in r.stderr


@pytest.mark.parametrize("how", ["one-file", "many-files"])
def test_io_writes_are_bounded(pyti, image, demo, tmp_path, how):
    """`io_limit = 32M`: a task that writes 100 MiB under /io (the host's disk, in the ns backend)
    as one file (RLIMIT_FSIZE) or as many small ones (the agent's walk) is stopped: NoSpace;
    the next task passes and its verdict is not mixed up with the package's own."""
    if how == "one-file":
        run = FILL.format(path="/io/src", mib=100)
    else:
        run = "for i in 1 2 3 4 5 6 7 8 9 10; do dd if=/dev/zero of=/io/src/f$i bs=1M count=10 status=none || exit 1; done"
    recipe = write_recipe(tmp_path, f"""\
        [recipe]
        name = io-limit
        io_limit = 32M
        [task:fill]
        run = {run}
        [task:after]
        run = rm -f /io/src/pyti-fill /io/src/f*; echo clean
        """)
    r, res = run_json(pyti, "--recipe", recipe, demo, timeout=300)
    fill = task(res, "fill")
    assert fill["status"] == "failed", json.dumps(fill)[:2000]
    assert fill["failure_class"] == "NoSpace", json.dumps(fill)[:2000]
    assert task(res, "after")["status"] == "passed"
    assert res["status"] == "failed"


def test_tmpfs_freed_elsewhere_is_no_credit(pyti, image, demo, tmp_path):
    """What a task frees on one tmpfs (a file an earlier task left in /tmp) does not pay for what
    it writes to another (/dev/shm): each mount's growth counts on its own."""
    recipe = write_recipe(tmp_path, f"""\
        [recipe]
        name = tmpfs-credit
        [task:prep]
        run = {FILL.format(path="/tmp", mib=100)}
        [task:fill]
        needs = prep
        memory = 64M
        run = rm /tmp/pyti-fill && {FILL.format(path="/dev/shm", mib=90)}
        """)
    r, res = run_json(pyti, "--recipe", recipe, demo, timeout=300)
    assert task(res, "prep")["status"] == "passed"
    fill = task(res, "fill")
    assert fill["status"] == "failed" and fill["failure_class"] == "OOM", json.dumps(fill)[:2000]


VM_RECIPE = f"""\
    [recipe]
    name = vm-tmpfs
    tmpfs = 32M
    [task:size]
    run = df -B1 --output=size /tmp /dev/shm /run | tail -n +2
    [task:fill]
    run = {FILL.format(path="/tmp", mib=100)}
    [task:mem]
    memory = 16M
    run = rm -f /tmp/pyti-fill; {FILL.format(path="/dev/shm", mib=24)}
    """


def test_vm_guest_tmpfs_bounded_and_counted(pyti, image, demo, tmp_path):
    """The vm guest's tmpfs mounts (made at boot, before the warm snapshot) are resized to the
    recipe's `tmpfs`; a full one is NoSpace, and what a task leaves there counts as its memory."""
    if os.geteuid() != 0:
        pytest.skip("the vm backend's qemu:///system needs root")
    import subprocess
    from conftest import REPO
    st = subprocess.run([str(REPO / "scripts" / "libvirtd-start")], capture_output=True, text=True, timeout=180)
    if st.returncode != 0:
        pytest.skip("libvirtd cannot start here: " + st.stderr[-300:])
    recipe = write_recipe(tmp_path, VM_RECIPE)
    r, res = run_json(pyti, "--backend", "vm", "--cold", "--recipe", recipe, demo, timeout=600)
    assert [int(x) for x in task(res, "size")["output"].split()] == [32 << 20] * 3, res
    fill = task(res, "fill")
    assert fill["status"] == "failed" and fill["failure_class"] == "NoSpace", json.dumps(fill)[:2000]
    mem = task(res, "mem")
    assert mem["status"] == "failed" and mem["failure_class"] == "OOM", json.dumps(mem)[:2000]
    assert res["status"] == "failed"


def test_fetch_without_slirp4netns_fails_clearly(fx, tmp_path):  # noqa: F811
    """No user-mode networking tool: the fetch fails and says which Debian package to install;
    it never falls back to the host's network (the host listener is not reached)."""
    lis = Listeners()
    try:
        proj = tmp_path / "pyti-netprobe-1.0"
        (proj / "pyti_netprobe").mkdir(parents=True)
        (proj / "pyti_netprobe" / "__init__.py").write_text("")
        (proj / "setup.py").write_text(PROBE_SETUP.format(port=lis.port, abstract=lis.abstract))
        rc, res = fetch(fx, tmp_path / "io", proj, env={"PYTI_SLIRP4NETNS": str(tmp_path / "no-such-slirp4netns")})
    finally:
        lis.close()
    assert rc != 0, res
    assert "slirp4netns" in res["error"] and "install the Debian package" in res["error"], res
    assert res.get("class") is None or res["class"] in ("Infra", "Fetch", "Network"), res
    assert lis.hits == []


def test_vm_io_disk_full_is_nospace(pyti, image, demo, tmp_path):
    """In the vm guest /io is an I/O disk of its own size: a task that fills it and fails is
    NoSpace; the host still reads the job back and the next task passes."""
    if os.geteuid() != 0:
        pytest.skip("the vm backend's qemu:///system needs root")
    import subprocess
    from conftest import REPO
    st = subprocess.run([str(REPO / "scripts" / "libvirtd-start")], capture_output=True, text=True, timeout=180)
    if st.returncode != 0:
        pytest.skip("libvirtd cannot start here: " + st.stderr[-300:])
    recipe = write_recipe(tmp_path, f"""\
        [recipe]
        name = vm-io-full
        [task:fill]
        run = {FILL.format(path="/io/src", mib=8192)}
        [task:after]
        run = rm -f /io/src/pyti-fill; echo clean
        """)
    r, res = run_json(pyti, "--backend", "vm", "--cold", "--recipe", recipe, demo, timeout=600)
    fill = task(res, "fill")
    assert fill["status"] == "failed" and fill["failure_class"] == "NoSpace", json.dumps(fill)[:2000]
    assert task(res, "after")["status"] == "passed"
    assert res["status"] == "failed"
