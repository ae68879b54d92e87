"""The package as a newcomer meets it: a fast import, no import cycles, the
names the README lists, one version, a CI that runs the README's commands."""

import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import musicdiff_nb

PACKAGE = Path(musicdiff_nb.__file__).parent
ROOT = PACKAGE.parent


def test_import_does_not_load_datasets():
    """datasets takes seconds to import: only loading data imports it."""
    check = "import musicdiff_nb, sys; assert 'datasets' not in sys.modules, 'import musicdiff_nb imported datasets'"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def type_checking_imports(tree: ast.Module) -> set[ast.AST]:
    """The imports under ``if TYPE_CHECKING:``, which never run (names for annotations only)."""
    blocks = [node for node in ast.walk(tree) if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    return {inner for block in blocks for node in block.body for inner in ast.walk(node)}


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports, at module level or in a function (not for annotations only)."""
    modules = {".".join(("musicdiff_nb", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): p
               for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = set()
        tree = ast.parse(path.read_text())
        annotations_only = type_checking_imports(tree)
        for node in ast.walk(tree):
            if node in annotations_only:
                continue
            if isinstance(node, ast.Import):
                graph[name] |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                base = ".".join(filter(None, (base, node.module)))
                graph[name] |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                                for alias in node.names}
        graph[name] &= modules.keys()
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done, path = set(), []

    def visit(module):
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        path.append(module)
        cycle = next(filter(None, map(visit, sorted(graph[module]))), None)
        path.pop()
        done.add(module)
        return cycle

    return next(filter(None, map(visit, sorted(graph))), None)


def test_no_import_cycles():
    graph = import_graph()
    assert {"musicdiff_nb.data", "musicdiff_nb.sources", "musicdiff_nb.scores", "musicdiff_nb.viz"} <= graph.keys()
    assert "musicdiff_nb.files" in graph["musicdiff_nb.scores"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_readme_lists_what_the_package_exports():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## The package", 1)[1].split("from musicdiff_nb import (", 1)[1].split(")", 1)[0]
    listed = [name.strip() for line in block.splitlines() for name in line.split("#")[0].split(",") if name.strip()]
    assert listed == musicdiff_nb.__all__
    assert all(hasattr(musicdiff_nb, name) for name in musicdiff_nb.__all__)
    modules = ({p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
               | {f"{p.parent.name}/" for p in PACKAGE.glob("*/__init__.py")})
    tree = readme.split("## The package", 1)[1].split("musicdiff_nb/\n", 1)[1].split("```", 1)[0]
    assert {line.split()[0] for line in tree.splitlines()} == modules  # the README's tree names every module


def test_the_version_is_declared_once():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "musicdiff_nb.__version__"}
    assert importlib.metadata.version("musicdiff_nb") == musicdiff_nb.__version__


# what Colab's image ships and its notebooks' install cell (`pip install --no-deps`) leaves alone: the
# versions the README's "Colab" paragraph ran the notebooks with
COLAB = {"torch": "2.9.1", "torchaudio": "2.9.1", "numpy": "2.0.2", "pandas": "2.2.2", "matplotlib": "3.10.9",
         "ipywidgets": "7.7.1", "tqdm": "4.67.3", "librosa": "0.11.0", "soundfile": "0.13.1", "datasets": "4.0.0"}


def test_the_declared_dependencies_admit_what_colab_ships():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from packaging.requirements import Requirement
    declared = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    refused = [f"{r} refuses Colab's {r.name} {COLAB[r.name]}" for r in declared
               if r.name in COLAB and not r.specifier.contains(COLAB[r.name])]
    assert not refused and {r.name for r in declared} <= set(COLAB), refused


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    commands = [line for section in ("## Install", "## Test")
                for line in readme.split(section, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].splitlines()]
    assert [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if ".venv" in line] == commands
