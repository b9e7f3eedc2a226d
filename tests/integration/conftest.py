"""Shared fixtures for integration tests that drive the real pyti binary against real components.

PYTI_BIN          the pyti binary (default: build/src/cli/pyti)
PYTI_TEST_STATE   a state directory that already holds the built bookworm image
                  (scripts/test builds it before running the suite; default: .state/ in the repo)
PYTI_TEST_MUST_RUN=1  (set by scripts/test) a missing image, rootfs or build product fails the
                  test instead of skipping it, so that the suite cannot pass by skipping
"""
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def missing(what):
    """Something the suite set-up should have provided (the image, a build product) is absent: a
    skip when a developer runs a test by hand, a failure under scripts/test (PYTI_TEST_MUST_RUN=1).
    Not for what the host forbids (no user namespaces, no root): those stay skips."""
    if os.environ.get("PYTI_TEST_MUST_RUN") == "1":
        pytest.fail(f"{what} (PYTI_TEST_MUST_RUN=1: scripts/test must not pass by skipping)", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session")
def pyti_bin():
    p = Path(os.environ.get("PYTI_BIN", REPO / "build" / "src" / "cli" / "pyti"))
    assert p.exists(), f"pyti binary not found at {p}; build first (scripts/test does)"
    return str(p)


@pytest.fixture(scope="session")
def state_dir():
    return str(Path(os.environ.get("PYTI_TEST_STATE", REPO / ".state")))


@pytest.fixture
def pyti(pyti_bin, state_dir):
    """Run pyti with the shared state dir; returns CompletedProcess (text, captured)."""

    def run(*args, check=False, timeout=900, env=None, state=None):
        e = dict(os.environ)
        if env:
            e.update(env)
        cmd = [pyti_bin, "--state-dir", state or state_dir, *map(str, args)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e)
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd} -> {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r

    return run
