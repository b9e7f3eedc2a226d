"""The master's web UI in a real browser: Debian's chromium (headless) driven by chromium-driver
and python3-selenium, on pages a real master serves from a real store that a real worker filled by
running real jobs in the ns sandbox. Screenshots of every page go to the test's directory
(PYTI_TEST_OUTPUT, else pytest's tmp_path)."""
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import missing  # noqa: E402
from pkgs import make_demo_project  # noqa: E402
from test_worker import (USER_TOKEN, Master, Worker, all_ended, image_state, submit,  # noqa: E402,F401
                         wait_for, status, cli)

HOSTILE = ('<script>window.__pwned=1</script> "><img src=x onerror="window.__pwned=2"> '
           '\x1b[31mRED\x1b[0m')


def make_hostile(root):
    """A project whose failing test prints markup, an ANSI escape and bytes that are not UTF-8."""
    d = make_demo_project(root, name="pyti_whostile", passing=1, failing=0)
    (d / "tests" / "test_hostile.py").write_text(
        "import sys\n\n\ndef test_markup():\n"
        f"    sys.stdout.write({HOSTILE!r} + '\\n')\n"
        "    sys.stdout.flush()\n"
        "    sys.stdout.buffer.write(b'bad bytes: \\xff\\xfe\\xc0\\n')\n"
        f"    assert False, {HOSTILE!r}\n")
    return d


def browser():
    try:
        from selenium import webdriver
    except ImportError:
        missing("python3-selenium is not installed")
    for exe in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not os.access(exe, os.X_OK):
            missing(f"{exe} is not installed (Debian's chromium and chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000", "--no-proxy-server"):
        opts.add_argument(a)
    from selenium.webdriver.chrome.service import Service
    return webdriver.Chrome(options=opts, service=Service(executable_path="/usr/bin/chromedriver"))


def get(url, accept=None, data=None, headers=None):
    h = dict(headers or {})
    if accept:
        h["Accept"] = accept
    req = urllib.request.Request(url, data=data, headers=h)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def web(pyti_bin, image_state, tmp_path):
    made = []
    store = str(tmp_path / "pyti.db")
    # heartbeats every second: a running job's page changes soon after its task's output does
    m = Master(pyti_bin, image_state, tmp_path, store, lease_s=30, heartbeat_s=1).start()
    made.append(m)
    w = Worker(pyti_bin, image_state, tmp_path, m, "wweb", slots=2).start()
    made.append(w)
    drv = browser()
    shots = Path(os.environ.get("PYTI_TEST_OUTPUT", tmp_path)) / "web-screenshots"
    shots.mkdir(parents=True, exist_ok=True)

    class W:
        master, worker, driver, screens = m, w, drv, shots

        def open(self, path):
            self.driver.get(m.url + path)
            return self.driver

        def shot(self, name):
            self.driver.save_screenshot(str(shots / f"{name}.png"))

    yield W()
    drv.quit()
    for x in reversed(made):
        try:
            x.stop()
        except Exception:
            pass
    for x in made:
        if x.log.exists():
            sys.stderr.write(f"--- {x.log.name}\n{x.log.read_text()[-3000:]}")


def texts(driver, css):
    from selenium.webdriver.common.by import By
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def test_pages_show_the_store(pyti, web, tmp_path):
    from selenium.webdriver.common.by import By
    m = web.master
    pkgs = [make_demo_project(tmp_path / "p", name="pyti_wgood", passing=3, failing=0),
            make_demo_project(tmp_path / "p", name="pyti_wbad", passing=2, failing=1),
            make_hostile(tmp_path / "p")]
    run = submit(pyti, m, tmp_path, pkgs)
    rid = run["run_id"]
    st = wait_for(lambda: all_ended(pyti, m, rid), 600, "3 jobs")
    verdict = {j["job_id"]: j["verdict"] for j in st["jobs"]}
    assert sorted(verdict.values()) == ["passed", "test-failed", "test-failed"], st

    # / : the run, with the store's counts
    d = web.open("/")
    row = d.find_element(By.XPATH, f"//table[@id='runs']//tr[td/a[text()='{rid}']]")
    cells = {c.get_attribute("data-v"): c.text for c in row.find_elements(By.CSS_SELECTOR, "td[data-v]")}
    assert cells["passed"] == "1" and cells["test-failed"] == "2" and cells["build-failed"] == "0", cells
    assert "3 × 1" in row.text
    web.shot("runs")

    # click through to the run: every job, the verdicts the store has
    row.find_element(By.LINK_TEXT, rid).click()
    assert d.current_url.endswith(f"/run/{rid}")
    rows = d.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
    assert {r.get_attribute("id"): r.find_element(By.CSS_SELECTOR, "[data-f=verdict]").text for r in rows} == verdict
    assert d.execute_script("return typeof Chart") == "function"  # Debian's chart.js was served and ran
    assert d.find_element(By.ID, "chart-durations").size["height"] > 0
    web.shot("run")

    # the verdict filter shows only the test failures, the state filter all three done;
    # sorting by distribution, then reversed
    d.find_element(By.CSS_SELECTOR, "#filter-verdict a[href*='verdict=test-failed']").click()
    shown = texts(d, "#jobs tbody tr [data-f=verdict]")
    assert shown == ["test-failed", "test-failed"], shown
    assert d.find_element(By.CSS_SELECTOR, "p.shown").text == "2 of 3 jobs shown"
    d.find_element(By.CSS_SELECTOR, "#filter-state a[href*='state=done']").click()  # both filters
    assert len(texts(d, "#jobs tbody tr")) == 2
    d.find_element(By.CSS_SELECTOR, "#filter-verdict a").click()  # "all" verdicts, still state=done
    assert "state=done" in d.current_url and len(texts(d, "#jobs tbody tr")) == 3
    d.find_element(By.CSS_SELECTOR, "th[data-col=dist] a").click()
    asc = texts(d, "#jobs tbody tr td:nth-child(2)")
    assert asc == sorted(asc) and len(asc) == 3, asc
    d.find_element(By.CSS_SELECTOR, "th[data-col=dist] a").click()
    assert texts(d, "#jobs tbody tr td:nth-child(2)") == asc[::-1]
    web.shot("run-sorted")

    # the hostile job: its markup is text, nothing ran, nothing was injected
    hostile = next(j["job_id"] for j in st["jobs"] if "whostile" in j["dist"])
    d.find_element(By.CSS_SELECTOR, f"a[href='/job/{hostile}']").click()
    assert d.current_url.endswith(f"/job/{hostile}")
    assert d.execute_script("return window.__pwned === undefined")
    assert not d.find_elements(By.CSS_SELECTOR, "main img, main script")
    failed = d.find_element(By.ID, "failed-tests").text
    assert "<script>window.__pwned=1</script>" in failed, failed
    log = d.find_element(By.CSS_SELECTOR, "#log-test + pre, section.log pre.logtext").text
    page = d.find_element(By.TAG_NAME, "main").text
    assert '"><img src=x onerror=' in page and "\u241b[31mRED" in page and "\ufffd" in page, page[-2000:]
    assert log is not None
    # the tasks with their raw data, as the store has them
    job = json.loads(get(m.url + f"/api/job/{hostile}")[2])["job"]
    tasks = job["attempts"][-1]["tasks"]
    trows = d.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in trows] == [t["task"] for t in tasks]
    assert d.find_element(By.ID, "chart-tasks").size["height"] > 0
    # a log line's anchor
    first = d.find_element(By.CSS_SELECTOR, "span.ln a[href$='-L1']")
    first.click()
    assert d.current_url.endswith("-L1")
    web.shot("job-hostile")
    # downloads: an attachment, never a page
    s, h, body = get(m.url + f"/job/{hostile}/artefact/results.json")
    assert s == 200 and h["Content-Disposition"].startswith("attachment") and json.loads(body)["dist"]
    assert h["X-Content-Type-Options"] == "nosniff"
    s, h, body = get(m.url + f"/job/{hostile}/artefact/junit-test.xml")
    assert s == 200 and b"testsuite" in body

    # every page sends the policy that forbids inline scripts
    for path in ("/", f"/run/{rid}", f"/job/{hostile}", "/workers", "/queue", "/dist/x"):
        s, h, _ = get(m.url + path)
        assert "script-src 'self'" in h["Content-Security-Policy"] and "unsafe-inline" not in h[
            "Content-Security-Policy"], (path, h)

    # the distribution's history, the workers, the queue
    d.find_element(By.CSS_SELECTOR, "h1 a[href^='/dist/']").click()
    assert len(d.find_elements(By.CSS_SELECTOR, "#history tbody tr")) == 1
    assert len(d.find_elements(By.CSS_SELECTOR, "#sparkline rect")) == 1
    web.shot("dist")
    d = web.open("/workers")
    assert web.worker.name in d.find_element(By.ID, "workers").text
    web.shot("workers")
    d = web.open("/queue")
    assert d.find_elements(By.CSS_SELECTOR, "#queue tbody tr") == []
    web.shot("queue")

    # JSON twins equal the store's
    s, h, body = get(m.url + f"/run/{rid}", accept="application/json")
    assert s == 200 and h["Content-Type"] == "application/json"
    assert {j["job_id"]: j["verdict"] for j in json.loads(body)["jobs"]} == verdict
    assert json.loads(get(m.url + "/api/runs")[2]) == json.loads(get(m.url + "/api/")[2])

    # rerun: refused without the token and across sites, queued with it (through the form)
    s, _, _ = get(m.url + f"/run/{rid}/rerun", data=b"token=wrong",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert s == 403
    s, _, _ = get(m.url + f"/run/{rid}/rerun", data=f"token={USER_TOKEN}".encode(),
                  headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example",
                           "Sec-Fetch-Site": "cross-site"})
    assert s == 403
    d = web.open(f"/run/{rid}")
    d.find_element(By.CSS_SELECTOR, "form.rerun input[name=token]").send_keys(USER_TOKEN)
    d.find_element(By.CSS_SELECTOR, "form.rerun button").click()
    wait_for(lambda: "/run/" in d.current_url and not d.current_url.endswith(rid), 30, "the new run's page")
    new = d.current_url.rsplit("/", 1)[1]
    s2 = status(pyti, m, new)
    assert s2["run"]["parent"] == rid and len(s2["jobs"]) == 2, s2
    assert sorted(j["dist"] for j in s2["jobs"]) == sorted(j["dist"] for j in st["jobs"] if j["verdict"] != "passed")
    web.shot("rerun")
    # the rerun against its parent: a comparison page, the same as its JSON twin
    wait_for(lambda: all_ended(pyti, m, new), 600, "the rerun")
    d = web.open(f"/run/{new}")
    d.find_element(By.ID, "compare-parent").click()
    assert d.current_url.endswith(f"/compare/{rid}/{new}")
    cmp = json.loads(get(d.current_url, accept="application/json")[2])
    assert d.find_element(By.ID, "regressions").text == str(cmp["regressions"])
    assert len(d.find_elements(By.CSS_SELECTOR, "#pairs tbody tr")) == len(cmp["pairs"]) == 3
    assert d.execute_script("return window.__pwned === undefined")
    web.shot("compare")


def test_live_update(pyti, web, tmp_path):
    """A run page open while its job runs changes as the job ends, without a reload."""
    from selenium.webdriver.common.by import By
    m = web.master
    recipe = ("[recipe]\nname = slow\ndescription = slow\n\n[task:first]\nrun = sleep 8; echo done\n"
              "timeout = 120\n")
    run = submit(pyti, m, tmp_path, [make_demo_project(tmp_path / "p", name="pyti_wlive")], recipe=recipe)
    rid = run["run_id"]
    wait_for(lambda: status(pyti, m, rid)["jobs"][0]["state"] == "leased", 120, "the job leased")
    d = web.open(f"/run/{rid}")
    d.execute_script("window.__same_page = 42")
    assert d.find_element(By.CSS_SELECTOR, "#jobs [data-f=state]").text == "leased"
    web.shot("live-running")
    wait_for(lambda: d.find_element(By.CSS_SELECTOR, "#jobs [data-f=state]").text == "done", 120,
             "the page to show the job done")
    assert d.execute_script("return window.__same_page") == 42  # no reload happened
    assert d.find_element(By.CSS_SELECTOR, '[data-count="done"]').text == "1"
    web.shot("live-done")


def test_live_tail(pyti, web, tmp_path):
    """A running job's page shows its task's last output (the agent's heartbeat, through the worker's
    heartbeat to the store), updated in place, as text."""
    from selenium.webdriver.common.by import By
    m = web.master
    recipe = ("[recipe]\nname = talk\ndescription = talks while it runs\n\n[task:talk]\n"
              "run = for i in $(seq 1 40); do echo \"line-$i <b>x</b>\"; sleep 1; done\ntimeout = 120\n")
    run = submit(pyti, m, tmp_path, [make_demo_project(tmp_path / "p", name="pyti_wtail")], recipe=recipe)
    job = run["jobs"][0]
    wait_for(lambda: status(pyti, m, run["run_id"])["jobs"][0]["state"] == "leased", 120, "the job leased")
    d = web.open(f"/job/{job}")
    d.execute_script("window.__same_page = 7")
    wait_for(lambda: "line-" in d.find_element(By.ID, "live-tail").text, 90, "the live output on the page")
    first = d.find_element(By.ID, "live-tail").text
    assert "<b>x</b>" in first and not d.find_elements(By.CSS_SELECTOR, "#live-tail b")
    wait_for(lambda: d.find_element(By.ID, "live-tail").text != first, 60, "the live output to move on")
    assert d.execute_script("return window.__same_page") == 7
    web.shot("live-tail")
    cli(pyti, m, "cancel", job)


def test_errors_are_pages(web):
    m = web.master
    s, h, body = get(m.url + "/run/rffffffffffffffff")
    assert s == 404 and h["Content-Type"].startswith("text/html") and b"no run" in body
    s, h, body = get(m.url + "/api/job/jffffffffffffffff")
    assert s == 404 and "error" in json.loads(body)
    s, _, _ = get(m.url + "/nope")
    assert s == 404
    s, _, _ = get(m.url + "/static/chart.js")
    assert s == 200
    s, _, _ = get(m.url + "/run/rffffffffffffffff/rerun", data=b"%zz",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert s == 400
