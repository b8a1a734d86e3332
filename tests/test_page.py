"""RUN/report.html in a real browser (Debian's headless Chromium): every section renders, every
embedded image decodes, the console stays empty and the page asks the network for nothing."""
import json
import re
import subprocess


from conftest import need_tools

SECTIONS = ("data", "training", "int8", "builds", "bench", "flips")


def open_in_chromium(page, tmp_path) -> dict:
    """{"rendered": [section ids with a height], "broken_images": n, "console": [lines],
    "requests": [URLs the page itself asked for]} of `page` opened from disk."""
    chromium = need_tools("browser", "chromium")["chromium"]
    net = tmp_path / "net.json"
    res = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                          f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
                          "--v=0", f"--log-net-log={net}", "--virtual-time-budget=5000",
                          "--dump-dom", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    body = re.search(r"<body[^>]*>", res.stdout).group(0)
    rendered = re.search(r'data-rendered="([^"]*)"', body)
    broken = re.search(r'data-broken-images="(\d+)"', body)
    log = json.loads(net.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    starts = {e["source"]["id"]: e["params"] for e in log["events"]
              if e["type"] == start and "url" in e.get("params", {})}
    by_page = [p["url"] for p in starts.values()
               if "file://" in str(p.get("network_isolation_key", "")) or
               str(p.get("initiator", "")).startswith("file")]
    return {"rendered": rendered.group(1).split() if rendered else [],
            "broken_images": int(broken.group(1)) if broken else None,
            "console": [ln for ln in res.stderr.splitlines() if ":CONSOLE" in ln],
            "requests": [u for u in by_page if not u.startswith(("file:", "data:"))]}


def test_the_report_page_renders_every_section_offline(exported, tmp_path):
    """train, export and bench each refresh RUN/report.html; after the bench it holds every
    section, its images decode, no console line and no request leaves the page."""
    from edgetl.benchmarking import session
    run, _ = exported
    page = run / "report.html"
    assert page.is_file()                              # written by train, refreshed by export
    session.benchmark(run, runtimes="litert", warmup=1, iters=5, trials=2)
    seen = open_in_chromium(page, tmp_path)
    assert seen["rendered"] == list(SECTIONS), seen
    assert seen["broken_images"] == 0 and seen["console"] == [] and seen["requests"] == [], seen
    text = page.read_text()
    assert "<img" in text and "http://" not in text and "https://" not in text


def test_the_browser_check_sees_a_console_error_and_a_request(tmp_path):
    """The check itself: a page with a console error and a remote image is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><section id=data>x</section><img src='http://127.0.0.1:9/x.png'>"
                   "<script>console.error('boom')</script></body></html>")
    seen = open_in_chromium(bad, tmp_path)
    assert any("boom" in ln for ln in seen["console"])
    assert seen["requests"] == ["http://127.0.0.1:9/x.png"]
