"""Files a user makes (checkpoints, WAVs, figures) are written atomically, and
checkpoints are read without executing anything from them."""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from pathlib import Path

import torch

CHECKPOINT_FORMAT = "musicdiff_nb/1"
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def _read_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; done once, at import
    os.umask(mask)
    return mask


UMASK = _read_umask()


def cache_root() -> Path:
    """Where musicdiff keeps downloads and caches: ``$MUSICDIFF_CACHE`` or ~/.cache/musicdiff."""
    return Path(os.environ.get("MUSICDIFF_CACHE", Path.home() / ".cache" / "musicdiff"))


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Yield a file that replaces ``path`` only once it is complete: write to a
    temporary file beside it, fsync, rename over ``path``, fsync the folder. A
    crash at any point leaves either the old file or the new one, never half
    (a crash may leave the temporary file, ``.NAME.*.tmp``, behind)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes the file private (0600); give it an ordinary file's mode
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be fsynced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def remove_partial_writes(path) -> None:
    """Delete the temporary files that writes of ``path`` killed mid-way left behind."""
    path = Path(path)
    for partial in path.parent.glob(f".{path.name}.*.tmp"):
        partial.unlink(missing_ok=True)


def write_checkpoint(path, state: dict) -> Path:
    remove_partial_writes(path)  # a checkpoint is large: do not let killed saves pile up beside it
    with atomic_write(path) as f:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, f)
    return Path(path)


def read_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain data only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: train one first, "
                                f"e.g. `python -m musicdiff_nb train --out {path.parent}`")
    with open(path, "rb") as f:
        head = f.read(len(ZIP_MAGIC))
    if head and head != ZIP_MAGIC:  # not unpickled at all: a text file or a bare pickle is nothing of ours
        raise ValueError(f"{path} is not a musicdiff_nb checkpoint (not a file that torch.save wrote)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        refused = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line), str(e))
        raise ValueError(f"{path} holds objects other than tensors and plain data, so it was not written by "
                         f"musicdiff_nb; it is refused because loading it could run code ({refused})") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{path} is truncated or corrupt ({str(e) or type(e).__name__}); use an earlier "
                         "checkpoint or train again") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a musicdiff_nb checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    return state


def check_writable_folder(path) -> Path:
    """Refuse an output folder that cannot be made or written, before any work
    is done (it is created later, by the first write)."""
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        what = f"{path} is a file" if existing == path else f"cannot make the folder {path}: {existing} is a file"
        raise NotADirectoryError(f"{what}; choose another output folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write in {existing}: choose another output folder than {path}, "
                              "or fix the folder's permissions")
    return path


TRAINED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "demo.pt"


def trained_checkpoint() -> Path:
    """The checkpoint the package ships: the CPU defaults trained on the demo
    set's training songs for an hour (see checkpoints/README.md beside it)."""
    if not TRAINED_CHECKPOINT.is_file():
        raise FileNotFoundError(f"{TRAINED_CHECKPOINT} is missing: "
                                "reinstall musicdiff_nb (it ships inside the package)")
    return TRAINED_CHECKPOINT
