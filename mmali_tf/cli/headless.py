"""Headless Chromium through chromedriver's W3C WebDriver HTTP API (standard library only).

    with HeadlessChromium(profile_dir) as browser:
        browser.get("http://127.0.0.1:8000/index.html")
        result = browser.run_async("return await window.mmali.ready;")
        browser.screenshot("page.png")

chromedriver listens on a free loopback port; Chromium runs headless with a throw-away profile,
no background networking and a host resolver that maps every name except 127.0.0.1 to nothing,
so a page cannot reach outside this machine. Both run in their own process group, which
`close()` kills whatever state they are in. Debian packages: `chromium chromium-driver`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--force-device-scale-factor=1",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binaries() -> tuple[str, str]:
    """Paths of (chromium, chromedriver); FileNotFoundError naming the Debian packages."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        raise FileNotFoundError("chromium and chromedriver not found; install them with "
                                "`apt-get install -y chromium chromium-driver`")
    return chromium, driver


class HeadlessChromium:
    """One headless Chromium session; every call is bounded by `timeout` seconds."""

    def __init__(self, profile_dir: str | os.PathLike, timeout: float = 120.0,
                 window: tuple[int, int] = (1100, 820)) -> None:
        chromium, driver = find_binaries()
        self.timeout = timeout
        profile = Path(profile_dir)
        profile.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self._log = open(profile / "chromedriver.log", "wb")
        self._driver = subprocess.Popen(
            [driver, f"--port={port}", "--allowed-ips=127.0.0.1"], stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)
        self._base = f"http://127.0.0.1:{port}"
        self.session = None
        try:
            self._wait_ready()
            args = [*CHROMIUM_ARGS, f"--user-data-dir={profile / 'profile'}",
                    f"--window-size={window[0]},{window[1]}"]
            caps = {"browserName": "chrome",
                    "goog:chromeOptions": {"binary": chromium, "args": args},
                    "timeouts": {"script": int(timeout * 1000), "pageLoad": int(timeout * 1000)}}
            reply = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
            self.session = reply["sessionId"]
        except BaseException:
            self.close()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._driver.poll() is not None:
                raise RuntimeError(f"chromedriver exited with code {self._driver.returncode}")
            try:
                if self._call("GET", "/status", timeout=2).get("ready"):
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"chromedriver not ready after {self.timeout:.0f} s")

    def _call(self, method: str, path: str, body: Any = None, timeout: float | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self._base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout + 10) as reply:
                return json.loads(reply.read() or b"{}").get("value")
        except urllib.error.HTTPError as error:
            value = json.loads(error.read() or b"{}").get("value", {})
            raise RuntimeError(f"WebDriver {method} {path}: {value.get('error')}: "
                               f"{str(value.get('message', '')).splitlines()[0:1]}") from None

    def _session_call(self, method: str, path: str, body: Any = None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url: str) -> None:
        """Navigate to `url` and wait for the load event."""
        self._session_call("POST", "/url", {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """Run synchronous JavaScript (a function body; `arguments` holds `args`)."""
        return self._session_call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def run_async(self, body: str, *args: Any) -> Any:
        """Run the body of an async function (it may `await`; `args` is its argument list)."""
        script = ("const done = arguments[arguments.length - 1];"
                  f"(async (args) => {{ {body} }})(Array.from(arguments).slice(0, -1))"
                  ".then(done, (e) => done({__error: String(e && e.stack || e)}));")
        result = self._session_call("POST", "/execute/async", {"script": script,
                                                               "args": list(args)})
        if isinstance(result, dict) and "__error" in result:
            raise RuntimeError(f"page script failed: {result['__error']}")
        return result

    def screenshot(self, path: str | os.PathLike) -> None:
        """Write a PNG screenshot of the viewport to `path`."""
        Path(path).write_bytes(base64.b64decode(self._session_call("GET", "/screenshot")))

    def close(self) -> None:
        """End the session and kill chromedriver's process group (Chromium included)."""
        if self.session is not None:
            try:
                self._call("DELETE", f"/session/{self.session}", timeout=10)
            except (OSError, RuntimeError, urllib.error.URLError):
                pass
            self.session = None
        try:  # the group outlives chromedriver if Chromium is still running
            os.killpg(self._driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._driver.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> "HeadlessChromium":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
