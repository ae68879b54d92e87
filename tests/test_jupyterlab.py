"""The widgets work for a person in JupyterLab, not only headless: a real
JupyterLab server, 03_noise_schedule opened in headless Chromium (Debian's
``chromium``, driven by Playwright), all cells run, the timestep slider
rendered as a slider and moved, and the figure redrawn; the explorer's still
(its PNG for pages without widgets) is not shown beside the live view."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import CHROMIUM_ARGS

pytestmark = pytest.mark.browser

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "03_noise_schedule.ipynb"
TOKEN = "musicdiff-test-token"
SERVER_START_S, RUN_ALL_S, REDRAW_S = 90, 300, 60

# The notebook panel's state, read through the app JupyterLab exposes with
# --LabApp.expose_app_in_browser: "error: ..." if a cell failed, "done" when
# every code cell has run and the kernel is idle, "" while it is still going.
RUN_STATE = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const cells = panel.content.widgets.filter(cell => cell.model.type === 'code');
    for (const cell of cells) {
        const error = cell.model.outputs.toJSON().find(output => output.output_type === 'error');
        if (error) return `error: ${error.ename}: ${error.evalue}`;
    }
    const ran = cells.every(cell => cell.model.executionCount !== null);
    return ran && panel.sessionContext.session.kernel.status === 'idle' ? 'done' : '';
}"""
KERNEL_IDLE = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
    return kernel ? kernel.status === 'idle' : false;
}"""
SLIDER = ".jp-OutputArea-output .widget-slider.widget-hslider"
FIGURE = ".jp-OutputArea-output .widget-output img"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """A JupyterLab server on a free localhost port, with a token and its own
    config, runtime, data, settings and workspace folders, serving a copy of
    the notebook (JupyterLab autosaves outputs into the file it runs)."""
    home = tmp_path_factory.mktemp("jupyterlab")
    root = home / "notebooks"
    root.mkdir()
    shutil.copy(NOTEBOOK, root)
    env = {**os.environ, "MUSICDIFF_QUICK": "1", "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    port = free_port()
    log = open(home / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
         "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate"],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(server, url, home / "server.log")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def wait_for_server(server, url, log_path):
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s:\n{log_path.read_text()[-3000:]}")


def wait_for_run_all(page):
    deadline = time.monotonic() + RUN_ALL_S
    while time.monotonic() < deadline:
        state = page.evaluate(RUN_STATE)
        if state == "done":
            return
        assert not state.startswith("error"), f"a cell of {NOTEBOOK.name} failed in JupyterLab: {state}"
        page.wait_for_timeout(500)
    pytest.fail(f"{NOTEBOOK.name} did not finish within {RUN_ALL_S} s in JupyterLab")


def test_timestep_slider_in_jupyterlab(chromium, jupyterlab, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{jupyterlab}/lab/tree/{NOTEBOOK.name}?token={TOKEN}", timeout=60_000)
            page.wait_for_function(KERNEL_IDLE, timeout=120_000, polling=500)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            wait_for_run_all(page)

            slider = page.locator(SLIDER)
            slider.scroll_into_view_if_needed()
            assert slider.count() == 1 and slider.is_visible(), "the timestep slider is not rendered as a widget"
            assert slider.locator(".widget-readout").inner_text() == "250"
            cell = page.locator(".jp-CodeCell").filter(has=page.locator(".widget-hslider"))
            outputs = cell.locator(".jp-Cell-outputArea")
            assert "IntSlider(" not in outputs.inner_text() and "VBox(" not in outputs.inner_text()
            assert page.locator(".widget-output audio").count() == 1
            assert outputs.locator("img").count() == 1  # the live view, and no still of it beside
            before = page.locator(FIGURE).get_attribute("src")

            handle = slider.locator(".noUi-handle")
            handle.focus()
            handle.press("End")  # to the last timestep, t = T - 1
            page.wait_for_function(f"(old) => {{ const img = document.querySelector('{FIGURE}'); "
                                   "return img !== null && img.src !== old; }", arg=before, timeout=REDRAW_S * 1000)
            assert slider.locator(".widget-readout").inner_text() == "999"
            assert page.locator(FIGURE).get_attribute("src").startswith("data:image/png")
        except Exception:
            page.screenshot(path=str(tmp_path / "jupyterlab.png"), full_page=True)
            raise
        finally:
            browser.close()
