"""A small JSON-RPC client and process helpers for the master's tests and bench/ingest: the real
`pyti master` on a loopback port, SQLite or a throwaway PostgreSQL cluster on a unix socket.

Loopback only: urllib with no proxy (a proxy from the environment must never see these calls).
"""
import hashlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RpcError(Exception):
    def __init__(self, err):
        super().__init__(f"{err.get('code')}: {err.get('message')}")
        self.code = err.get("code")
        self.message = err.get("message")
        self.data = err.get("data")


def post(url, body, token=None, ctype="application/json", timeout=60):
    """POST raw bytes; returns (HTTP status, headers, body bytes)."""
    if isinstance(body, str):
        body = body.encode()
    req = urllib.request.Request(url, data=body, method="POST")
    if ctype:
        req.add_header("Content-Type", ctype)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with _opener.open(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class Client:
    def __init__(self, url, token=None):
        self.url = url
        self.token = token
        self.n = 0

    def raw(self, doc, token=...):
        st, _, body = post(self.url, json.dumps(doc), self.token if token is ... else token)
        return st, (json.loads(body) if body else None)

    def call(self, method, params=None, token=..., timeout=60):
        self.n += 1
        doc = {"jsonrpc": "2.0", "method": method, "id": self.n}
        if params is not None:
            doc["params"] = params
        st, _, body = post(self.url, json.dumps(doc), self.token if token is ... else token, timeout=timeout)
        assert st == 200, (st, body)
        r = json.loads(body)
        assert r["jsonrpc"] == "2.0" and r["id"] == self.n, r
        if "error" in r:
            raise RpcError(r["error"])
        return r["result"]


def sha256_hex(s):
    return hashlib.sha256(s.encode()).hexdigest()


class Master:
    """`pyti master` as a real process: start() waits for its "listening ADDR:PORT" line."""

    def __init__(self, pyti, workdir, store, **cfg):
        self.pyti = pyti
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store = store
        self.worker_token = secrets.token_hex(16)
        self.user_token = secrets.token_hex(16)
        self.cfg = {"batch_limit": 20, "body_limit": "1M", **cfg}
        self.proc = None
        self.url = None
        self.log = self.dir / "master.log"

    def write_config(self):
        lines = ["[master]", f"store = {self.store}"]
        lines += [f"{k} = {v}" for k, v in self.cfg.items()]
        lines += ["[tokens]", f"worker = {sha256_hex(self.worker_token)}", f"user = {sha256_hex(self.user_token)}"]
        p = self.dir / "master.ini"
        p.write_text("\n".join(lines) + "\n")
        return p

    def start(self, port=0, extra=()):
        cfg = self.write_config()
        r, w = os.pipe()
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [self.pyti, "--state-dir", str(self.dir / "state"), "master", "--config", str(cfg),
             "--listen", f"127.0.0.1:{port}", "--ready-fd", str(w), *extra],
            stdout=logf, stderr=logf, pass_fds=(w,))
        os.close(w)
        logf.close()
        with os.fdopen(r) as rf:
            line = rf.readline()
        if not line.startswith("listening "):
            self.proc.wait(timeout=10)
            raise AssertionError(f"master did not start ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
        addr = line.split()[1]
        self.port = int(addr.rsplit(":", 1)[1])
        self.url = f"http://{addr}/rpc"
        return self

    def worker(self):
        return Client(self.url, self.worker_token)

    def user(self):
        return Client(self.url, self.user_token)

    def anon(self):
        return Client(self.url, None)

    def kill(self, sig=9):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self):
        self.kill(15)

    def rss_kb(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


class Postgres:
    """A throwaway PostgreSQL cluster on a unix socket only (no TCP), made and started by
    scripts/pg-start, stopped by scripts/pg-stop (as root it belongs to the postgres user)."""

    def __init__(self):
        # its own directory under /tmp: short (a socket path), and reachable by the cluster's user
        self.dir = Path(tempfile.mkdtemp(prefix="pyti-pg-"))
        self.data = self.dir / "data"
        self.conninfo = None

    @staticmethod
    def available():
        return any(Path("/usr/lib/postgresql").glob("*/bin/initdb")) and (os.geteuid() != 0 or _has_user("postgres")
                                                                            or _has_user("nobody"))

    def init(self):
        return self

    def start(self):
        r = subprocess.run([str(REPO / "scripts" / "pg-start"), str(self.dir)], capture_output=True, text=True,
                           timeout=120)
        if r.returncode != 0:
            raise AssertionError(f"scripts/pg-start {self.dir} -> {r.returncode}\n{r.stderr}")
        self.conninfo = r.stdout.strip().splitlines()[-1]
        return self

    def stop(self, mode="fast"):
        subprocess.run([str(REPO / "scripts" / "pg-stop"), str(self.dir)], capture_output=True, timeout=120)

    def url(self):
        return self.conninfo

    def destroy(self):
        subprocess.run([str(REPO / "scripts" / "pg-stop"), str(self.dir), "--rm"], capture_output=True, timeout=120)


def _has_user(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def wait_for(pred, timeout=30, step=0.1):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("timed out")
