"""Loads a page in Debian's Chromium through Playwright, JavaScript off, every host but
127.0.0.1 unresolvable, and prints what a test checks, as JSON: the console's errors and
warnings, failed requests and error statuses (anything the page tried to load and could
not), the org chart's nodes, the sparklines and their points, and whether the page holds
a script. With a second argument, saves a full-page screenshot there.

    python3 page_check.py http://127.0.0.1:9464/accounts/acme [shot.png]
"""
import json
import sys

from playwright.sync_api import sync_playwright

ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def main():
    url = sys.argv[1]
    shot = sys.argv[2] if len(sys.argv) > 2 else None
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(java_script_enabled=False, viewport={"width": 1100, "height": 900})
        page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} {r.failure}"))
        page.on("response", lambda r: errors.append(f"status {r.status}: {r.url}") if r.status >= 400 else None)
        page.goto(url, wait_until="load")
        points = [len((el.get_attribute("points") or "").split()) for el in page.locator("svg.spark polyline").all()]
        result = {
            "errors": errors,
            "title": page.title(),
            "nodes": page.locator("ul.tree .node").count(),
            "sparks": page.locator("svg.spark").count(),
            "points": sum(points),
            "bands": sorted({c for el in page.locator("ul.tree .node").all() for c in (el.get_attribute("class") or "").split() if c in ("green", "yellow", "red")}),
            "scripts": page.locator("script").count(),
            "alerts": page.locator(".alert").count(),
        }
        if shot:
            page.screenshot(path=shot, full_page=True)
        browser.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
