"""src/fetch/testreqs.py and getsdist.py, the scripts the fetch sandbox runs: a source's test
requirements, and an sdist fetched without building it.

Here they run on our own fixture archives with the guest image's pip (its vendored `packaging` and
its package finder, what the real run uses) on the host's Python of the same version, with no index
but a local find-links directory; test_run.py and test_fetch.py cover them end to end inside the
fetch sandbox."""
import io
import os
import subprocess
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest
from conftest import missing

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "src" / "fetch"


@pytest.fixture(scope="module")
def guest_pip(state_dir):
    dp = Path(state_dir) / "images" / "bookworm" / "rootfs" / "usr" / "lib" / "python3" / "dist-packages"
    if not (dp / "pip").is_dir():
        missing(f"no bookworm image in {state_dir}")
    return str(dp)


def script(guest_pip, name, *args, env=None):
    e = {"PYTHONPATH": guest_pip, "PATH": os.environ["PATH"], "HOME": "/nonexistent", **(env or {})}
    return subprocess.run(["/usr/bin/python3", "-S", str(SCRIPTS / name), *map(str, args)], capture_output=True,
                          text=True, env=e, timeout=60)


def run(guest_pip, src, project="proj"):
    r = script(guest_pip, "testreqs.py", "--list", src, project)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines(), r.stderr


def tar_sdist(path, files):
    with tarfile.open(path, "w:gz") as tf:
        for name, text in files.items():
            data = textwrap.dedent(text).encode()
            ti = tarfile.TarInfo(f"proj-1.0/{name}")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


def zip_sdist(path, files):
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(f"proj-1.0/{name}", textwrap.dedent(text))
    return path


PYPROJECT = """\
    [project]
    name = "proj"
    [dependency-groups]
    lint = ["ruff"]
    base = ["six>=1", "attrs; python_version >= '3'"]
    Tests = [{include-group = "base"}, "hypothesis", "not a requirement !!", {include-group = "tests"}]
    """


def test_groups_from_tar(guest_pip, tmp_path):
    src = tar_sdist(tmp_path / "proj-1.0.tar.gz", {"pyproject.toml": PYPROJECT,
                                                    "requirements-test.txt": "never-read\n"})
    out, err = run(guest_pip, src)
    assert out == ["six>=1", 'attrs; python_version >= "3"', "hypothesis"]
    assert "not a requirement !!" in err


def test_requirements_file_from_zip(guest_pip, tmp_path):
    src = zip_sdist(tmp_path / "proj-1.0.zip", {
        "pyproject.toml": "[project]\nname = 'proj'\n",
        "requirements-dev.txt": "sphinx\n",
        "requirements/test.txt": """\
            # comment
            -r base.txt
            -r ../../../etc/passwd
            --index-url http://example.invalid/simple
            -e .
            ./local/path
            pytest>=7  # trailing comment
            freezegun \\
              ==1.5.1
            """,
        "requirements/base.txt": "six\n",
    })
    out, err = run(guest_pip, src)
    assert out == ["six", "pytest>=7", "freezegun==1.5.1"]
    assert "requirements/test.txt" in err


def test_dev_file_is_the_fallback(guest_pip, tmp_path):
    d = tmp_path / "proj"
    d.mkdir()
    (d / "requirements-dev.txt").write_text("pytest\nfreezegun\n")
    out, _ = run(guest_pip, d)
    assert out == ["pytest", "freezegun"]


def test_nothing_declared(guest_pip, tmp_path):
    src = tar_sdist(tmp_path / "proj-1.0.tar.gz", {"pyproject.toml": "[project]\nname = 'proj'\n",
                                                    "setup.py": "raise SystemExit('never run')\n"})
    out, _ = run(guest_pip, src)
    assert out == []


def test_bad_toml_is_not_fatal(guest_pip, tmp_path):
    src = tar_sdist(tmp_path / "proj-1.0.tar.gz", {"pyproject.toml": "[dependency-groups\n",
                                                    "test-requirements.txt": "pytest\n"})
    out, err = run(guest_pip, src)
    assert out == ["pytest"] and "pyproject.toml" in err


def test_self_references_and_unfetchable_lines(guest_pip, tmp_path):
    """Issue 10, point 4: `-e .[socks]`, `.[x]` and the project's own name are the project itself
    with those extras (never a requirement pip would resolve from the index); a URL, another path,
    an option are dropped, each with its reason."""
    d = tmp_path / "proj"
    d.mkdir()
    (d / "requirements-dev.txt").write_text(
        "-e .[socks]\n.[fast, extra2]\nProj[third]>=0\npytest\n-e ../other\nfoo @ https://example.invalid/f.whl\n"
        "--pre\n-e git+https://example.invalid/x.git#egg=x\n")
    out, err = run(guest_pip, d)
    assert out == ["pytest"], (out, err)
    assert "the project itself with extras: socks,fast,extra2,third" in err, err
    assert "dropped '-e ../other'" in err and "not fetchable by name" in err
    assert "dropped 'foo @ https://example.invalid/f.whl'" in err and "direct URL" in err
    assert "dropped '--pre'" in err and "a pip option" in err
    assert "dropped '-e git+https" in err


def test_tox_deps_and_extras(guest_pip, tmp_path):
    """tox.ini [testenv] deps come first (what tox installs), -r followed inside the source, factor
    conditions and substitutions dropped; `extras` are the project's own."""
    src = tar_sdist(tmp_path / "proj-1.0.tar.gz", {
        "tox.ini": """            [tox]
            envlist = py311
            [testenv]
            extras = testing
            deps =
                -r requirements/ci.txt
                mock>=4
                py38: importlib-metadata
                {env:EXTRA_DEP:}
            commands = pytest
            """,
        "requirements/ci.txt": "hypothesis\n",
        "requirements-test.txt": "never-read\n",
    })
    out, err = run(guest_pip, src)
    assert out == ["hypothesis", "mock>=4"], (out, err)
    assert "the project itself with extras: testing" in err
    assert "conditional on a tox factor" in err and "tox substitution" in err


@pytest.fixture
def links(tmp_path):
    d = tmp_path / "links"
    d.mkdir()
    tar_sdist(d / "proj-1.0.tar.gz", {"setup.py": "raise SystemExit('never run')\n"})
    zip_sdist(d / "proj-1.0.zip", {"setup.py": "raise SystemExit('never run')\n"})
    (d / "proj-1.0-py3-none-any.whl").write_bytes(b"not read")
    tar_sdist(d / "proj-2.0.tar.gz", {"setup.py": ""})
    return d


def test_getsdist_takes_the_tar_gz_of_that_version(guest_pip, tmp_path, links):
    dest = tmp_path / "sdist"
    dest.mkdir()
    r = script(guest_pip, "getsdist.py", "proj", "1.0", dest,
               env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links), "PIP_CONFIG_FILE": "/dev/null"})
    assert r.returncode == 0, r.stderr
    assert [p.name for p in dest.iterdir()] == ["proj-1.0.tar.gz"]
    assert (dest / "proj-1.0.tar.gz").read_bytes() == (links / "proj-1.0.tar.gz").read_bytes()


def test_getsdist_no_sdist_is_exit_3(guest_pip, tmp_path, links):
    dest = tmp_path / "sdist"
    dest.mkdir()
    r = script(guest_pip, "getsdist.py", "proj", "3.0", dest,
               env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links), "PIP_CONFIG_FILE": "/dev/null"})
    assert r.returncode == 3, r.stderr
    assert "no sdist" in r.stderr and list(dest.iterdir()) == []
