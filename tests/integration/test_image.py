"""pyti image: list, the no-op rebuild, rm and missing-image errors, on the real built image.

The shared state dir (fixture state_dir) holds the bookworm image built by scripts/setup; these tests
never modify it. Removal is tested on a copy that shares nothing but hard links and a fake image.
"""
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def _images(pyti):
    r = pyti("image", "list", "--json", check=True)
    return {i["suite"]: i for i in json.loads(r.stdout)}


def test_list_json_shows_bookworm(pyti, state_dir):
    imgs = _images(pyti)
    assert "bookworm" in imgs, f"no bookworm image in {state_dir}: run `pyti image build`"
    b = imgs["bookworm"]
    assert re.fullmatch(r"3\.\d+\.\d+", b["python"]), b
    assert b["name"] == f"bookworm (Python {b['python']})"
    assert b["size_bytes"] > 50 * 2**20
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", b["created"])
    assert re.fullmatch(r"[0-9a-f]{64}", b["hash"])
    assert b["packages"] > 50
    assert os.path.isabs(b["path"])


def test_list_text(pyti):
    r = pyti("image", "list", check=True)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["SUITE", "PYTHON", "SIZE", "CREATED"]
    assert any(l.split()[0] == "bookworm" for l in lines[1:])


def test_image_layout(pyti, state_dir):
    d = Path(state_dir) / "images" / "bookworm"
    m = json.loads((d / "manifest.json").read_text())
    assert m["suite"] == "bookworm"
    assert m["kernel"] == "vmlinuz"
    assert (d / m["kernel"]).stat().st_size > 1 << 20
    pkgs = dict(p.split("=", 1) for p in m["packages"])
    for need in ("python3", "python3-pip", "python3-venv", "python3-pytest", "linux-image-cloud-amd64"):
        assert need in pkgs, need
    assert pkgs["python3"].startswith(m["python"])
    root = d / "rootfs"
    # mount points for the ns backend
    for mp in ("io", "run/pyti", "tmp"):
        assert (root / mp).is_dir(), mp
    assert (root / "tmp").stat().st_mode & 0o1777 == 0o1777
    # world-readable where the sandbox (a non-root uid) needs it; the kernel is kept in /boot
    for f in (root / "boot").glob("vmlinuz-*"):
        assert f.stat().st_mode & 0o004
    assert list((root / "usr" / "bin").glob("python3.*"))
    # trimmed
    assert not list((root / "var/lib/apt/lists").glob("*_Packages"))
    assert not (root / "usr/share/doc").exists()
    # uv (from PyPI, for the install task): its version and the executable, or null and none
    assert "uv" in m
    uv = root / "usr" / "local" / "bin" / "uv"
    if m["uv"] is None:
        assert not uv.exists()
    else:
        assert re.fullmatch(r"[0-9][0-9a-z.]*", m["uv"]), m["uv"]
        st = uv.lstat()
        assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o777 == 0o755 and st.st_size > 1 << 20
    # no half-built leftovers next to it
    assert not [p for p in (Path(state_dir) / "images").iterdir() if ".tmp." in p.name]


def test_build_again_is_a_fast_noop(pyti, state_dir):
    before = (Path(state_dir) / "images" / "bookworm" / "manifest.json").stat().st_mtime_ns
    t = time.monotonic()
    r = pyti("image", "build", "--suite", "bookworm")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t < 5
    assert "up to date" in r.stderr
    assert (Path(state_dir) / "images" / "bookworm" / "manifest.json").stat().st_mtime_ns == before


def _fake_image(state, suite, python="3.13.5"):
    d = Path(state) / "images" / suite
    (d / "rootfs" / "usr" / "bin").mkdir(parents=True)
    (d / "vmlinuz").write_bytes(b"\0" * 16)
    (d / "manifest.json").write_text(json.dumps({
        "suite": suite, "python": python, "packages": ["python3=" + python + "-1"],
        "hash": "0" * 64, "kernel": "vmlinuz", "created": "2026-11-23T10:00:00Z", "size_bytes": 4096}))
    return d


def test_rm_on_other_state_dir(pyti, tmp_path):
    state = tmp_path / "state"
    d = _fake_image(state, "trixie")
    stale = state / "images" / "trixie.tmp.999999999"  # no such pid: a crashed build
    stale.mkdir()
    r = pyti("image", "list", "--json", state=state, check=True)
    assert [i["suite"] for i in json.loads(r.stdout)] == ["trixie"]
    r = pyti("image", "rm", "trixie", state=state)
    assert r.returncode == 0, r.stderr
    assert not d.exists()
    assert not stale.exists()
    r = pyti("image", "list", "--json", state=state, check=True)
    assert json.loads(r.stdout) == []
    r = pyti("image", "rm", "trixie", state=state)
    assert r.returncode == 2
    assert "no trixie image" in r.stderr


def test_missing_image_is_a_configuration_error(pyti, tmp_path):
    # `pyti run` looks its image up with image_find(); the missing-image message is the one below.
    state = tmp_path / "empty"
    r = pyti("image", "list", state=state)
    assert r.returncode == 0
    assert "no images" in r.stderr
    r = pyti("run", "--suite", "trixie", "six", state=state, timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "pyti image build --suite trixie" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_usage_errors(pyti, tmp_path):
    state = tmp_path / "s"
    r = pyti("image", "build", "--suite", "jessie", state=state)
    assert r.returncode == 2 and "jessie" in r.stderr
    r = pyti("image", "build", "--mirror", "not-a-url", state=state)
    assert r.returncode == 2 and "--mirror" in r.stderr
    r = pyti("image", "frobnicate", state=state)
    assert r.returncode == 2
    r = pyti("image", "rm", state=state)
    assert r.returncode == 2
    r = pyti("image", "--help", state=state)
    assert r.returncode == 0 and "pyti image build" in r.stdout
    assert not (state / "images").exists() or not any((state / "images").iterdir())


def _as_user(uid, gid, cmd, home, path):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1800, user=uid, group=gid,
                          extra_groups=[], env={"PATH": path, "HOME": home})


def test_build_as_user_without_mmdebstrap_says_what_to_install(pyti_bin):
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    # pytest's tmp_path is private to root; nobody needs a directory it can reach
    state = Path(tempfile.mkdtemp(prefix="pyti-image-user-"))
    os.chmod(state, 0o755)
    os.chown(state, 65534, 65534)
    empty = state / "empty-path"  # a PATH without mmdebstrap, whether or not it is installed
    empty.mkdir()
    r = _as_user(65534, 65534, [pyti_bin, "--state-dir", str(state), "image", "build", "--mirror",
                                "http://mirror.invalid/debian"], str(state), str(empty))
    shutil.rmtree(state, ignore_errors=True)
    assert r.returncode == 2, r.stderr
    assert "apt-get install mmdebstrap" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


SLOW = pytest.mark.skipif(not os.environ.get("PYTI_TEST_SLOW"),
                          reason="real image builds take minutes: set PYTI_TEST_SLOW=1")


@SLOW
def test_real_build_in_fresh_state_dir(pyti, tmp_path):
    """A full build (debootstrap as root), then --force rebuilds and swaps the image atomically."""
    state = tmp_path / "fresh"
    r = pyti("image", "build", state=state, timeout=1800)
    assert r.returncode == 0, r.stderr
    imgs = json.loads(pyti("image", "list", "--json", state=state, check=True).stdout)
    assert [i["suite"] for i in imgs] == ["bookworm"]
    assert [p.name for p in (state / "images").iterdir() if not p.name.startswith(".")] == ["bookworm"]


@SLOW
def test_real_build_as_user_with_mmdebstrap(pyti_bin):
    """As an ordinary user with /etc/subuid entries (user PYTI_TEST_BUILD_USER, default
    pyti-builder), mmdebstrap --mode=unshare builds an image whose files the user owns."""
    import pwd
    name = os.environ.get("PYTI_TEST_BUILD_USER", "pyti-builder")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        pytest.skip(f"no user {name} (needs an /etc/subuid entry)")
    if not shutil.which("mmdebstrap"):
        pytest.skip("mmdebstrap is not installed")
    state = Path(tempfile.mkdtemp(prefix="pyti-image-user-", dir="/var/tmp"))
    os.chmod(state, 0o755)
    os.chown(state, pw.pw_uid, pw.pw_gid)
    try:
        r = _as_user(pw.pw_uid, pw.pw_gid, [pyti_bin, "--state-dir", str(state), "image", "build"],
                     pw.pw_dir, "/usr/bin:/bin")
        assert r.returncode == 0, r.stderr
        root = state / "images" / "bookworm" / "rootfs"
        assert (root / "usr" / "bin" / "python3").exists()
        assert (root / "etc" / "passwd").stat().st_uid == pw.pw_uid
        assert not (root / "dev" / "null").exists()
    finally:
        _as_user(pw.pw_uid, pw.pw_gid, ["rm", "-rf", str(state / "images")], pw.pw_dir, "/usr/bin:/bin")
        shutil.rmtree(state, ignore_errors=True)
