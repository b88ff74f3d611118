"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

Run by tests/dashboard.rs, which starts the simulator, processors, sink, push and the API
(serving the page) on free ports and passes their addresses and tokens:

    python dashboard_test.py --page http://127.0.0.1:PORT/ --ws ws://127.0.0.1:PORT/ws \
        --screenshot docs/dashboard.png --failure-screenshot /tmp/dashboard-failure.png
    (tokens in STRIKEFLOW_DASHBOARD_TOKEN and, optionally, STRIKEFLOW_DASHBOARD_PUSH_TOKEN)

The page must: load without a script error, sign in with the pasted token, fill the option
chain, change a chain cell within seconds as new ticks flow (updating the rows in place,
not re-rendering them), draw candles on the chart canvas, draw the moneyness series, draw
an indicator, load history from the REST API with a token it accepts, and reconnect and
resume after a dropped connection. A token push accepts but the API does not must still
give a live chain. Each step has a deadline; the first step that misses it fails the run
with what the page showed, its console, and a screenshot of the failure.

Chromium: STRIKEFLOW_CHROMIUM, else `chromium` on PATH (./dev installs Debian's package).
Playwright's own browser downloads are never used.
"""

import argparse
import json
import os
import shutil
import sys
import time
import urllib.parse

from playwright.sync_api import sync_playwright

UP = (38, 166, 154)  # candle colours of api/static/charts.js
DOWN = (239, 83, 80)
ATM = (240, 180, 41)  # the ATM bucket's line, and the first indicator line


def log(*args):
    print(*args, file=sys.stderr, flush=True)


class Failed(Exception):
    pass


def wait_for(page, what, timeout_s, probe, interval_s=0.1):
    """Polls probe() until it returns a truthy value; raises Failed naming `what`."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout_s}s waiting for {what}")
        page.wait_for_timeout(interval_s * 1000)


CHAIN_STATE_JS = """() => {
  const rows = [...document.querySelectorAll('#chain tbody tr')];
  const ltps = rows.flatMap(r => [...r.querySelectorAll('td[data-field="ltp"]')]);
  const numeric = ltps.filter(td => /\\d/.test(td.textContent)).length;
  return {
    rows: rows.length,
    ltps: ltps.length,
    numeric,
    spot: document.querySelector('[data-summary="spot"]').textContent,
    atmRows: document.querySelectorAll('#chain tbody tr.atm').length,
    itmCells: document.querySelectorAll('#chain tr.ce-itm td[data-side="CE"], #chain tr.pe-itm td[data-side="PE"]').length,
    status: document.getElementById('status').dataset.state,
  };
}"""

MARK_ROWS_JS = """() => {
  const cells = {};
  document.querySelectorAll('#chain tbody tr').forEach((tr, i) => {
    tr.__sfMark = i + 1;
    tr.querySelectorAll('td[data-field]').forEach(td => {
      cells[`${tr.dataset.strike}/${td.dataset.side}/${td.dataset.field}`] = td.textContent;
    });
  });
  return cells;
}"""

CHANGED_JS = """(before) => {
  const changed = [];
  let unmarked = 0;
  document.querySelectorAll('#chain tbody tr').forEach(tr => {
    if (!tr.__sfMark) unmarked += 1;
    tr.querySelectorAll('td[data-field]').forEach(td => {
      const key = `${tr.dataset.strike}/${td.dataset.side}/${td.dataset.field}`;
      if (key in before && before[key] !== td.textContent) changed.push([key, before[key], td.textContent]);
    });
  });
  return {changed, unmarked};
}"""

# Counts pixels close to each colour over every canvas of a chart container.
PIXELS_JS = """([selector, colours]) => {
  const counts = colours.map(() => 0);
  for (const canvas of document.querySelectorAll(selector + ' canvas')) {
    if (!canvas.width || !canvas.height) continue;
    const ctx = canvas.getContext('2d');
    if (!ctx) continue;
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] < 200) continue;
      colours.forEach(([r, g, b], k) => {
        if (Math.abs(data[i] - r) < 8 && Math.abs(data[i + 1] - g) < 8 && Math.abs(data[i + 2] - b) < 8) counts[k] += 1;
      });
    }
  }
  return counts;
}"""


def sign_in(page, page_url, ws_url, token):
    url = f"{page_url}?{urllib.parse.urlencode({'ws': ws_url})}"
    page.goto(url, wait_until="load")
    page.wait_for_selector("#signin:not([hidden])", timeout=10_000)
    page.fill("#token", token)
    page.click("#signin-button")
    wait_for(page, "the push connection to go live after signing in", 20,
             lambda: page.evaluate("document.getElementById('status').dataset.state") == "live")
    if page.is_visible("#signin"):
        raise Failed("the sign-in form is still shown while push is live")


def wait_chain_filled(page):
    def filled():
        s = page.evaluate(CHAIN_STATE_JS)
        ok = s["rows"] >= 3 and s["numeric"] >= 0.8 * s["ltps"] and any(c.isdigit() for c in s["spot"])
        return s if ok else None

    try:
        return wait_for(page, "the option chain to fill", 45, filled)
    except Failed as e:
        raise Failed(f"{e}; the page shows {page.evaluate(CHAIN_STATE_JS)}") from None


def wait_cell_change(page, before, what, timeout_s=10):
    t0 = time.monotonic()
    result = wait_for(page, what, timeout_s, lambda: (lambda r: r if r["changed"] else None)(
        page.evaluate(CHANGED_JS, before)))
    return result, time.monotonic() - t0


def run(args, token, push_only_token):
    summary = {}
    executable = os.environ.get("STRIKEFLOW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not executable:
        raise Failed("no Chromium: set STRIKEFLOW_CHROMIUM or install Debian's chromium (./dev up does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        summary["browser"] = browser.version
        context = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
        page = context.new_page()
        errors, console = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        try:
            t0 = time.monotonic()
            sign_in(page, args.page, args.ws, token)
            log(f"signed in after {time.monotonic() - t0:.1f}s")

            state = wait_chain_filled(page)
            summary["chain"] = state
            log(f"chain filled after {time.monotonic() - t0:.1f}s: {state}")
            if state["atmRows"] != 1:
                raise Failed(f"exactly one ATM row is highlighted, found {state['atmRows']}")
            if state["itmCells"] == 0:
                raise Failed("no in-the-money side is shaded")

            before = page.evaluate(MARK_ROWS_JS)
            changed, took = wait_cell_change(page, before, "a chain cell to change as new ticks flow")
            if changed["unmarked"]:
                raise Failed(f"{changed['unmarked']} chain rows were re-created instead of updated in place")
            summary["first_change_s"] = round(took, 2)
            summary["changed_cells"] = len(changed["changed"])
            log(f"{len(changed['changed'])} cells changed within {took:.2f}s, e.g. {changed['changed'][:3]}")

            bars = wait_for(page, "two candles on the chart", 45,
                            lambda: (lambda n: n if n >= 2 else None)(page.evaluate("strikeflow.candles.barCount")))
            pixels = wait_for(page, "candles drawn on the chart canvas", 10,
                              lambda: (lambda c: c if c[0] + c[1] > 20 else None)(
                                  page.evaluate(PIXELS_JS, ["#candles", [UP, DOWN]])))
            summary["candles"] = {"bars": bars, "up_pixels": pixels[0], "down_pixels": pixels[1]}
            log(f"candles at {time.monotonic() - t0:.1f}s: {summary['candles']}")

            wait_for(page, "moneyness points", 45, lambda: page.evaluate("strikeflow.moneyness.pointCount") > 0)
            atm = wait_for(page, "the ATM moneyness line drawn", 10,
                           lambda: (lambda c: c if c[0] > 20 else None)(page.evaluate(PIXELS_JS, ["#moneyness", [ATM]])))
            summary["moneyness"] = {"points": page.evaluate("strikeflow.moneyness.pointCount"), "atm_pixels": atm[0]}
            log(f"moneyness at {time.monotonic() - t0:.1f}s: {summary['moneyness']}")

            indicators = wait_for(page, "an indicator drawn (a checked indicator with a line)", 45, lambda: page.evaluate(
                "(() => { const on = [...document.querySelectorAll('#indicators input:checked')].map(i => i.dataset.indicator);"
                " return on.length && strikeflow.candles.lines.size ? on : null; })()"))
            summary["indicators"] = indicators
            summary["indicator_choices"] = page.evaluate("document.querySelectorAll('#indicators input').length")
            log(f"indicators drawn at {time.monotonic() - t0:.1f}s: {indicators}")

            rest = wait_for(page, "the REST history answer", 15,
                            lambda: (lambda s: s if s != "unknown" else None)(page.evaluate("strikeflow.state.rest")))
            summary["history"] = page.evaluate("document.getElementById('history-note').textContent")
            if rest != "ok":
                raise Failed(f"the API refused a token meant for it: {summary['history']}")

            # A dropped connection: the page reconnects and resumes every channel with `since`.
            chain_channel = page.evaluate("strikeflow.state.channels.chain")
            page.evaluate("strikeflow.push.drop()")
            wait_for(page, "the page to notice the dropped connection", 5,
                     lambda: page.evaluate("document.getElementById('status').dataset.state") != "live"
                     or page.evaluate("strikeflow.push.reconnects") > 0)
            wait_for(page, "the connection to be live again", 15,
                     lambda: page.evaluate("document.getElementById('status').dataset.state") == "live")
            resumed = wait_for(page, "the chain re-subscribed", 10, lambda: page.evaluate(
                "(ch) => { const s = strikeflow.push.subscribed.get(ch); return s ? {recovered: s.recovered ?? null} : null; }",
                chain_channel))
            if resumed["recovered"] is None:
                raise Failed("the chain was re-subscribed without `since` after the drop")
            before = page.evaluate(MARK_ROWS_JS)
            _, took = wait_cell_change(page, before, "a chain cell to change after reconnecting")
            summary["resumed"] = {"recovered": resumed["recovered"], "change_s": round(took, 2)}
            log(f"resumed at {time.monotonic() - t0:.1f}s: {summary['resumed']}")

            # A fuller chart for the screenshot, if it comes soon and the run is not already
            # slow (not a condition of the test).
            try:
                budget = min(20, max(0, 45 - (time.monotonic() - t0)))
                wait_for(page, "30 candles", budget, lambda: page.evaluate("strikeflow.candles.barCount") >= 30, 0.5)
            except Failed:
                pass
            page.wait_for_timeout(700)  # let the last flashes fade
            page.screenshot(path=args.screenshot)
            shown = page.evaluate("[strikeflow.candles.barCount, document.querySelector('[data-summary=ts]').textContent]")
            log(f"screenshot at {time.monotonic() - t0:.1f}s: {shown[0]} candles, chain as of {shown[1]} IST")
            summary["screenshot"] = args.screenshot
            if errors:
                raise Failed(f"script errors on the page: {errors}")
        except Exception:
            failure = args.failure_screenshot
            try:
                page.screenshot(path=failure)
                log(f"screenshot of the failure: {failure}")
            except Exception as e:  # noqa: BLE001 - best effort
                log(f"no failure screenshot: {e}")
            log(f"page errors: {errors}\nconsole: {console[-20:]}")
            raise
        finally:
            context.close()

        if push_only_token:
            # A push token the API does not accept: the live chain still works, history is
            # reported unavailable instead of breaking the page.
            context = browser.new_context(viewport={"width": 1200, "height": 800})
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            sign_in(page, args.page, args.ws, push_only_token)
            wait_chain_filled(page)
            rest = wait_for(page, "the REST refusal to be noticed", 30,
                            lambda: (lambda s: s if s != "unknown" else None)(page.evaluate("strikeflow.state.rest")))
            if rest != "refused":
                raise Failed(f"a push-only token was accepted by the API ({rest})")
            summary["push_only"] = page.evaluate("document.getElementById('history-note').textContent")
            if errors:
                raise Failed(f"script errors on the page with a push-only token: {errors}")
            context.close()
        browser.close()
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page", required=True, help="the dashboard URL (the API's /)")
    ap.add_argument("--ws", required=True, help="push's WebSocket URL")
    ap.add_argument("--screenshot", required=True, help="where to save the screenshot")
    ap.add_argument("--failure-screenshot", required=True, help="where to save the page when a step fails")
    args = ap.parse_args()
    token = os.environ.get("STRIKEFLOW_DASHBOARD_TOKEN")
    if not token:
        sys.exit("STRIKEFLOW_DASHBOARD_TOKEN is not set")
    started = time.monotonic()
    try:
        summary = run(args, token, os.environ.get("STRIKEFLOW_DASHBOARD_PUSH_TOKEN"))
    except Failed as e:
        log(f"FAILED: {e}")
        sys.exit(1)
    summary["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
