"""Threat model, part 1 and 2 (issue 8): a tested package must not reach the user's terminal, and a
task must not stop the agent or switch its limits off.

Each test makes the hostile package or task itself and checks both that the attack fails and that
the job's verdict and failure classes stay honest. ns backend unless marked; the vm tests are gated
like tests/integration/test_vm.py's.
"""
import base64
import errno
import fcntl
import json
import os
import pty
import select
import subprocess
import termios
import textwrap
import uuid
from pathlib import Path

import pytest

from pkgs import make_demo_project

REPO = Path(__file__).resolve().parents[2]

# Every hostile command carries MARK as an extra argument, so leftovers are ours only.
MARK = "pyti-hostile-tty-" + uuid.uuid4().hex
# The keystrokes a hostile package tries to push; spelled so that no log line contains it whole.
INJECT = "echo INJ" + "ECTED\n"


def py(code, mark=MARK):
    """A one-line shell command running a multi-line Python program (INI values are one line)."""
    b = base64.b64encode(code.encode()).decode()
    return f"python3 -c 'import base64; exec(base64.b64decode(\"{b}\"))' {mark}".rstrip()


def write_recipe(tmp_path, body, name="r.ini"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return str(p)


def task(res, name):
    return next(t for t in res["tasks"] if t["task"] == name)


def leftovers():
    procs = subprocess.run(["ps", "-eo", "pid,uid,args"], capture_output=True, text=True).stdout
    return [l for l in procs.splitlines() if MARK in l and "ps -eo" not in l]


# What a hostile program tries against the terminal; prints one word per attempt.
TTY_ATTACK = """
import errno, fcntl, os, termios
INJECT = %r
def name(e):
    return errno.errorcode.get(e.errno, str(e.errno))
out = []
try:
    fd = os.open("/dev/tty", os.O_RDWR)
    out.append("tty-open")
    try:
        for c in INJECT.encode():
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([c]))
        out.append("tty-injected")
    except OSError as e:
        out.append("tty-sti-" + name(e))
except OSError as e:
    out.append("tty-" + name(e))
for fd in (0, 1, 2):
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b"x")
        out.append("fd%%d-injected" %% fd)
    except OSError as e:
        out.append("fd%%d-%%s" %% (fd, name(e)))
# On a descriptor that is not open the kernel says EBADF: EPERM is the seccomp filter's answer.
for req, label in ((termios.TIOCSTI, "sti"), (0x541C, "linux")):
    try:
        fcntl.ioctl(987, req, b"x")
        out.append(label + "-ok")
    except OSError as e:
        out.append(label + "-" + name(e))
stat = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
out.append("ttynr-" + stat[4])
print(" ".join(out), flush=True)
""" % INJECT


@pytest.fixture
def ctty():
    """A pty pair; the slave becomes the controlling terminal and stdin of the command that
    run() starts, as in a user's shell. Returns (run, pending) where pending() is what arrived
    in the terminal's input queue (keystrokes the shell would read after pyti exits)."""
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~(termios.ICANON | termios.ECHO)  # lflag: byte-wise reads, no echo
    attrs[6][termios.VMIN] = 0
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(slave, termios.TCSANOW, attrs)

    def pending():
        data = b""
        while True:
            r, _, _ = select.select([slave], [], [], 0)
            if not r:
                return data
            chunk = os.read(slave, 4096)
            if not chunk:
                return data
            data += chunk

    def drain_master():
        while select.select([master], [], [], 0)[0]:
            try:
                if not os.read(master, 65536):
                    return
            except OSError:
                return

    def run(cmd, env=None, timeout=600):
        def become_terminal_owner():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        p = subprocess.Popen(cmd, stdin=slave, stdout=subprocess.PIPE, stderr=slave, env=env,
                             start_new_session=True, preexec_fn=become_terminal_owner)
        out = b""
        while True:  # keep the pty's output side drained so that pyti never blocks on stderr
            r, _, _ = select.select([p.stdout, master], [], [], timeout)
            if not r:
                p.kill()
                raise AssertionError("pyti hung")
            if master in r:
                drain_master()
            if p.stdout in r:
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
        p.wait(timeout=timeout)
        drain_master()
        return p.returncode, out.decode()

    # The detector itself works: root may push into a terminal (CAP_SYS_ADMIN), and it arrives.
    try:
        fcntl.ioctl(slave, termios.TIOCSTI, b"z")
        assert pending() == b"z"
    except OSError as e:
        pytest.skip(f"this host refuses TIOCSTI even to the test itself ({e}); nothing to detect")
    yield run, pending
    os.close(master)
    os.close(slave)


def pyti_cmd(pyti_bin, state_dir, *args):
    return [pyti_bin, "--state-dir", state_dir, "run", "--json", "-q", *map(str, args)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_project(tmp_path_factory.mktemp("ttydemo"))


def check_tty_words(words):
    # No terminal to open, none inherited, and the filter refuses both requests outright.
    assert words[0] in ("tty-ENOENT", "tty-ENXIO"), words
    assert not any(w.endswith("-injected") for w in words), words
    assert "sti-EPERM" in words and "linux-EPERM" in words, words
    assert "ttynr-0" in words, words


def test_task_cannot_type_into_the_terminal(ctty, pyti_bin, state_dir, demo, tmp_path):
    run, pending = ctty
    recipe = write_recipe(tmp_path, f"""\
        [recipe]
        name = tty
        [task:attack]
        run = {py(TTY_ATTACK)}
        timeout = 60
        [task:after]
        needs = attack
        run = echo clean
        """)
    rc, out = run(pyti_cmd(pyti_bin, state_dir, "--recipe", recipe, demo))
    assert pending() == b"", "keystrokes arrived in the user's terminal"
    res = json.loads(out)
    attack = task(res, "attack")
    words = attack["output"].split()
    check_tty_words(words)
    # Honest verdict: the task did what it did and exited 0, the next one ran.
    assert attack["status"] == "passed" and attack["failure_class"] is None, attack
    assert task(res, "after")["status"] == "passed"
    assert rc == 0 and res["status"] == "passed"
    assert leftovers() == []


def test_setup_py_cannot_type_into_the_terminal(ctty, pyti_bin, state_dir, tmp_path):
    """setup.py runs in the fetch sandbox while pyti resolves the sdist's metadata: same attack.
    Its findings travel in the wheel's Summary, so the test also sees that it really ran."""
    run, pending = ctty
    name = "pyti_tty_" + uuid.uuid4().hex[:8]  # a fresh fetch, never a cache hit
    d = tmp_path / f"{name}-1.0"
    (d / name).mkdir(parents=True)
    (d / name / "__init__.py").write_text("")
    (d / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        """))
    (d / "setup.py").write_text(TTY_ATTACK + textwrap.dedent(f"""
        from setuptools import setup
        setup(name={name!r}, version="1.0", packages=[{name!r}], description=" ".join(out))
        """))
    probe = ("import glob, zipfile\n"
             "w = glob.glob('/io/wheels/%s-*.whl')[0]\n"
             "z = zipfile.ZipFile(w)\n"
             "m = [n for n in z.namelist() if n.endswith('/METADATA')][0]\n"
             "print([l for l in z.read(m).decode().splitlines() if l.startswith('Summary:')][0])\n" % name)
    recipe = write_recipe(tmp_path, f"[task:summary]\nrun = {py(probe)}\ntimeout = 60\n")
    rc, out = run(pyti_cmd(pyti_bin, state_dir, "--recipe", recipe, d))
    assert pending() == b"", "keystrokes arrived in the user's terminal"
    res = json.loads(out)
    assert rc == 0 and res["status"] == "passed", out[:3000]
    summary = task(res, "summary")["output"].split("Summary:", 1)[1].split()
    check_tty_words(summary)
    assert leftovers() == []


AGENT_ATTACK = """
import ctypes, errno, os, signal
def name(n):
    return errno.errorcode.get(n, str(n))
import pwd
out = ["uid-%d" % os.getuid(), "gid-%d" % os.getgid(), "groups-" + ",".join(map(str, os.getgroups()))]
out.append("user-" + pwd.getpwuid(os.getuid()).pw_name)
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
r = libc.ptrace(16, 1, None, None)  # PTRACE_ATTACH to the agent
out.append("ptrace-ok" if r == 0 else "ptrace-" + name(ctypes.get_errno()))
r = libc.ptrace(0x4206, 1, None, None)  # PTRACE_SEIZE
out.append("seize-ok" if r == 0 else "seize-" + name(ctypes.get_errno()))
try:
    open("/proc/1/mem", "r+b")
    out.append("mem-open")
except OSError as e:
    out.append("mem-" + name(e.errno))
for sig in (signal.SIGSTOP, signal.SIGTERM, signal.SIGKILL):
    try:
        os.kill(1, sig)
        out.append("kill%d-sent" % sig)
    except OSError as e:
        out.append("kill%d-%s" % (sig, name(e.errno)))
# The agent's own files: its logs directory and the job it was given (a task may add files to
# /io and /io/out, which are sticky, but not touch the agent's).
for path in ("/io/out/logs/forged.log", "/io/out/logs/attack.log", "/io/job.json"):
    try:
        open(path, "w").write("x")
        out.append("wrote-" + path)
    except OSError as e:
        out.append("write-" + name(e.errno))
try:
    os.rename("/io/job.json", "/io/job.json.old")
    out.append("renamed-job")
except OSError as e:
    out.append("rename-" + name(e.errno))
print(" ".join(out), flush=True)
b = bytearray(1536 << 20)
for i in range(0, len(b), 4096):
    b[i] = 1
print("allocated 1.5 GiB", flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the second mapped uid needs a root caller; an "
                    "unprivileged caller's sandbox maps one uid only (README, Security model)")
def test_task_cannot_stop_the_agent_or_escape_its_memory_limit(pyti, demo, tmp_path):
    recipe = write_recipe(tmp_path, f"""\
        [recipe]
        name = agent
        [task:attack]
        run = {py(AGENT_ATTACK)}
        memory = 256M
        timeout = 10
        [task:after]
        run = echo clean; id -u
        """)
    r = pyti("run", "--json", "-q", "--recipe", recipe, demo, timeout=300)
    res = json.loads(r.stdout)
    attack = task(res, "attack")
    words = attack["output"].split()
    assert "uid-1000" in words and "gid-1000" in words and "groups-" in words, words  # no supplementary groups
    assert "user-pyti" in words, words  # test suites asking who they are get an answer
    assert "ptrace-EPERM" in words and "seize-EPERM" in words, words
    assert "mem-EACCES" in words or "mem-EPERM" in words, words
    # Another uid without CAP_KILL: the agent cannot be signalled at all.
    assert {"kill19-EPERM", "kill15-EPERM", "kill9-EPERM"} <= set(words), words
    assert not any(w.startswith(("wrote-", "renamed-")) for w in words), words
    # The memory limit still held: the agent was running and watching.
    assert attack["status"] == "failed" and attack["failure_class"] == "OOM", json.dumps(attack)[:2000]
    assert "allocated 1.5 GiB" not in attack["output"]
    after = task(res, "after")
    assert after["status"] == "passed" and after["output"].split() == ["clean", "1000"], after
    assert res["status"] == "failed" and r.returncode == 1
    assert leftovers() == []


def test_task_without_timeout_meets_the_job_backstop(pyti, demo, tmp_path):
    forever = py("import time\nwhile True:\n    time.sleep(1000)\n")
    recipe = write_recipe(tmp_path, f"[task:forever]\nrun = {forever}\ntimeout = 0\n")
    r = pyti("run", "--json", "-q", "--recipe", recipe, demo, env={"PYTI_JOB_MAX_S": "3"}, timeout=300)
    res = json.loads(r.stdout)
    assert r.returncode == 3, r.stderr
    assert res["status"] == "error" and res["failure_class"] == "Timeout", res
    assert "pyti: error (Timeout)" in r.stderr and "PYTI_JOB_MAX_S" in r.stderr, r.stderr
    assert leftovers() == []


def test_job_backstop_does_not_cut_timed_tasks(pyti, demo, tmp_path):
    # With every task timed, the backstop is their sum (plus set-up), whatever PYTI_JOB_MAX_S says.
    recipe = write_recipe(tmp_path, "[task:ok]\nrun = sleep 2; echo ok\ntimeout = 60\n")
    r = pyti("run", "--json", "-q", "--recipe", recipe, demo, env={"PYTI_JOB_MAX_S": "1"})
    res = json.loads(r.stdout)
    assert r.returncode == 0 and res["status"] == "passed", r.stderr


@pytest.mark.parametrize("value", ["0", "-5", "soon", "1e12"])
def test_job_max_must_be_a_positive_number(pyti, demo, value):
    r = pyti("run", "--json", "-q", demo, env={"PYTI_JOB_MAX_S": value})
    assert r.returncode == 2 and "PYTI_JOB_MAX_S" in r.stderr, r.stderr


# ---- vm backend: at most these two guest runs (TCG is slow) ----

VM_ATTACK = """
import ctypes, errno, os
def name(n):
    return errno.errorcode.get(n, str(n))
out = ["uid-%d" % os.getuid(), "groups-" + ",".join(map(str, os.getgroups()))]
import pwd
for dev in ("/dev/ttyS0", "/dev/console"):
    try:
        os.open(dev, os.O_WRONLY)
        out.append("open-" + dev)
    except OSError as e:
        out.append("console-" + name(e.errno))
try:
    os.open("/dev/tty", os.O_RDWR)
    out.append("tty-open")
except OSError as e:
    out.append("tty-" + name(e.errno))
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
r = libc.ptrace(16, 1, None, None)
out.append("ptrace-ok" if r == 0 else "ptrace-" + name(ctypes.get_errno()))
try:
    os.kill(1, 19)
    out.append("kill-sent")
except OSError as e:
    out.append("kill-" + name(e.errno))
out.append("user-" + pwd.getpwuid(os.getuid()).pw_name)
print(" ".join(out))
"""


@pytest.fixture(scope="module")
def vm_ready(state_dir):
    if os.geteuid() != 0:
        pytest.skip("qemu:///system set-up needs root")
    if not (Path(state_dir) / "images" / "bookworm" / "manifest.json").exists():
        pytest.skip("no bookworm image in the test state dir (scripts/test builds it)")
    r = subprocess.run([str(REPO / "scripts" / "libvirtd-start")], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"scripts/libvirtd-start failed:\n{r.stderr}"


def test_vm_task_is_not_root_and_cannot_reach_the_console(pyti, vm_ready, demo, tmp_path):
    recipe = write_recipe(tmp_path, f"""\
        [task:attack]
        run = {py(VM_ATTACK)}
        timeout = 120
        [task:after]
        needs = attack
        run = echo clean
        timeout = 60
        """)
    r = pyti("run", "--backend", "vm", "--json", "-q", "--recipe", recipe, demo, timeout=900)
    res = json.loads(r.stdout)
    attack = task(res, "attack")
    words = attack["output"].split()
    assert "uid-1000" in words and "groups-" in words, words  # no supplementary groups
    assert words.count("console-EACCES") == 2, words
    assert words[words.index("groups-") + 3] in ("tty-ENXIO", "tty-ENOENT"), words
    assert "ptrace-EPERM" in words and "kill-EPERM" in words and "user-pyti" in words, words
    assert attack["status"] == "passed" and task(res, "after")["status"] == "passed", res
    assert r.returncode == 0 and res["status"] == "passed"


# ---- one uid only (an unprivileged caller's ns sandbox): the agent's own walls ----

ONE_UID_ATTACK = """
import ctypes, errno, os, signal
def name(n):
    return errno.errorcode.get(n, str(n))
out = ["uid-%d" % os.getuid()]
caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith(("CapEff", "CapBnd"))]
out.append("caps-" + "-".join(caps))
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
r = libc.ptrace(16, 1, None, None)
out.append("ptrace-ok" if r == 0 else "ptrace-" + name(ctypes.get_errno()))
try:
    open("/proc/1/mem", "r+b")
    out.append("mem-open")
except OSError as e:
    out.append("mem-" + name(e.errno))
for sig in (signal.SIGSTOP, signal.SIGKILL):
    try:
        os.kill(1, sig)  # the kernel drops it: PID 1 of the namespace has no handler
    except OSError as e:
        out.append("kill%d-%s" % (sig, name(e.errno)))
print(" ".join(out), flush=True)
"""


def test_one_uid_agent_is_not_dumpable(tmp_path):
    """Where only one uid can be mapped, tasks share the agent's uid: the agent, PID 1 of its pid
    namespace, still cannot be traced, written or stopped by them (run here as the ns backend runs
    it, with --confine, under unshare). Two walls hold here, and the test sees only their sum: the
    agent is not dumpable, and it has capabilities its tasks lack (the kernel lets a process
    trace only one whose permitted set is a subset of its own)."""
    agent = os.environ.get("PYTI_AGENT", str(Path(os.environ.get("PYTI_BUILD_DIR", REPO / "build"))
                                             / "src" / "agent" / "pyti-agent"))
    unshare = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]
    if subprocess.run([*unshare, "true"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("this host does not allow user+pid namespaces")
    io = tmp_path / "io"
    io.mkdir()
    job = {"job": "one-uid", "dist": "none", "recipe": "one-uid", "backend": "ns", "image": "host",
           "env": {"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"},
           "tasks": [{"name": "attack", "run": py(ONE_UID_ATTACK), "needs": [], "timeout": 60},
                     {"name": "after", "run": "echo clean", "needs": ["attack"], "timeout": 60}]}
    (io / "job.json").write_text(json.dumps(job))
    p = subprocess.run([*unshare, agent, "--io", str(io), "--confine"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    res = json.loads((io / "out" / "results.json").read_text())
    words = task(res, "attack")["output"].split()
    assert "uid-0" in words and "caps-0000000000000000-0000000000000000" in words, words
    assert "ptrace-EPERM" in words and words[3] in ("mem-EACCES", "mem-EPERM"), words
    assert task(res, "attack")["status"] == "passed"
    # The agent was not stopped or killed: it ran the next task and wrote the verdict.
    assert task(res, "after")["status"] == "passed" and task(res, "after")["output"] == "clean\n"
    assert res["status"] == "passed"
    assert leftovers() == []
