"""Screenshot of a page in headless Chromium after clicking one element, over the DevTools protocol.

``chromium --screenshot`` cannot click; a metadata preview in the Dagster UI opens only after a click
on "[Show Markdown]". Used by ``scripts/screenshot.sh`` when ``CLICK`` is set::

    python scripts/cdp_shot.py --chromium chromium --click "[Show Markdown]" URL OUT.png

Talks to the browser with the ``websockets`` package (installed with dagster-webserver).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import time
import urllib.request
from pathlib import Path

import websockets

#: Finds the leaf element whose whole text is the given one, clicks it, says how many matched.
CLICK_JS = """(text => {
  const hits = [...document.querySelectorAll('body *')]
    .filter(e => e.children.length === 0 && e.textContent.trim() === text);
  if (hits.length) hits[0].click();
  return hits.length;
})(%s)"""


def _page_socket(port: int, wait_s: float = 30.0) -> str:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as reply:
                return next(t["webSocketDebuggerUrl"] for t in json.load(reply) if t["type"] == "page")
        except (OSError, StopIteration, ValueError):
            if time.monotonic() > deadline:
                raise RuntimeError("Chromium's DevTools endpoint did not answer") from None
            time.sleep(0.2)


async def shoot(socket: str, url: str, out: Path, click: str, width: int, height: int, settle_s: float) -> None:
    async with websockets.connect(socket, max_size=2**27) as ws:
        counter = 0

        async def call(method: str, **params) -> dict:
            nonlocal counter
            counter += 1
            await ws.send(json.dumps({"id": counter, "method": method, "params": params}))
            while True:  # skip the events in between
                message = json.loads(await ws.recv())
                if message.get("id") == counter:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message.get("result", {})

        await call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        await call("Page.navigate", url=url)
        found = 0
        deadline = time.monotonic() + settle_s
        while not found and time.monotonic() < deadline:  # the UI renders its data after loading
            await asyncio.sleep(1)
            reply = await call("Runtime.evaluate", expression=CLICK_JS % json.dumps(click), returnByValue=True)
            found = reply.get("result", {}).get("value") or 0
        if not found:
            raise RuntimeError(f"nothing that reads {click!r} on {url} within {settle_s:.0f} s")
        await asyncio.sleep(2)  # the dialog opens and its image decodes
        shot = await call("Page.captureScreenshot", format="png")
        out.write_bytes(base64.b64decode(shot["data"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("out", type=Path)
    ap.add_argument("--click", required=True, help="the whole text of the element to click")
    ap.add_argument("--chromium", default="chromium")
    ap.add_argument("--window", default="1600,1000", help="width,height in pixels")
    ap.add_argument("--port", type=int, default=9333, help="DevTools port")
    ap.add_argument("--settle", type=float, default=60.0, help="seconds to wait for the element")
    args = ap.parse_args()
    width, height = (int(v) for v in args.window.split(","))
    browser = subprocess.Popen([args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                "--hide-scrollbars", f"--window-size={width},{height}",
                                f"--remote-debugging-port={args.port}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        asyncio.run(shoot(_page_socket(args.port), args.url, args.out, args.click, width, height, args.settle))
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait(10)


if __name__ == "__main__":
    main()
