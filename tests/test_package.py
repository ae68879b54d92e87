"""The package as a newcomer meets it: a fast import."""

import subprocess
import sys


def test_import_does_not_load_datasets():
    """datasets takes seconds to import: only loading data imports it."""
    check = "import musicdiff_nb, sys; assert 'datasets' not in sys.modules, 'import musicdiff_nb imported datasets'"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

