"""Small real Python projects made by the test suite (source dirs and sdists)."""
import io
import tarfile
import textwrap
from pathlib import Path


def make_demo_project(root: Path, name="pyti_demo_pkg", version="0.1.0", passing=1, failing=1,
                      pyproject_extra="", test_imports=()) -> Path:
    """A setuptools project whose test suite has `passing` passing and `failing` failing tests;
    `pyproject_extra` is appended to its pyproject.toml, `test_imports` imported by its tests."""
    d = root / f"{name}-{version}"
    (d / name).mkdir(parents=True)
    (d / "tests").mkdir()
    (d / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{name.replace('_', '-')}"
        version = "{version}"

        [tool.setuptools]
        packages = ["{name}"]
        """) + textwrap.dedent(pyproject_extra))
    (d / name / "__init__.py").write_text("def answer():\n    return 42\n")
    tests = [f"def test_pass_{i}():\n    from {name} import answer\n    assert answer() == 42\n"
             for i in range(passing)]
    tests += [f"def test_fail_{i}():\n    assert 1 == 2\n" for i in range(failing)]
    (d / "tests" / "test_demo.py").write_text("".join(f"import {m}\n" for m in test_imports) + "\n\n".join(tests))
    return d


def make_evil_sdist(path: Path, kind: str) -> Path:
    """A .tar.gz sdist with one hostile entry of the given kind."""
    with tarfile.open(path, "w:gz") as tf:
        def add(name, data=b"x", **kw):
            ti = tarfile.TarInfo(name)
            for k, v in kw.items():
                setattr(ti, k, v)
            if ti.type == tarfile.REGTYPE:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(ti)
        add("evil-1.0/PKG-INFO", b"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n")
        if kind == "dotdot":
            add("evil-1.0/../../escaped.txt")
        elif kind == "absolute":
            add("/tmp/pyti-evil-absolute.txt")
        elif kind == "symlink":
            add("evil-1.0/link", type=tarfile.SYMTYPE, linkname="/etc")
            add("evil-1.0/link/passwd-overwrite")
        elif kind == "hardlink":
            add("evil-1.0/hl", type=tarfile.LNKTYPE, linkname="/etc/passwd")
        elif kind == "device":
            add("evil-1.0/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        elif kind == "bomb":
            pass
    if kind == "bomb":  # 400 MiB of zeros compresses ~1000:1
        with tarfile.open(path, "w:gz", compresslevel=1) as tf:
            class Zeros(io.RawIOBase):
                def __init__(self, n):
                    self.n = n
                def readable(self):
                    return True
                def readinto(self, b):
                    k = min(len(b), self.n)
                    b[:k] = bytes(k)
                    self.n -= k
                    return k
            ti = tarfile.TarInfo("evil-1.0/zeros")
            ti.size = 400 << 20
            tf.addfile(ti, io.BufferedReader(Zeros(ti.size), 1 << 20))
    return path
