"""What the browser tests share: Debian's Chromium driven by Playwright, a JupyterLab of their
own on a free port with a token, and a screenshot when a step fails."""

import contextlib
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import free_ports
from playwright.sync_api import expect, sync_playwright

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/lib/chromium/chromium"))
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SECONDS = 1000  # Playwright's timeouts are in milliseconds
# Every wait, clicks' and expect()'s alike: JupyterLab loads slowly on a busy CI machine.
WAIT = 30 * SECONDS
expect.set_options(timeout=WAIT)


@contextlib.contextmanager
def chromium():
    """A headless Chromium, or a failure that says how to install one."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"No Chromium at {CHROMIUM}: the browser test drives Debian's Chromium. Install it "
            "with `apt-get install chromium` (as root), or set CHROMIUM to a Chromium binary."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def new_page(browser):
    """A page in a fresh browser context (no cookies, no storage), closed afterwards."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT)
    try:
        yield page
    finally:
        context.close()


@contextlib.contextmanager
def jupyter_lab(cwd, state, config_path=(), environment=None):
    """(base URL, token) of a JupyterLab started in `cwd` with this checkout's .venv, with
    settings and workspaces of its own under `state`; `config_path` adds Jupyter config
    folders, `environment` more variables. Its log is `state`/jupyter.log."""
    settings = state / "settings"
    settings.mkdir(parents=True)
    bin_dir = Path(sys.executable).parent
    config_path = [*map(str, config_path), os.environ.get("JUPYTER_CONFIG_PATH", "")]
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "JUPYTER_CONFIG_PATH": os.pathsep.join(filter(None, config_path)),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
        **(environment or {}),
    }
    port, token = free_ports(), secrets.token_hex(16)
    log = state / "jupyter.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [
                bin_dir / "jupyter",
                "lab",
                "--allow-root",
                "--no-browser",
                f"--port={port}",
                "--ServerApp.ip=127.0.0.1",
                f"--IdentityProvider.token={token}",
            ],
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_server(server, f"{url}/api/status?token={token}", log)
        yield url, token
    finally:
        stop(server)


def wait_for_server(server, status_url, log, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError):
            with urllib.request.urlopen(status_url, timeout=5) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    pytest.fail(f"JupyterLab did not answer in {seconds} s:\n{log.read_text()[-3000:]}")


def stop(server):
    """Stop JupyterLab (it shuts its kernels down), or kill its whole session if it hangs."""
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, 9)
        server.wait()


@contextlib.contextmanager
def screenshot_on_failure(page, path):
    """A failure inside saves a screenshot of `page` at `path`, and its message says where."""
    try:
        yield
    except Exception as error:
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=path, full_page=True)
        raise AssertionError(f"{error}\nscreenshot of the page: {path}") from error


def artifacts(tmp_path):
    """Where a test's screenshots go: BROWSER_TEST_ARTIFACTS if set (CI keeps it), else tmp."""
    return Path(os.environ.get("BROWSER_TEST_ARTIFACTS") or tmp_path)
