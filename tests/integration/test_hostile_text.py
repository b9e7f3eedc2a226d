"""Threat model, text: what a tested package writes reaches the user's terminal and the JUnit file
only escaped, and a hostile --recipe is refused before anything runs (issue 8, points 7, 10, 11).

Every test makes its hostile package, task or recipe itself, checks that the attack fails (no raw
control byte, bidi control or invalid UTF-8 on the terminal; the JUnit file parses; pyti exits
quickly with a usage error) and that the job's verdict and classes stay honest."""
import base64
import io
import json
import os
import subprocess
import tarfile
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pkgs import make_demo_project

# Bytes a package would use to drive the terminal: clear screen, bell, set the window title,
# a right-to-left override ("Trojan Source"), an isolate, a UTF-8 C1 CSI and a raw 8-bit CSI.
NASTY = b"\x1b[2J\x07\x1b]0;pwned-title\x07\xe2\x80\xaeRLO\xe2\x81\xa6LRI\xc2\x9b31m\x9b32m"
# What must never reach a terminal raw: ESC, BEL, CR, the bidi controls, C1 as UTF-8 and as a byte.
FORBIDDEN = [b"\x1b", b"\x07", b"\r", b"\xe2\x80\xae", b"\xe2\x81\xa6", b"\xc2\x9b", b"\x9b"]


def assert_clean(data: bytes, what: str):
    for bad in FORBIDDEN:
        assert bad not in data, f"{what} carries {bad!r} raw:\n{data[:3000]!r}"


def run_bytes(pyti_bin, state_dir, *args, timeout=600, env=None, stdin=subprocess.DEVNULL):
    """pyti with the shared state dir, output kept as bytes (text=True would hide bad bytes)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([pyti_bin, "--state-dir", state_dir, *map(str, args)], capture_output=True,
                          timeout=timeout, env=e, stdin=stdin)


def write_recipe(tmp_path, body: bytes, name="r.ini") -> str:
    p = tmp_path / name
    p.write_bytes(body)
    return str(p)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_project(tmp_path_factory.mktemp("demo"), name="pyti_text_demo", failing=0)


def test_failing_fetch_output_escaped(pyti_bin, state_dir, tmp_path):
    """A setup.py that prints terminal controls and a network error's words, then fails: nothing
    raw reaches the terminal, and the failure stays the package's (BuildFail, exit 1; it used to
    become "Network" with the build's line quoted raw from pip's log), in --json too."""
    d = tmp_path / "pyti_evil_build-1.0"
    d.mkdir()
    (d / "setup.py").write_text(textwrap.dedent(f"""\
        import sys
        for f in (sys.stdout.buffer, sys.stderr.buffer):
            f.write(b"HOSTILE-BUILD Connection refused " + {NASTY!r} + b" END\\n")
            f.flush()
        sys.exit(1)
        """))
    r = run_bytes(pyti_bin, state_dir, "run", d)
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    assert b"pyti: error (BuildFail): " in r.stderr, r.stderr[-3000:]
    assert_clean(r.stderr, "stderr")
    assert_clean(r.stdout, "stdout")
    # (Debian's pip, run with --log, sends the build's own output to its log only; what it says
    # on the console, quoted here, is its own. Nothing raw either way.)

    rj = run_bytes(pyti_bin, state_dir, "run", "-q", "--json", d)
    assert rj.returncode == 1
    res = json.loads(rj.stdout)
    assert (res["status"], res["failure_class"], res["exit_status"]) == ("failed", "BuildFail", 1)
    assert "failed to build" in res["error"]
    assert_clean(rj.stderr, "stderr (--json)")


def test_refused_sdist_names_escaped(pyti_bin, state_dir, tmp_path):
    """An sdist whose refused entry (an absolute symlink) has terminal controls in its name and
    target: the error quotes both escaped, and the job is refused (exit 3) as before."""
    evil = tmp_path / "evil-1.0.tar.gz"
    with tarfile.open(evil, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        def add(name, data=b"", **kw):
            ti = tarfile.TarInfo(name)
            for k, v in kw.items():
                setattr(ti, k, v)
            ti.size = len(data) if ti.type == tarfile.REGTYPE else 0
            tf.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
        add("evil-1.0/PKG-INFO", b"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n")
        nasty = NASTY.decode("utf-8", "surrogateescape")
        add("evil-1.0/link" + nasty, type=tarfile.SYMTYPE, linkname="/etc/" + nasty)
    r = run_bytes(pyti_bin, state_dir, "run", evil)
    assert r.returncode == 3, (r.returncode, r.stderr[-3000:])
    err = [l for l in r.stderr.splitlines() if l.startswith(b"pyti: error")]
    assert len(err) == 1 and b"refusing symlink" in err[0], r.stderr[-3000:]
    assert_clean(r.stderr, "stderr")
    assert b"link\\x1b[2J\\x07\\x1b]0;pwned-title\\x07\\u202eRLO\\u2066LRI\\u009b31m" in err[0], err[0]
    assert b"-> '/etc/\\x1b[2J" in err[0], err[0]
    assert not Path("/etc/link").exists()


def test_task_output_and_recipe_name_escaped(pyti_bin, state_dir, demo, tmp_path):
    """A recipe whose name carries ESC/BEL/U+202E and a task that prints controls and fails: the
    progress lines, the table and the --junit file show them escaped (the file parses as XML),
    and the verdict stays honest (failed, exit status 3, no failure class; the next task runs)."""
    prog = ("import sys\n"
            f"sys.stdout.buffer.write(b'TASK-OUT ' + {NASTY!r} + b'\\x01\\x0b\\x0c\\xef\\xbf\\xbe\\xff\\n')\n"
            "sys.exit(3)\n")
    b64 = base64.b64encode(prog.encode()).decode()
    recipe = write_recipe(tmp_path,
                          b"[recipe]\nname = evil\x1b[31m\x07\xe2\x80\xaename\n"
                          b"[task:noisy]\nrun = python3 -c 'import base64; exec(base64.b64decode(\"" + b64.encode() +
                          b"\"))'\n[task:after]\nrun = echo clean\n")
    junit = tmp_path / "out.xml"
    r = run_bytes(pyti_bin, state_dir, "run", "--recipe", recipe, "--junit", junit, demo)
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    assert_clean(r.stdout, "the table")
    assert_clean(r.stderr, "the progress lines")
    assert b"TASK-OUT" in r.stdout and b"\\x1b[2J" in r.stdout, r.stdout[-3000:]
    assert b"evil\\x1b[31m\\x07\\u202ename" in r.stdout, r.stdout[:500]
    assert b"noisy" in r.stdout and b"(exit status 3)" in r.stdout

    root = ET.parse(junit).getroot()  # raises if a control byte made it invalid XML
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {"noisy", "after"}
    assert cases["noisy"].get("classname").startswith("pyti.evil")
    fail = cases["noisy"].find("failure")
    assert fail is not None and fail.get("type") == "Failed" and fail.get("message") == "exit status 3"
    assert cases["after"].find("failure") is None and cases["after"].find("skipped") is None
    out = cases["noisy"].find("system-out").text
    assert "TASK-OUT" in out and "\x1b" not in out and "\x01" not in out and "\ufffe" not in out

    rj = run_bytes(pyti_bin, state_dir, "run", "-q", "--json", "--recipe", recipe, demo)
    res = json.loads(rj.stdout)
    noisy = next(t for t in res["tasks"] if t["task"] == "noisy")
    assert (res["status"], noisy["status"], noisy["exit_code"], noisy["failure_class"]) == \
        ("failed", "failed", 3, None)
    assert next(t for t in res["tasks"] if t["task"] == "after")["status"] == "passed"


def test_junit_counts_saturate(pyti_bin, state_dir, demo, tmp_path):
    """A task's JUnit file with counts at LONG_MAX in two suites: the sums saturate (no signed
    overflow, no wrapped negative count), and the task's own status decides the verdict."""
    big = "9223372036854775807"
    xml = (f'<testsuites><testsuite tests="{big}" failures="{big}" errors="{big}" skipped="1"/>'
           f'<testsuite tests="{big}" failures="{big}" errors="{big}" skipped="{big}"/></testsuites>')
    recipe = write_recipe(tmp_path, (
        "[task:test]\n"
        f"run = printf '%s' '{xml}' > /io/out/junit-test.xml\n"
        "junit = out/junit-test.xml\n").encode())
    r = run_bytes(pyti_bin, state_dir, "run", "-q", "--json", "--recipe", recipe, demo)
    res = json.loads(r.stdout)
    t = res["tasks"][0]
    assert t["status"] == "passed" and t["failure_class"] is None, json.dumps(t)[:2000]
    assert {k: t["tests"][k] for k in ("passed", "failed", "skipped", "errors")} == \
        {"passed": 0, "failed": int(big), "skipped": int(big), "errors": int(big)}
    assert b"runtime error" not in r.stderr, r.stderr[-2000:]  # UBSan, in a sanitised build
    rt = run_bytes(pyti_bin, state_dir, "run", "-q", "--recipe", recipe, demo)
    assert b"0 passed, 9223372036854775807 failed" in rt.stdout, rt.stdout


def test_fifo_recipe_refused(pyti_bin, state_dir, demo, tmp_path):
    """A FIFO as --recipe (nobody writes to it) used to block pyti for ever: now exit 2 at once."""
    fifo = tmp_path / "recipe.ini"
    os.mkfifo(fifo)
    try:
        r = run_bytes(pyti_bin, state_dir, "run", "-q", "--recipe", fifo, demo, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("pyti blocked on a FIFO given as --recipe")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert f"recipe {fifo}: not a regular file".encode() in r.stderr, r.stderr
    # a directory and a character device likewise
    for p in (tmp_path, "/dev/zero"):
        r = run_bytes(pyti_bin, state_dir, "run", "-q", "--recipe", p, demo, timeout=60)
        assert r.returncode == 2, (p, r.returncode, r.stderr)


@pytest.mark.parametrize("where", ["run", "name", "nul"])
def test_recipe_bad_bytes_refused_before_fetch(pyti_bin, state_dir, tmp_path, where):
    """Invalid UTF-8 (or a NUL) in a recipe's run or name: exit 2 with file:line at parse time,
    before any fetch (the DIST here could not be fetched at all: that would be exit 3)."""
    body = {
        "run": b"[recipe]\nname = ok\n[task:t]\nrun = echo \xff\xfe\n",
        "name": b"[recipe]\nname = caf\xc3\n[task:t]\nrun = echo\n",
        "nul": b"[recipe]\nname = ok\n[task:t]\nrun = echo a\x00b\n",
    }[where]
    line = {"run": 4, "name": 2, "nul": 4}[where]
    recipe = write_recipe(tmp_path, body)
    r = run_bytes(pyti_bin, state_dir, "run", "--recipe", recipe, "pyti-no-such-dist-xyzzy==0.0.1",
                  env={"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0"}, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.startswith(f"pyti: error: {recipe}:{line}: ".encode()), r.stderr
    assert (b"NUL byte" if where == "nul" else b"invalid UTF-8") in r.stderr, r.stderr
    assert b"fetch" not in r.stderr.lower(), r.stderr
