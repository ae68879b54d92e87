"""The series as a site one reads before running it (docs/site/build.py):
the notebooks executed with the quick settings, rendered by Sphinx, and each
page opened in Debian's headless chromium: it renders, its images load, its
audio players hold sound, its math is typeset, and its widgets show their
saved state instead of a widget's text."""

import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "docs" / "site"
sys.path.insert(0, str(SITE))
from stills import replace_widget_views  # noqa: E402  (docs/site is not a package)

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))  # each one a page

BUILD_S = 2400  # seven notebooks at about a minute each, on a loaded 2-core machine
# an image a page may take from elsewhere: the notebooks' "Open in Colab" badge, a link for a reader online
EXTERNAL_IMAGES = ("https://colab.research.google.com/assets/colab-badge.svg",)
PAGE_STATE = """() => ({
    title: document.querySelector('article h1') ? document.querySelector('article h1').innerText : '',
    images: [...document.querySelectorAll('article img')].map(img => ({
        src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth})),
    audio: [...document.querySelectorAll('article audio')].map(audio => ({
        ready: audio.readyState, network: audio.networkState, duration: audio.duration})),
    math: document.querySelectorAll('article mjx-container').length,
    rawMath: document.querySelectorAll('article .math:not(:has(mjx-container))').length,
    text: document.querySelector('article').innerText,
})"""
LOADED = """() => [...document.querySelectorAll('article img')].every(img => img.complete)
    && [...document.querySelectorAll('article audio')].every(audio => audio.readyState >= 1
        || audio.networkState === HTMLMediaElement.NETWORK_NO_SOURCE)"""
TYPESET = "() => window.MathJax && MathJax.startup ? MathJax.startup.promise.then(() => true) : false"


@pytest.mark.slow
def test_widget_stills_from_saved_state():
    """A slider over an audio player, and a finished tqdm bar, as a page shows them: the slider's value, the
    player, the bar at 100 % (never the widget's text, which a page would show for a widget it cannot draw)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in (
        "import ipywidgets as widgets\nfrom musicdiff_nb.viz.widgets import explorer, play\nimport torch",
        "explorer(lambda t: [play(torch.sin(torch.arange(800) * t / 100), 8000)],"
        " t=widgets.IntSlider(value=3, min=1, max=9, description='t'))",
        "from tqdm.auto import tqdm\nfor _ in tqdm(range(5), desc='train'): pass")])
    NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True).execute()

    assert replace_widget_views(nb) == 2
    assert "widgets" not in nb.metadata
    slider, bar = (output["data"]["text/html"] for cell in nb.cells[1:] for output in cell.outputs
                   if "text/html" in output.get("data", {}))
    assert "t = 3 (1 to 9)" in slider and slider.count("<audio") == 1 and "data:audio/wav;base64," in slider
    bar = bar.replace("\u2007", " ")  # tqdm pads with figure spaces
    assert "train: 100%" in bar and '<progress value="5.0" max="5.0">' in bar and "5/5" in bar


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built with the quick settings, served on a free loopback port."""
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run([sys.executable, str(SITE / "build.py"), "--mode", "quick", "--out", str(out)],
                           capture_output=True, text=True, timeout=BUILD_S)
    assert build.returncode == 0, f"the site did not build:\n{build.stdout[-3000:]}\n{build.stderr[-5000:]}"
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(out / "html")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def local_only(route):
    """Pages are read offline here: a request off this machine (a CDN, a badge) is refused."""
    if urlparse(route.request.url).hostname in ("127.0.0.1", None) or route.request.url.startswith("data:"):
        route.continue_()
    else:
        route.abort()


def first_heading(path: Path) -> str:
    source = nbformat.read(path, as_version=4).cells[0].source
    return next(line[2:].strip() for line in source.splitlines() if line.startswith("# "))


@pytest.mark.slow
@pytest.mark.browser
def test_every_notebook_page_in_chromium(chromium, site, tmp_path):
    from playwright.sync_api import sync_playwright

    assert NOTEBOOKS, "no notebook in notebooks/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.route("**/*", local_only)
        try:
            page.goto(f"{site}/index.html")
            links = page.eval_on_selector_all("article table a", "found => found.map(a => a.href)")
            assert links == [f"{site}/{path.stem}.html" for path in NOTEBOOKS], \
                f"the index lists {links}, not every notebook of notebooks/"
            for path in NOTEBOOKS:
                check_page(page, f"{site}/{path.stem}.html", path)
        except Exception:
            page.screenshot(path=str(tmp_path / "site.png"), full_page=True)
            raise
        finally:
            browser.close()


def check_page(page, url, notebook: Path):
    page.goto(url)
    page.wait_for_function(LOADED, timeout=60_000, polling=250)
    page.evaluate(TYPESET)
    state = page.evaluate(PAGE_STATE)
    name = notebook.name
    assert first_heading(notebook) in state["title"], f"{name}: the page's title is {state['title']!r}"
    local = [image for image in state["images"] if image["src"] not in EXTERNAL_IMAGES]
    assert local, f"{name}: the page shows no figure"
    broken = [image["src"][:80] for image in local if image["width"] == 0]
    assert not broken, f"{name}: images that did not load: {broken}"
    assert all(image["src"].startswith(("http://127.0.0.1", "data:image/")) for image in local), \
        f"{name}: an image from elsewhere: {[image['src'] for image in local]}"
    silent = [audio for audio in state["audio"] if not audio["duration"] > 0]
    assert not silent, f"{name}: audio players without sound: {silent}"
    cells = nbformat.read(notebook, as_version=4).cells
    code, markdown = ("".join(cell.source for cell in cells if cell.cell_type == kind) for kind in ("code", "markdown"))
    if any(player in code for player in ("Audio(", "play(", "explorer(")):
        assert state["audio"], f"{name}: the notebook plays audio, the page has no player"
    if "$" in markdown:
        assert state["math"] > 0 and state["rawMath"] == 0, f"{name}: math not typeset by MathJax"
    for widget_text in ("VBox(", "HBox(", "IntSlider(", "| 0/"):
        assert widget_text not in state["text"], f"{name}: a widget shown as its text {widget_text!r}"
