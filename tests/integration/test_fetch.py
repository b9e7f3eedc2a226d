"""fetch_dist for real: pip in the fetch sandbox against the index the user's pip configuration
names, through the driver built from tests/unit/test_fetch.c
(`test_fetch --fetch STATE IMAGE_DIR AGENT IO_DIR DIST [REQ…]`), with a fresh cache per module."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pkgs import make_demo_project  # noqa: E402
from test_sandbox_ns import find  # noqa: E402
from conftest import missing  # noqa: E402

UNREACHABLE = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "3"}


@pytest.fixture(scope="module")
def fx(state_dir, tmp_path_factory):
    image = Path(state_dir) / "images" / "bookworm"
    if not (image / "rootfs" / "usr" / "bin" / "python3").exists():
        missing(f"no bookworm image in {state_dir}")
    return {
        "driver": find("tests/unit/test_fetch"),
        "agent": find("src/agent/pyti-agent"),
        "image": str(image),
        "state": str(tmp_path_factory.mktemp("fetch-state")),
    }


def fetch(fx, io, dist, *reqs, env=None):
    io.mkdir(parents=True, exist_ok=True)
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([fx["driver"], "--fetch", fx["state"], fx["image"], fx["agent"], str(io), str(dist), *reqs],
                       capture_output=True, text=True, timeout=900, env=e)
    assert r.stdout.strip(), r.stderr
    return r.returncode, json.loads(r.stdout)


def wheels(res):
    return sorted(p.name for p in Path(res["wheelhouse"]).iterdir())


@pytest.mark.parametrize("dist,name", [("six", "six"), ("iniconfig", "iniconfig")])
def test_fetch_then_cache(fx, tmp_path, dist, name):
    rc, res = fetch(fx, tmp_path / "io1", dist, "pytest")
    assert rc == 0, res
    assert res["from_cache"] is False
    assert res["dist_wheel"].startswith(name + "-") and res["dist_wheel"].endswith(".whl")
    ws = wheels(res)
    assert res["dist_wheel"] in ws
    assert any(w.startswith("pytest-") for w in ws), ws  # the recipe's requirement came along
    assert res["sdist"] and Path(res["sdist"]).name.startswith(name + "-")
    # the scratch I/O directory of the fetch sandbox is gone
    assert list((Path(fx["state"]) / "tmp").iterdir()) == []
    # the second fetch of the same DIST fetches nothing, even with the index unreachable
    rc2, res2 = fetch(fx, tmp_path / "io2", dist, "pytest", env=dict(UNREACHABLE, PIP_NO_INDEX="1"))
    assert rc2 == 0, res2
    assert res2["from_cache"] is True
    assert wheels(res2) == ws
    assert res2["wall_s"] < 1
    for w in ws:
        assert (Path(res2["wheelhouse"]) / w).read_bytes() == (Path(res["wheelhouse"]) / w).read_bytes()


def test_local_project(fx, tmp_path):
    proj = make_demo_project(tmp_path / "src")
    rc, res = fetch(fx, tmp_path / "io", proj)
    assert rc == 0, res
    assert res["dist_wheel"].startswith("pyti_demo_pkg-0.1.0-")
    assert res["sdist"] is None
    # built in the sandbox from a copy: the source tree is untouched
    assert sorted(p.name for p in proj.iterdir()) == ["pyproject.toml", "pyti_demo_pkg", "tests"]
    rc, res2 = fetch(fx, tmp_path / "io2", proj)
    assert rc == 0 and res2["from_cache"] is True
    (proj / "pyti_demo_pkg" / "__init__.py").write_text("def answer():\n    return 43\n")
    rc, res3 = fetch(fx, tmp_path / "io3", proj)
    assert rc == 0 and res3["from_cache"] is False  # content changed: fetched again


def test_unknown_distribution(fx, tmp_path):
    rc, res = fetch(fx, tmp_path / "io", "pyti-no-such-distribution-xyzzy==0.0.1")
    assert rc == 1
    assert res["class"] == "Fetch"
    assert "unknown distribution pyti-no-such-distribution-xyzzy" in res["error"]


def test_unreachable_index(fx, tmp_path):
    rc, res = fetch(fx, tmp_path / "io", "iniconfig==2.0.0", env=UNREACHABLE)
    assert rc == 1
    assert res["class"] == "Network", res
    assert "cannot reach" in res["error"]


def test_local_sdist(fx, tmp_path):
    import tarfile
    proj = make_demo_project(tmp_path / "src", name="pyti_sdist_pkg", version="0.2.0")
    sd = tmp_path / "pyti_sdist_pkg-0.2.0.tar.gz"
    with tarfile.open(sd, "w:gz") as tf:
        tf.add(proj, arcname=proj.name)
    os.chmod(sd, 0o644)
    before = sd.read_bytes()
    rc, res = fetch(fx, tmp_path / "io", sd)
    assert rc == 0, res
    assert res["dist_wheel"].startswith("pyti_sdist_pkg-0.2.0-")
    assert Path(res["sdist"]).name == sd.name and Path(res["sdist"]).read_bytes() == before
    st = sd.stat()
    assert st.st_nlink == 1 and (st.st_mode & 0o777) == 0o644 and sd.read_bytes() == before


def test_concurrent_fetches_fetch_once(fx, tmp_path):
    """Two jobs wanting the same fetch at once: one fetches, the other waits and takes the cache."""
    procs = []
    for i in range(2):
        io = tmp_path / f"io{i}"
        io.mkdir()
        procs.append(subprocess.Popen(
            [fx["driver"], "--fetch", fx["state"], fx["image"], fx["agent"], str(io), "iniconfig==2.0.0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        o, e = p.communicate(timeout=900)
        assert p.returncode == 0, o + e
        results.append(json.loads(o))
    assert sorted(r["from_cache"] for r in results) == [False, True]
    assert results[0]["dist_wheel"] == results[1]["dist_wheel"] == "iniconfig-2.0.0-py3-none-any.whl"


def test_fetch_as_ordinary_user(fx):
    """docs/design.md §7: no root needed (the sandbox maps the user's own uid, as bubblewrap does)."""
    if os.geteuid() != 0:
        pytest.skip("runs as an ordinary user already")
    base = Path(tempfile.mkdtemp(prefix="pyti-fetch-user-"))  # pytest's own tmp is root-only
    try:
        os.chmod(base, 0o755)
        home = base / "home"
        (home / "io").mkdir(parents=True)
        subprocess.run(["chown", "-R", "65534:65534", str(home)], check=True)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", f"HOME={home}",
               fx["driver"], "--fetch", str(home / "state"), fx["image"], fx["agent"], str(home / "io"),
               "six==1.17.0"]
        # a build tree or image under a private directory (a 0700 home) is out of nobody's reach: a
        # probe says so before the run, so that a "Permission denied" of the sandbox itself fails
        probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c",
                                'test -x "$1" && test -x "$2" && test -x "$3/rootfs/usr/bin"', "sh",
                                fx["driver"], fx["agent"], fx["image"]], capture_output=True, timeout=60)
        if probe.returncode != 0:
            pytest.skip("the build tree or the image is not reachable by uid 65534 here")
        if os.stat("/dev/net/tun").st_mode & 0o006 != 0o006:
            # The fetch's slirp4netns needs /dev/net/tun (Debian: 0666); where the host made it
            # root-only, give this one run a 0666 node of its own in a private mount namespace.
            (base / "tun").mkdir()
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                   'mount -t tmpfs tmpfs "$0" && mknod -m 666 "$0/tun" c 10 200 && '
                   'mount --bind "$0/tun" /dev/net/tun && exec "$@"', str(base / "tun"), *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout + r.stderr
        res = json.loads(r.stdout)
        assert res["dist_wheel"] == "six-1.17.0-py2.py3-none-any.whl"
        st = (Path(res["wheelhouse"]) / res["dist_wheel"]).stat()
        assert st.st_uid == 65534 and st.st_nlink == 1  # a copy: the sandbox owns it
    finally:
        shutil.rmtree(base, ignore_errors=True)
