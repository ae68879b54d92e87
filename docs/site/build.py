"""Execute the notebook series and build a static site of it: every figure,
every audio player, the sliders' stills, readable without running anything.

    python docs/site/build.py                 # quick settings (MUSICDIFF_QUICK=1), into build/site
    python docs/site/build.py --mode cpu      # the CPU settings (05 trains for about half an hour)

The notebooks run one by one in order (06 samples from the checkpoint 05
trained) in a fresh folder, OUT/source, so what they write (runs/) stays
there and the committed notebooks stay without outputs. Sphinx with myst-nb
and the book theme renders them into OUT/html; open OUT/html/index.html.
Nothing is fetched: MathJax comes from a package, and widgets are drawn from
their saved state (stills.py), not by the widget manager a CDN would serve.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from sphinx.cmd.build import build_main

SITE = Path(__file__).resolve().parent
ROOT = SITE.parent.parent
sys.path.insert(0, str(SITE))
from stills import replace_widget_views  # noqa: E402  (beside this script, which is not a package)

NOTEBOOKS = "[0-9][0-9]_*.ipynb"
MARKER = ".musicdiff-site"  # in OUT: a folder this script made, so it may replace what is in it
MODES = {"quick": ("the quick settings", "`MUSICDIFF_QUICK=1`: small models trained for seconds"),
         "cpu": ("the CPU settings", "the notebooks' run on a CPU: small models trained for minutes"),
         "gpu": ("the GPU settings", "the seed's workload")}
CELL_TIMEOUT_S = {"quick": 600, "cpu": 3600, "gpu": 3600}


def notebooks(folder: Path = ROOT / "notebooks") -> list[Path]:
    found = sorted(folder.glob(NOTEBOOKS))
    if not found:
        raise FileNotFoundError(f"no notebook matching {NOTEBOOKS} in {folder}")
    return found


def kernel_environment(mode: str) -> dict[str, str]:
    """What the notebooks' kernels inherit: this checkout's package and the settings of ``mode``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("MUSICDIFF_QUICK", None)
    if mode == "quick":
        env["MUSICDIFF_QUICK"] = "1"
    elif mode == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # notebook_settings() picks "cpu" when it sees no GPU
    elif mode == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("error: --mode gpu needs a CUDA GPU; this machine has none (use --mode quick or cpu)")
    return env


def execute(path: Path, folder: Path, env: dict[str, str], timeout: int) -> tuple[nbformat.NotebookNode, float]:
    """Run the notebook at ``path`` top to bottom with ``folder`` as its working
    folder; return it with its outputs and the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(folder)}})
    try:
        client.execute(env=env)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
        raise SystemExit(f"error: {path.name} stopped at a cell (the site is not built):\n{error}") from error
    return nb, time.perf_counter() - start


def write_source(source: Path, mode: str, timeout: int) -> None:
    """Execute every notebook into ``source``, beside the index page and its table of contents."""
    shutil.copy(SITE / "index.md", source / "index.md")
    env = kernel_environment(mode)
    runs = []
    for path in notebooks():
        print(f"executing {path.name} ...", flush=True)
        nb, seconds = execute(path, source, env, timeout)
        replace_widget_views(nb)
        nbformat.write(nb, source / path.name)
        print(f"  {seconds:.0f} s", flush=True)
        runs.append((path.name, title(nb), seconds))
    (source / "contents.md").write_text(contents_table(mode, runs))


def title(nb: nbformat.NotebookNode) -> str:
    """The notebook's title: the first level-1 heading of its first cell."""
    heading = next((line for line in nb.cells[0].source.splitlines() if line.startswith("# ")), None)
    if heading is None:
        raise ValueError("the notebook's first cell has no '# title' line: every notebook opens with its title")
    return heading[2:].strip()


def contents_table(mode: str, runs: list[tuple[str, str, float]]) -> str:
    """The series' table of contents, (file name, title, seconds) a row, and how the pages were made."""
    rows = "\n".join(f"| [{title}]({name}) | {seconds:.0f} s |" for name, title, seconds in runs)
    total = sum(seconds for *_, seconds in runs)
    settings, what = MODES[mode]
    return (f"| notebook | run time |\n| --- | --- |\n{rows}\n\n"
            f"The pages show the notebooks as they ran with {settings} ({what}), on {time.strftime('%Y-%m-%d')}, "
            f"on {machine(mode)}: {total:.0f} s in all.\n")


def machine(mode: str) -> str:
    described = f"{platform.machine()} with {os.cpu_count()} CPU cores"
    if mode == "gpu":
        import torch

        described += f" and a {torch.cuda.get_device_name()}"
    return described


def render(source: Path, html: Path, doctrees: Path, mode: str) -> None:
    banner = (f"These pages ran with {MODES[mode][0]}: their numbers and sounds are those of such runs. "
              "Sliders show a still of their first view; run the notebooks to move them.")
    status = build_main(["-b", "html", "-q", "-W", "--keep-going", "-c", str(SITE), "-d", str(doctrees),
                         "-D", f"html_theme_options.announcement={banner}", str(source), str(html)])
    if status:
        raise SystemExit(f"error: sphinx could not build the site (status {status}); see the messages above")


def prepare(out: Path) -> None:
    """Make ``out``, or check that it is a site this script built (never replace another folder's contents)."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise SystemExit(f"error: {out} is a folder that this script did not make: choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()


def build(out: Path, mode: str = "quick", timeout: int | None = None) -> Path:
    """Execute the series and render it into ``out``/html (the executed notebooks in ``out``/source); a
    failed build leaves the previous site in place. Returns the site's index.html."""
    prepare(out)
    work = Path(tempfile.mkdtemp(prefix="building-", dir=out))
    try:
        (work / "source").mkdir()
        write_source(work / "source", mode, timeout or CELL_TIMEOUT_S[mode])
        render(work / "source", work / "html", work / "doctrees", mode)
        for name in ("source", "html"):
            shutil.rmtree(out / name, ignore_errors=True)
            (work / name).rename(out / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out / "html" / "index.html"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=list(MODES), default="quick",
                        help="the notebooks' settings: quick (default, about a minute each), cpu, or gpu")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site",
                        help="the folder for the site (OUT/html) and the executed notebooks (OUT/source)")
    parser.add_argument("--timeout", type=int, default=None,
                        help="seconds one cell may run (default: 600 quick, 3600 cpu and gpu)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    index = build(args.out.resolve(), args.mode, args.timeout)
    print(f"built {index} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
