"""The notebooks as files: committed without outputs, each opening the same
way, each cell short. (Running them is nbmake's job: ``pytest --nbmake notebooks``.)"""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SERIES = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
COLAB = "https://colab.research.google.com/github/musicdiff/musicdiff/blob/main/notebooks/{}.ipynb"
MAX_CELL_LINES = 30


def load(name):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_the_series_is_complete():
    """Numbered 01, 02, ... without a gap, from data to conditioning."""
    assert [name[:2] for name in SERIES] == [f"{i:02d}" for i in range(1, len(SERIES) + 1)], SERIES
    assert SERIES[0] == "01_data" and "07_conditioning" in SERIES


@pytest.mark.parametrize("name", SERIES)
def test_committed_without_outputs(name):
    nb = load(name)
    nbformat.validate(nb)
    for cell in code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip the outputs before committing"
    assert "widgets" not in nb.metadata, f"{name}: saved widget state; strip the outputs before committing"
    ids = [cell.get("id") for cell in json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]]
    assert None not in ids and len(set(ids)) == len(ids), f"{name}: every cell needs its own id"


@pytest.mark.parametrize("name", SERIES)
def test_opening(name):
    """Title, Colab badge and what you will learn; then a setup cell that
    installs only on Colab (and fetches fresh package lists where the demo
    music is used: it comes from `apt-get download`); then the settings."""
    nb = load(name)
    head = nb.cells[0]
    assert head.cell_type == "markdown" and head.source.startswith(f"# {name[:2]} ")
    assert COLAB.format(name) in head.source and "What you will learn" in head.source
    setup = nb.cells[1].source
    assert 'if "google.colab" in sys.modules:' in setup
    assert 'pip install -q --no-deps "git+https://github.com/musicdiff/musicdiff"' in setup
    sources = "\n".join(cell.source for cell in code_cells(nb))
    assert ("apt-get -qq update" in setup) == ('"demo"' in sources), f"{name}: apt-get update where the demo is used"
    assert "import musicdiff_nb" in sources or "from musicdiff_nb" in sources
    assert re.search(r"settings = notebook_settings\((source=SOURCE|conditioned=True)?\)", sources)
    assert "print(settings.describe())" in sources


@pytest.mark.parametrize("name", SERIES)
def test_cells_are_short(name):
    """A cell a learner reads at once: up to ~30 lines (a figure of its own, a `def`);
    what several notebooks share belongs in the package."""
    for cell in code_cells(load(name)):
        lines = [line for line in cell.source.splitlines() if line.strip()]
        assert len(lines) <= MAX_CELL_LINES, f"{name}: a {len(lines)}-line cell; split it or move shared code " \
                                             f"to the package:\n{cell.source}"
        assert not re.search(r"^\s*class ", cell.source, re.M), f"{name}: classes belong in the package"


def as_script(nb) -> str:
    """The code cells as one Python script; shell (!) and magic (%) lines become ``pass``."""
    lines = [re.sub(r"^(\s*)[!%].*", r"\1pass", line) for cell in code_cells(nb) for line in cell.source.splitlines()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", SERIES)
def test_every_name_a_notebook_imports_or_assigns_is_used(name):
    """ruff's pyflakes rules over the notebook's code: no unused import, no undefined name."""
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select", "F",
                           "--output-format", "concise", "--stdin-filename", f"{name}.py", "-"],
                          input=as_script(load(name)), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_mode_is_chosen_in_a_notebook():
    """Small settings come from MUSICDIFF_QUICK=1 only, never from an edited cell."""
    for name in SERIES:
        sources = "\n".join(cell.source for cell in code_cells(load(name)))
        assert not re.search(r"notebook_settings\([^)]*(mode|[\"'])", sources), f"{name} chooses a mode"
        assert "os.environ" not in sources and "%env" not in sources


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")), ids=lambda path: path.stem)
def test_ends_with_exercises(path):
    """2-3 numbered "Try this" exercises, each saying what to expect."""
    last = nbformat.read(path, as_version=4).cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## Try this"), f"{path.stem}: end with exercises"
    exercises = re.split(r"^\d\. ", last.source, flags=re.M)[1:]
    assert 2 <= len(exercises) <= 3 and all("Expect" in text for text in exercises)
