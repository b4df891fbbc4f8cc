"""Drives the pages of examples/browser/ in Debian's headless chromium, for
crates/tusd-rs/tests/browser.rs.

    driver.py uppy --page ORIGIN --endpoint URL --file PATH [--screenshot PNG]
    driver.py tus  --page ORIGIN --endpoint URL --file PATH [--pause-at F]
                   [--throttle BYTES_PER_S] [--chunk-size N] [--download-dir DIR]
    driver.py cors --page ORIGIN --endpoint URL

Prints one JSON object per line on stdout: what the page recorded
(window.tusdExample.events; progress only at every tenth of the file) and
what the driver did. `--pause-at F` clicks Pause once F of the file is sent,
prints {"event": "paused"}, waits for a line on stdin (the test may stop a
node meanwhile), reloads the page and chooses the file again, so that the
page resumes from its stored fingerprint. Exits 0 when the scenario ran to
its end, whatever the page reported; the test judges the events.

Only loopback is contacted: chromedriver is named explicitly, Selenium
Manager stays offline (SE_OFFLINE) and sends no statistics (SE_AVOID_STATS),
and chromium runs with its background networking off.
"""

import argparse
import json
import os
import sys
import tempfile
import time

os.environ["SE_OFFLINE"] = "true"
os.environ["SE_AVOID_STATS"] = "true"

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
# A safety net against a hung page; no scenario comes near it.
DEADLINE_S = 150
POLL_S = 0.05

# No sandbox (the tests run as root), and nothing that talks to the outside:
# no component or safe-browsing updates, no sync, no metrics, no first-run.
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--disable-breakpad",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pings",
    "--password-store=basic",
    "--window-size=1000,800",
]


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def start_browser(download_dir):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument("--user-data-dir=" + tempfile.mkdtemp(prefix="tusd-browser-"))
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": download_dir or tempfile.gettempdir(),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def page_url(args, page):
    url = "%s/%s?endpoint=%s" % (args.page.rstrip("/"), page, args.endpoint)
    if getattr(args, "chunk_size", None):
        url += "&chunkSize=%d" % args.chunk_size
    return url


def throttle(driver, bytes_per_s):
    """Slows uploads so that "mid-way" lasts long enough to act in."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_s,
        },
    )


class Events:
    """Reads the page's recorded events as they come, and prints them."""

    def __init__(self, driver):
        self.driver = driver
        self.seen = 0
        self.tenths = {}

    def reset(self):
        """After a reload the page starts a new list."""
        self.seen = 0

    def poll(self):
        fresh = self.driver.execute_script(
            "return window.tusdExample ? window.tusdExample.events.slice(arguments[0]) : []",
            self.seen,
        )
        self.seen += len(fresh)
        for event in fresh:
            if event["event"] == "progress":
                tenth = event["bytes"] * 10 // max(event["total"], 1)
                if self.tenths.get(event["total"]) == tenth:
                    continue
                self.tenths[event["total"]] = tenth
            print(json.dumps(event), flush=True)
        return fresh

    def until(self, stop, what):
        """Polls until `stop(event)` holds for a new event; returns it."""
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            for event in self.poll():
                if stop(event):
                    return event
            time.sleep(POLL_S)
        status = self.driver.execute_script(
            "const s = document.getElementById('status'); return s ? s.textContent : ''"
        )
        emit("timeout", waiting_for=what, status=status)
        sys.exit(2)


def finished(event):
    return event["event"] in ("success", "error")


def choose_file(driver, selector, path):
    driver.find_element(By.CSS_SELECTOR, selector).send_keys(os.path.abspath(path))


def run_uppy(driver, args):
    driver.get(page_url(args, "uppy.html"))
    events = Events(driver)
    # The Dashboard is drawn by a module script after the page has loaded.
    WebDriverWait(driver, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".uppy-Dashboard-input")
    )
    choose_file(driver, ".uppy-Dashboard-input", args.file)
    driver.find_element(By.CSS_SELECTOR, ".uppy-StatusBar-actionBtn--upload").click()
    events.until(lambda e: e["event"] == "complete", "the upload to complete")
    if args.screenshot:
        # The Dashboard redraws its status bar as "Complete" after the event.
        WebDriverWait(driver, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".uppy-StatusBar.is-complete")
        )
        driver.find_element(By.TAG_NAME, "body").screenshot(args.screenshot)
        emit("screenshot", path=args.screenshot)


def run_tus(driver, args):
    if args.throttle:
        throttle(driver, args.throttle)
    driver.get(page_url(args, "tus.html"))
    events = Events(driver)
    choose_file(driver, "#file", args.file)
    if args.pause_at is not None:
        size = os.path.getsize(args.file)
        events.until(
            lambda e: e["event"] == "progress" and e["bytes"] >= args.pause_at * size
            or finished(e),
            "progress to pause at",
        )
        driver.find_element(By.ID, "pause").click()
        paused = events.until(lambda e: e["event"] == "paused", "the pause")
        emit("waiting", url=paused["url"])
        if not sys.stdin.readline():
            emit("stdin-closed")
            return
        driver.refresh()
        events.reset()
        emit("reloaded")
        choose_file(driver, "#file", args.file)
    last = events.until(finished, "success or failure")
    if last["event"] == "success" and args.download_dir:
        download(driver, args)


def download(driver, args):
    """Clicks the page's link to the finished upload and waits for the file;
    its name is the browser's choice (the server's Content-Disposition)."""
    link = driver.find_element(By.ID, "download")
    link_text = link.text
    link.click()
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        entries = sorted(os.listdir(args.download_dir))
        if entries and not any(e.endswith((".crdownload", ".tmp")) or e.startswith(".") for e in entries):
            emit("downloaded", link=link_text, files=entries)
            return
        time.sleep(POLL_S)
    emit("timeout", waiting_for="the download", files=sorted(os.listdir(args.download_dir)))
    sys.exit(2)


# Creates an upload with fetch() and reads it back with HEAD, reporting what
# the script could read of each answer, or the error fetch() threw.
CORS_PROBE = """
const [endpoint, done] = arguments
const metadata = 'filename ' + btoa('probe.txt')
const read = (r) => ({
  status: r.status,
  location: r.headers.get('Location'),
  offset: r.headers.get('Upload-Offset'),
  length: r.headers.get('Upload-Length'),
  metadata: r.headers.get('Upload-Metadata'),
  resumable: r.headers.get('Tus-Resumable')
})
;(async () => {
  try {
    const created = await fetch(endpoint, {
      method: 'POST',
      headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': '5', 'Upload-Metadata': metadata }
    })
    const post = read(created)
    const head = read(await fetch(post.location, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } }))
    done({ ok: true, post, head })
  } catch (error) {
    done({ ok: false, error: String(error) })
  }
})()
"""


def run_cors(driver, args):
    driver.get(page_url(args, "tus.html"))
    driver.set_script_timeout(30)
    result = driver.execute_async_script(CORS_PROBE, args.endpoint)
    console = [entry["message"] for entry in driver.get_log("browser")]
    emit("cors", origin=driver.execute_script("return location.origin"), console=console, **result)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["uppy", "tus", "cors"])
    parser.add_argument("--page", required=True, help="origin serving examples/browser/")
    parser.add_argument("--endpoint", required=True, help="tusd-rs creation URL")
    parser.add_argument("--file")
    parser.add_argument("--screenshot")
    parser.add_argument("--pause-at", type=float)
    parser.add_argument("--throttle", type=int, help="upload bytes per second")
    parser.add_argument("--chunk-size", type=int)
    parser.add_argument("--download-dir")
    args = parser.parse_args()

    driver = start_browser(args.download_dir)
    try:
        {"uppy": run_uppy, "tus": run_tus, "cors": run_cors}[args.scenario](driver, args)
        emit("done")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
