#!/usr/bin/env python3
"""Drives headless Chromium (Debian `chromium` + `chromium-driver`, through Selenium)
against a live gateway's status page, for crates/rampart/tests/status_page.rs.

Loads the admin listener's `/`, provokes a refusal on the public listener (a GET of a
protected route without credentials: 401), reloads, finds the refusal in the
"Last refusals" table with its reason and request id, checks the CSP header and that
the browser logged no console error (a CSP violation would be one), and saves a
screenshot. Prints one JSON line with what it saw; exits non-zero on any failure.
"""
import argparse
import json
import sys
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--admin", required=True, help="http://host:port of the admin listener")
    ap.add_argument("--refuse", required=True, help="URL answered with a refusal")
    ap.add_argument("--profile-dir", required=True)
    ap.add_argument("--screenshot", required=True)
    a = ap.parse_args()

    head = urllib.request.urlopen(a.admin + "/", timeout=10)
    csp = head.headers.get("Content-Security-Policy", "")
    if not csp.startswith("default-src 'self'"):
        sys.exit(f"unexpected CSP: {csp!r}")

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
        f"--user-data-dir={a.profile_dir}",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.set_page_load_timeout(20)
        driver.get(a.admin + "/")
        if "rampart status" not in driver.title:
            sys.exit(f"unexpected title {driver.title!r}")
        before = driver.find_elements(By.CSS_SELECTOR, "#refusals tr.refusal")

        try:
            urllib.request.urlopen(a.refuse, timeout=10)
            sys.exit("the protected route did not refuse")
        except urllib.error.HTTPError as e:
            status = e.code
            request_id = e.headers.get("x-request-id")
        if not request_id:
            sys.exit("the refusal carried no x-request-id")

        driver.refresh()
        rows = driver.find_elements(By.CSS_SELECTOR, "#refusals tr.refusal")
        if len(rows) != len(before) + 1:
            sys.exit(f"expected {len(before) + 1} refusal rows, saw {len(rows)}")
        first = rows[0]
        cells = [c.text for c in first.find_elements(By.TAG_NAME, "td")]
        reason = first.find_element(By.CSS_SELECTOR, "td.reason").text
        if request_id not in cells:
            sys.exit(f"request id {request_id} not in the newest row {cells}")
        # The stylesheet applied (served by the admin listener, allowed by the CSP).
        border = driver.execute_script(
            "return getComputedStyle(document.querySelector('th')).borderBottomStyle"
        )
        driver.save_screenshot(a.screenshot)
        errors = [
            e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")
        ]
        if errors:
            sys.exit(f"console errors: {errors}")
        print(
            json.dumps(
                {
                    "status": status,
                    "request_id": request_id,
                    "row": cells,
                    "reason": reason,
                    "csp": csp,
                    "th_border": border,
                }
            )
        )
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
