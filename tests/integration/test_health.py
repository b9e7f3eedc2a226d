"""The test suite itself cannot pass by skipping: PYTI_TEST_MUST_RUN=1 (set by scripts/test) turns a
missing image or build product into a failure, in the integration tests and in the unit tests; and every
unit test is registered in one place."""
import os
import re
import subprocess
import sys
from pathlib import Path

from test_sandbox_ns import build_dir

REPO = Path(__file__).resolve().parents[2]


def _env(must_run, **kw):
    e = {k: v for k, v in os.environ.items() if k not in ("PYTI_TEST_MUST_RUN", "PYTI_TEST_ROOTFS")}
    if must_run:
        e["PYTI_TEST_MUST_RUN"] = "1"
    e.update(kw)
    return e


def test_missing_image_fails_integration_tests_under_must_run(tmp_path):
    # an empty state directory: no image (test_fetch_scripts needs one and has nothing else to skip on)
    cmd = [sys.executable, "-m", "pytest", str(REPO / "tests/integration/test_fetch_scripts.py"), "-q",
           "-p", "no:cacheprovider", "-rs"]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                           env=_env(False, PYTI_TEST_STATE=str(tmp_path)))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "skipped" in plain.stdout and "no bookworm image" in plain.stdout
    must = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=_env(True, PYTI_TEST_STATE=str(tmp_path)))
    assert must.returncode == 1, must.stdout + must.stderr
    assert "PYTI_TEST_MUST_RUN=1" in must.stdout
    assert " passed" not in must.stdout.splitlines()[-1] and "skipped" not in must.stdout.splitlines()[-1]


def test_missing_rootfs_fails_unit_tests_under_must_run():
    driver = build_dir() / "tests/unit/test_sandbox_ns"
    assert driver.exists(), f"not built: {driver}"
    plain = subprocess.run([str(driver)], capture_output=True, text=True, timeout=120, env=_env(False))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "SKIPPED" in plain.stdout + plain.stderr
    must = subprocess.run([str(driver)], capture_output=True, text=True, timeout=120, env=_env(True))
    assert must.returncode != 0, must.stdout + must.stderr
    assert "no image root" in must.stdout + must.stderr


def test_unit_tests_registered_in_one_place():
    unit = (REPO / "tests/unit/meson.build").read_text()
    names = set(re.findall(r"^test\('([^']+)'", unit, re.M))
    for c in (REPO / "tests/unit").glob("test_*.c"):
        mod = c.stem[len("test_"):].replace("_", "-")
        assert f"unit-{mod}" in names, f"{c.name} is not registered in tests/unit/meson.build"
    for mb in (REPO / "src").glob("*/meson.build"):
        assert not re.search(r"^\s*test\(", mb.read_text(), re.M), f"{mb} registers a test"
