"""`pyti master` as a real process on a loopback port, on SQLite and on a real PostgreSQL cluster
(started here on a unix socket), driven by a small JSON-RPC client (mrpc.py): the worker cycle by
hand, submit/status/results, JSON-RPC 2.0 to the letter (batches, notifications, errors), tokens,
body limits, fencing of stale leases, kill -9 of the master, two masters on one PostgreSQL, and
PostgreSQL stopped and started under a running master."""
import base64
import hashlib
import json
import os
import secrets
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, missing
from mrpc import Master, Postgres, RpcError, post, wait_for

ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(scope="module")
def pg_cluster():
    if not Postgres.available():
        missing("PostgreSQL (Debian's postgresql) is not installed")
    pg = Postgres().init().start()
    yield pg
    pg.destroy()


def new_pg_db(pg):
    name = "t" + secrets.token_hex(6)
    subprocess.run(["psql", pg.url(), "-q", "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return pg.url().replace("dbname=pyti", f"dbname={name}")


@pytest.fixture(params=ENGINES)
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "pyti.db")
    return new_pg_db(request.getfixturevalue("pg_cluster"))


@pytest.fixture
def master(pyti_bin, tmp_path, store_url):
    ms = []

    def start(**cfg):
        m = Master(pyti_bin, tmp_path / f"m{len(ms)}", store_url, **cfg).start()
        ms.append(m)
        return m

    yield start
    for m in ms:
        m.stop()


def caps():
    return {"images": [{"suite": "bookworm", "python": "3.11"}], "backends": ["ns"], "slots": 2,
            "disk_free": 10 << 30, "mem_free": 4 << 30, "version": "test"}


TASK = {"task": "test", "status": "passed", "failure_class": None, "exit_code": 0, "signal": None, "wall_s": 1.5,
        "cpu_user_s": 1.0, "max_rss_kb": 1000,
        "tests": {"passed": 3, "failed": 0, "skipped": 0, "errors": 0, "xfailed": 0, "xpassed": 0, "total": 3,
                  "no_tests": False, "failures": []},
        "output": "ok", "output_bytes": 2, "output_truncated": False}


def results_doc(dist, tasks):
    return {"job": "x", "dist": dist, "status": "passed", "wall_s": 2.0, "tasks": tasks,
            "tests": {"passed": 3, "failed": 0, "skipped": 0, "errors": 0}}


def test_worker_cycle(master):
    m = master()
    user, w = m.user(), m.worker()
    sub = user.call("submit", {"dists": ["six==1.17.0", "attrs"], "priority": 1})
    assert sub["run_id"].startswith("r") and len(sub["jobs"]) == 2
    hello = w.call("hello", {"name": "test-worker", "capabilities": caps()})
    wid = hello["worker_id"]
    assert wid.startswith("w") and hello["lease_s"] > hello["heartbeat_s"] > 0
    got = w.call("claim", {"worker_id": wid, "max": 1, "wait_s": 0})["jobs"]
    assert len(got) == 1
    j = got[0]
    assert j["attempt"] == 1 and len(j["lease"]) == 32 and j["config"]["dist"] == "six==1.17.0"
    assert j["run_id"] == sub["run_id"]
    lease = {"job_id": j["job_id"], "attempt": j["attempt"], "lease": j["lease"]}
    hb = w.call("heartbeat", {**lease, "progress": {"task": "install", "i": 1, "n": 3}})
    assert hb["cancel"] is False and hb["lease_expires_in_s"] > 0
    for t in ("install", "test"):
        assert w.call("report", {**lease, "task": t, "result": {**TASK, "task": t}}) == {"stored": True}
    # idempotent per job + attempt + task
    assert w.call("report", {**lease, "task": "test", "result": {**TASK, "task": "test"}}) == {"stored": True}
    blob = b"results of six\n" * 10
    sha = hashlib.sha256(blob).hexdigest()
    up = {"sha256": sha, "size": len(blob), "data": base64.b64encode(blob).decode()}
    assert w.call("upload", up) == {"stored": True}
    assert w.call("upload", up) == {"stored": True}  # already present is not an error
    # what the table cannot check, the handlers and the store do: nothing of it is stored
    bad_calls = [
        ("report", {**lease, "task": "import", "result": {**TASK, "task": "other"}}, -32602, None),
        ("upload", {**up, "sha256": "0" * 64}, -32602, None),
        ("upload", {**up, "size": len(blob) + 1}, -32602, "size"),
        ("upload", {**up, "data": up["data"][:-1]}, -32602, "data"),
        ("finish", {**lease, "status": "passed", "results": results_doc("six", [TASK]),
                    "artefacts": [{"name": "junit.xml", "sha256": "1" * 64, "size": 3}]}, -32004, None),
    ]
    for meth, params, code, param in bad_calls:
        with pytest.raises(RpcError) as e:
            w.call(meth, params)
        assert e.value.code == code, (meth, e.value.message)
        if param:
            assert e.value.data == {"param": param}
        if code == -32004:
            assert e.value.data == {"missing": ["1" * 64]}
    res = results_doc("six==1.17.0", [{**TASK, "task": "install"}, {**TASK, "task": "test"}])
    fin = w.call("finish", {**lease, "status": "passed", "failure_class": None, "results": res,
                            "artefacts": [{"name": "results.json", "sha256": sha, "size": len(blob)}]})
    assert fin == {"state": "done"}
    anon = m.anon()
    st = anon.call("status", {"run_id": sub["run_id"]})
    states = {x["job_id"]: x["state"] for x in st["jobs"]}
    assert states == {sub["jobs"][0]: "done", sub["jobs"][1]: "queued"}
    assert st["run"]["counts"].get("done") == 1
    rs = anon.call("results", {"run_id": sub["run_id"]})
    done = [x for x in rs["jobs"] if x["job_id"] == j["job_id"]][0]
    assert done["verdict"] == "passed" and done["results"]["dist"] == "six==1.17.0"
    shown = anon.call("show", {"id": j["job_id"]})["job"]
    tasks = shown["attempts"][0]["tasks"]
    assert sorted(t["task"] for t in tasks) == ["install", "test"]  # no duplicate from the repeat
    runs = anon.call("runs", {"limit": 5})["runs"]
    assert runs[0]["run_id"] == sub["run_id"]
    # the log: one line an event, with the ids
    log = m.log.read_text()
    assert f"claim worker={wid} " in log and f"job={j['job_id']} attempt=1" in log
    assert f"finish job={j['job_id']} attempt=1 status=passed" in log


def test_discover_and_http(master):
    m = master()
    doc = m.anon().call("rpc.discover")
    assert doc == json.loads((REPO / "docs" / "openrpc.json").read_text())
    # every method of the document answers something other than "method not found"
    for meth in doc["methods"]:
        st, r = m.anon().raw({"jsonrpc": "2.0", "method": meth["name"], "params": {}, "id": 1})
        assert st == 200 and r.get("error", {}).get("code") != -32601, (meth["name"], r)
    base = m.url.rsplit("/", 1)[0]
    st, _, _ = post(base + "/other", "{}")
    assert st == 404
    import urllib.request
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(m.url, timeout=10)
    assert e.value.code == 405 and e.value.headers["Allow"] == "POST"
    st, _, _ = post(m.url, "{}", ctype="text/plain")
    assert st == 415


def err_of(body):
    r = json.loads(body)
    assert r["jsonrpc"] == "2.0" and "result" not in r
    return r["error"]["code"], r["id"]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_bad_requests_store_nothing(master):
    m = master()
    u = m.url
    assert err_of(post(u, b'{"jsonrpc": "2.0", "method": "runs", "id": ')[2]) == (-32700, None)
    assert err_of(post(u, b"\xff\xfe")[2]) == (-32700, None)
    assert err_of(post(u, b"")[2]) == (-32700, None)
    assert err_of(post(u, b"[]")[2]) == (-32600, None)
    assert err_of(post(u, b"[" * 200000)[2]) == (-32700, None)  # deeper than the parser goes
    assert err_of(post(u, b'{"jsonrpc":"2.0","method":"runs","params":{"limit":1e999},"id":1}')[2]) == (-32700, None)
    assert err_of(post(u, b'{"jsonrpc":"2.0","method":"runs","params":{"limit":99999999999999999999},"id":1}')[2])[0] \
        == -32700
    assert err_of(post(u, b'{"jsonrpc":"2.0","method":"runs","id":1}\x00garbage')[2]) == (-32700, None)
    assert err_of(post(u, rb'{"jsonrpc":"2.0","method":"runs","params":{"dist":"\u00e9\ud800"},"id":1}')[2]) \
        == (-32700, None)  # a lone surrogate is not Unicode
    assert err_of(post(u, b'{"jsonrpc": "1.0", "method": "runs", "id": 4}')[2]) == (-32600, 4)
    assert err_of(post(u, b'{"jsonrpc": "2.0", "method": "nope", "id": "x"}')[2]) == (-32601, "x")
    assert err_of(post(u, b'{"jsonrpc": "2.0", "method": "runs", "params": [1], "id": 1}')[2]) == (-32602, 1)
    sub = {"jsonrpc": "2.0", "method": "submit", "params": {"dists": ["six"]}, "id": 1}
    hello = {"jsonrpc": "2.0", "method": "hello", "params": {"name": "x", "capabilities": {}}, "id": 1}
    # unauthenticated: no token, a wrong one, the wrong kind
    for doc, tok in ((sub, None), (sub, "wrong-token-0123456789"), (sub, m.worker_token), (hello, None),
                     (hello, m.user_token), (hello, m.worker_token + "x")):
        st, _, body = post(u, json.dumps(doc), token=tok)
        assert st == 200 and err_of(body) == (-32000, 1), (doc["method"], tok)
    assert "refused peer=127.0.0.1 unauthorized=1 invalid=0" in m.log.read_text()
    # oversized: refused from Content-Length, before the body is read
    st, _, body = post(u, b" " * (2 << 20), token=m.user_token)
    assert st == 413 and err_of(body)[0] == -32005
    assert json.loads(body)["error"]["data"]["limit"] == 1 << 20
    # a client that waits for 100 Continue is answered before it sends anything
    import socket
    with socket.create_connection(("127.0.0.1", m.port), timeout=10) as sk:
        sk.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 10000000\r\nExpect: 100-continue\r\n\r\n")
        head = b""
        while b"-32005" not in head:
            chunk = sk.recv(65536)
            if not chunk:
                break
            head += chunk
    assert head.startswith(b"HTTP/1.1 413") and b'"code":-32005' in head, head[:300]
    # a batch over the configured limit (20)
    st, _, body = post(u, json.dumps([sub] * 21), token=m.user_token)
    assert err_of(body)[0] == -32005
    # a bad recipe is refused with its line
    st, r = m.user().raw({**sub, "params": {"dists": ["six"], "recipe": "[task:x]\nrun = a\ncolour = red\n"}})
    assert r["error"]["code"] == -32602 and "recipe:3" in r["error"]["message"]
    # nothing of the above was stored
    assert m.anon().call("runs")["runs"] == []
    assert "hello" not in [l.split()[1] for l in m.log.read_text().splitlines() if len(l.split()) > 1]
    # the master is still up and well
    assert m.proc.poll() is None
    assert m.user().call("submit", {"dists": ["six"]})["run_id"]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_batches_and_notifications(master):
    m = master()
    u = m.url
    n = {"jsonrpc": "2.0", "method": "submit", "params": {"dists": ["six"]}}  # a notification: runs, no answer
    st, _, body = post(u, json.dumps(n), token=m.user_token)
    assert st == 204 and body == b""
    st, _, body = post(u, json.dumps([n, n]), token=m.user_token)
    assert st == 204 and body == b""
    assert len(m.anon().call("runs")["runs"]) == 3
    batch = [{"jsonrpc": "2.0", "method": "runs", "params": {"limit": 1}, "id": "a"}, n, 1,
             {"jsonrpc": "2.0", "method": "status", "params": {"run_id": "r0000000000000000"}, "id": "b"},
             {"jsonrpc": "2.0", "method": "nope"},
             {"jsonrpc": "2.0", "method": "rpc.discover", "id": None}]
    st, _, body = post(u, json.dumps(batch), token=m.user_token)
    r = json.loads(body)
    assert st == 200 and isinstance(r, list) and len(r) == 4
    assert r[0]["id"] == "a" and len(r[0]["result"]["runs"]) == 1
    assert r[1] == {"jsonrpc": "2.0", "error": r[1]["error"], "id": None} and r[1]["error"]["code"] == -32600
    assert r[2]["id"] == "b" and r[2]["error"]["code"] == -32003
    assert r[3]["id"] is None and r[3]["result"]["openrpc"]
    assert len(m.anon().call("runs")["runs"]) == 4


def test_stale_lease_refused(master):
    m = master(lease_s=5, heartbeat_s=1)
    user, w = m.user(), m.worker()
    run = user.call("submit", {"dists": ["six"]})
    wid = w.call("hello", {"name": "a", "capabilities": caps()})["worker_id"]
    j1 = w.call("claim", {"worker_id": wid, "max": 1})["jobs"][0]
    old = {"job_id": j1["job_id"], "attempt": 1, "lease": j1["lease"]}
    # the lease is not renewed: after it expires a claim returns the job as attempt 2
    time.sleep(5.5)
    wid2 = w.call("hello", {"name": "b", "capabilities": caps()})["worker_id"]
    j2 = w.call("claim", {"worker_id": wid2, "max": 1, "wait_s": 2})["jobs"][0]
    assert j2["job_id"] == j1["job_id"] and j2["attempt"] == 2 and j2["lease"] != j1["lease"]
    for meth, extra in (("report", {"task": "test", "result": TASK}), ("heartbeat", {}),
                        ("finish", {"status": "passed", "results": results_doc("six", [TASK])})):
        with pytest.raises(RpcError) as e:
            w.call(meth, {**old, **extra})
        assert e.value.code == -32001 and e.value.data == {"job_id": j1["job_id"], "attempt": 1}
    # a forged lease for the current attempt is refused too
    with pytest.raises(RpcError) as e:
        w.call("report", {**old, "attempt": 2, "task": "test", "result": TASK})
    assert e.value.code == -32001
    new = {"job_id": j2["job_id"], "attempt": 2, "lease": j2["lease"]}
    w.call("report", {**new, "task": "test", "result": TASK})
    assert w.call("finish", {**new, "status": "passed", "results": results_doc("six", [TASK])}) == {"state": "done"}
    shown = m.anon().call("show", {"id": j1["job_id"]})["job"]
    assert [len(a["tasks"]) for a in shown["attempts"]] == [0, 1]  # nothing of the stale attempt stored
    assert "stale-lease method=report job=" in m.log.read_text()
    assert m.anon().call("status", {"run_id": run["run_id"]})["jobs"][0]["state"] == "done"


def test_long_poll_wakes_on_submit(master):
    m = master()
    w = m.worker()
    wid = w.call("hello", {"name": "a", "capabilities": caps()})["worker_id"]
    out = {}

    def claim():
        t0 = time.monotonic()
        out["jobs"] = w.call("claim", {"worker_id": wid, "max": 2, "wait_s": 20})["jobs"]
        out["t"] = time.monotonic() - t0

    th = threading.Thread(target=claim)
    th.start()
    time.sleep(1.0)
    m.user().call("submit", {"dists": ["six"]})
    th.join(30)
    assert len(out["jobs"]) == 1 and 1.0 <= out["t"] < 5, out
    # nothing there: the poll lasts wait_s
    t0 = time.monotonic()
    assert w.call("claim", {"worker_id": wid, "wait_s": 1.5})["jobs"] == []
    assert 1.4 <= time.monotonic() - t0 < 4


def test_kill_master_keeps_reports(master):
    m = master()
    user, w = m.user(), m.worker()
    run = user.call("submit", {"dists": ["six", "attrs"]})
    wid = w.call("hello", {"name": "a", "capabilities": caps()})["worker_id"]
    j = w.call("claim", {"worker_id": wid, "max": 1})["jobs"][0]
    lease = {"job_id": j["job_id"], "attempt": 1, "lease": j["lease"]}
    w.call("report", {**lease, "task": "install", "result": {**TASK, "task": "install"}})
    w.call("report", {**lease, "task": "import", "result": {**TASK, "task": "import"}})
    m.kill(9)
    m2 = master()  # the same store, a new process (and port)
    w2 = m2.worker()
    shown = m2.anon().call("show", {"id": j["job_id"]})["job"]
    assert sorted(t["task"] for t in shown["attempts"][0]["tasks"]) == ["import", "install"]
    # the worker carries on with its lease: a re-sent report is idempotent, the rest is accepted
    w2.call("heartbeat", lease)
    w2.call("report", {**lease, "task": "import", "result": {**TASK, "task": "import"}})
    w2.call("report", {**lease, "task": "test", "result": TASK})
    tasks = [{**TASK, "task": t} for t in ("install", "import", "test")]
    assert w2.call("finish", {**lease, "status": "passed", "results": results_doc("six", tasks)}) == {"state": "done"}
    shown = m2.anon().call("show", {"id": j["job_id"]})["job"]
    assert sorted(t["task"] for t in shown["attempts"][0]["tasks"]) == ["import", "install", "test"]
    st = m2.anon().call("status", {"run_id": run["run_id"]})
    assert sorted(x["state"] for x in st["jobs"]) == ["done", "queued"]


def drain(client, wid, seen, lock, stop):
    """A worker by hand: claim a few, finish each at once, until the queue stays empty."""
    empty = 0
    while empty < 3 and not stop.is_set():
        try:
            jobs = client.call("claim", {"worker_id": wid, "max": 4, "wait_s": 0.3})["jobs"]
        except RpcError as e:
            assert e.code in (-32002, -32006), e
            time.sleep(0.2)
            continue
        empty = empty + 1 if not jobs else 0
        for j in jobs:
            with lock:
                seen.append((j["job_id"], j["attempt"]))
            lease = {"job_id": j["job_id"], "attempt": j["attempt"], "lease": j["lease"]}
            client.call("report", {**lease, "task": "test", "result": TASK})
            assert client.call("finish", {**lease, "status": "passed",
                                          "results": results_doc(j["config"]["dist"], [TASK])}) == {"state": "done"}


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_two_masters_one_postgres(master):
    m1, m2 = master(), master()
    run = m1.user().call("submit", {"dists": [f"pkg{i}" for i in range(200)]})
    seen, lock, stop = [], threading.Lock(), threading.Event()
    threads = []
    for m in (m1, m2):
        c = m.worker()
        wid = c.call("hello", {"name": f"w{m.port}", "capabilities": caps()})["worker_id"]
        threads.append(threading.Thread(target=drain, args=(c, wid, seen, lock, stop)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    stop.set()
    ids = [s[0] for s in seen]
    assert len(ids) == 200 and len(set(ids)) == 200, f"{len(ids)} claims of {len(set(ids))} jobs"
    assert all(a == 1 for _, a in seen)
    st = m2.anon().call("status", {"run_id": run["run_id"]})
    assert st["run"]["counts"] == {"done": 200} or st["run"]["counts"].get("done") == 200
    # both masters served claims
    assert "claim worker=" in m1.log.read_text() and "claim worker=" in m2.log.read_text()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_postgres_restart(master, pg_cluster):
    m = master()
    run = m.user().call("submit", {"dists": ["six"]})
    pg_cluster.stop("fast")
    try:
        with pytest.raises(RpcError) as e:
            m.anon().call("status", {"run_id": run["run_id"]})
        assert e.value.code == -32006 and e.value.data["retry_after_s"] > 0
        with pytest.raises(RpcError) as e:
            m.user().call("submit", {"dists": ["attrs"]})
        assert e.value.code == -32006
    finally:
        pg_cluster.start()
    # the next request reconnects
    st = wait_for(lambda: _try(lambda: m.anon().call("status", {"run_id": run["run_id"]})), timeout=20)
    assert st["jobs"][0]["state"] == "queued"
    assert m.user().call("submit", {"dists": ["attrs"]})["run_id"]
    assert "store-unavailable" in m.log.read_text()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_master_starts_while_postgres_is_down(pyti_bin, tmp_path, store_url, pg_cluster):
    pg_cluster.stop("fast")
    try:
        m = Master(pyti_bin, tmp_path / "m", store_url).start()
        try:
            with pytest.raises(RpcError) as e:
                m.anon().call("runs")
            assert e.value.code == -32006
            pg_cluster.start()
            assert wait_for(lambda: _try(lambda: m.anon().call("runs")), timeout=20) == {"runs": []}
        finally:
            m.stop()
    finally:
        pg_cluster.start()  # a no-op when it runs


def _try(f):
    try:
        return f()
    except RpcError as e:
        if e.code != -32006:
            raise
        time.sleep(0.3)
        return None


def test_config_errors(pyti, tmp_path):
    cfg = tmp_path / "m.ini"
    cfg.write_text("[master]\nlease_s = 60\nheartbeat_s = x\n")
    r = pyti("master", "--config", cfg)
    assert r.returncode == 2 and f"{cfg}:3: bad value for 'heartbeat_s'" in r.stderr
    r = pyti("master", "--listen", "127.0.0.1:99999")
    assert r.returncode == 2 and "bad port" in r.stderr
    r = subprocess.run([os.environ.get("PYTI_BIN", str(REPO / "build/src/cli/pyti")), "master", "hash-token"],
                       input="a-token-of-some-length\n", capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == hashlib.sha256(b"a-token-of-some-length").hexdigest()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_two_clients_exactly_once_sqlite(master):
    m = master()
    run = m.user().call("submit", {"dists": [f"pkg{i}" for i in range(200)]})
    seen, lock, stop = [], threading.Lock(), threading.Event()
    threads = []
    for i in range(2):
        c = m.worker()
        wid = c.call("hello", {"name": f"w{i}", "capabilities": caps()})["worker_id"]
        threads.append(threading.Thread(target=drain, args=(c, wid, seen, lock, stop)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    stop.set()
    ids = [s[0] for s in seen]
    assert len(ids) == 200 and len(set(ids)) == 200, f"{len(ids)} claims of {len(set(ids))} jobs"
    assert m.anon().call("status", {"run_id": run["run_id"]})["run"]["counts"].get("done") == 200


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_slow_down_when_the_store_is_behind(master, store_url):
    """One store handle; SQLite's write lock held from outside: the call that has the handle waits in
    SQLite, the next one gets no handle within slow_down_ms and is told to slow down; once the lock
    is gone both kinds of call go through."""
    import sqlite3
    m = master(store_handles=1, slow_down_ms=300)
    m.user().call("submit", {"dists": ["six"]})  # the schema exists
    db = sqlite3.connect(store_url, isolation_level=None, timeout=30)
    db.execute("BEGIN EXCLUSIVE")
    out = {}

    def first():
        try:
            out["first"] = m.user().call("submit", {"dists": ["attrs"]})
        except RpcError as e:
            out["first"] = e

    th = threading.Thread(target=first)
    th.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    with pytest.raises(RpcError) as e:
        m.user().call("submit", {"dists": ["idna"]})
    assert e.value.code == -32002 and e.value.data == {"retry_after_s": 1}
    assert 0.25 <= time.monotonic() - t0 < 5
    db.execute("ROLLBACK")
    db.close()
    th.join(30)
    assert isinstance(out["first"], dict) and out["first"]["run_id"]
    assert m.user().call("submit", {"dists": ["idna"]})["run_id"]
    assert len(m.anon().call("runs")["runs"]) == 3


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_body_limits_by_token(master):
    m = master(body_limit="4M")
    big = b" " * (2 << 20) + b'{"jsonrpc":"2.0","method":"runs","id":1}'
    # without a token a body can only be for reading: 1 MiB at most
    st, _, body = post(m.url, big)
    assert st == 413 and json.loads(body)["error"]["data"]["limit"] == 1 << 20
    st, _, body = post(m.url, big, token=m.worker_token)
    assert st == 200 and json.loads(body)["result"] == {"runs": []}
    st, _, body = post(m.url, b" " * (5 << 20), token=m.worker_token)
    assert st == 413 and json.loads(body)["error"]["data"]["limit"] == 4 << 20


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_sigterm_answers_long_polls_and_exits(master):
    m = master()
    w = m.worker()
    wid = w.call("hello", {"name": "a", "capabilities": caps()})["worker_id"]
    out = {}

    def claim():
        t0 = time.monotonic()
        out["jobs"] = w.call("claim", {"worker_id": wid, "wait_s": 25})["jobs"]
        out["t"] = time.monotonic() - t0

    th = threading.Thread(target=claim)
    th.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    m.proc.send_signal(15)
    assert m.proc.wait(timeout=15) == 0
    th.join(10)
    assert out["jobs"] == [] and out["t"] < 10 and time.monotonic() - t0 < 10
    assert "stop signal=15" in m.log.read_text()


def test_listen_ipv6(pyti_bin, tmp_path):
    import socket
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    m = Master(pyti_bin, tmp_path / "m", str(tmp_path / "s.db"))
    cfg = m.write_config()
    r, wfd = os.pipe()
    p = subprocess.Popen([pyti_bin, "--state-dir", str(tmp_path / "st"), "master", "--config", str(cfg), "--listen",
                          "[::1]:0", "--ready-fd", str(wfd)], stderr=subprocess.DEVNULL, pass_fds=(wfd,))
    os.close(wfd)
    try:
        line = os.fdopen(r).readline()
        assert line.startswith("listening ::1:"), line
        port = int(line.rsplit(":", 1)[1])
        st, _, body = post(f"http://[::1]:{port}/rpc", '{"jsonrpc":"2.0","method":"runs","id":1}')
        assert st == 200 and json.loads(body)["result"] == {"runs": []}
    finally:
        p.terminate()
        p.wait(10)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_rerun(master):
    m = master()
    user = m.user()
    run = user.call("submit", {"dists": ["six", "attrs"], "priority": 3, "env": {"A": "1"}})
    with pytest.raises(RpcError) as e:
        m.worker().call("rerun", {"run_id": run["run_id"]})
    assert e.value.code == -32000
    with pytest.raises(RpcError) as e:
        user.call("rerun", {"run_id": run["run_id"], "job_id": run["jobs"][0]})
    assert e.value.code == -32602
    again = user.call("rerun", {"run_id": run["run_id"]})
    assert again["run_id"] != run["run_id"] and len(again["jobs"]) == 2
    one = user.call("rerun", {"job_id": run["jobs"][1]})
    assert len(one["jobs"]) == 1
    st = m.anon().call("status", {"run_id": one["run_id"]})
    assert [j["dist"] for j in st["jobs"]] == ["attrs"]
    with pytest.raises(RpcError) as e:
        user.call("rerun", {"run_id": "r0000000000000000"})
    assert e.value.code == -32003
    assert f"rerun run={again['run_id']} of={run['run_id']} jobs=2" in m.log.read_text()
