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


def test_fetch_cannot_reach_host_loopback_or_abstract_sockets(fx, tmp_path):  # noqa: F811
    """A setup.py run during the fetch (the wheel build) probes the host's loopback listeners,
    the slirp gateway's mapping of them, a host abstract unix socket and /proc/net; it records
    what it saw in its own wheel's Summary. Nothing is reachable, and the fetch still succeeds
    (its build backend, setuptools, comes from the user's index over the sandbox's network)."""
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
