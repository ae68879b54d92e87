"""Atomic writes and safe checkpoint loading."""

import contextlib
import os
import pickle
from pathlib import Path

import pytest
import torch

from musicdiff_nb.files import UMASK, atomic_write, check_writable_folder, read_checkpoint, write_checkpoint


class Payload:
    """Unpickling this creates the folder ``marker``: code run from a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "song.wav"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write(b"half of the new")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["song.wav"]


def test_written_files_get_the_ordinary_mode(tmp_path):
    with atomic_write(tmp_path / "a.png") as f:
        f.write(b"png")
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o666 & ~UMASK


def test_a_new_checkpoint_removes_the_partial_writes_of_killed_saves(tmp_path):
    path = tmp_path / "last.pt"
    for stale in (".last.pt.k1l2.tmp", ".last.pt.x9y8.tmp"):
        (tmp_path / stale).write_bytes(b"half a checkpoint")
    (tmp_path / ".other.pt.a1b2.tmp").write_bytes(b"another file's write")
    write_checkpoint(path, {"step": 3})
    assert sorted(os.listdir(tmp_path)) == [".other.pt.a1b2.tmp", "last.pt"]
    assert read_checkpoint(path)["step"] == 3


@pytest.mark.parametrize("write, message", [
    (lambda path, payload: torch.save({"format": "musicdiff_nb/1", "model": payload}, path),  # zip, as torch.save
     "refused because loading it could run code"),
    (lambda path, payload: path.write_bytes(pickle.dumps({"model": payload}, protocol=2)),  # a bare pickle
     "is not a musicdiff_nb checkpoint"),  # refused unread
])
def test_a_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path, write, message):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "last.pt"
    write(path, Payload(marker))
    with pytest.raises(ValueError, match=message):
        read_checkpoint(path)
    assert not marker.exists()
    with contextlib.suppress(RuntimeError):  # a bare pickle runs, then fails torch's format check
        torch.load(path, weights_only=False)  # what an unsafe loader would have done
    assert marker.exists()


def test_damaged_or_foreign_checkpoints_are_named(tmp_path):
    good = write_checkpoint(tmp_path / "good.pt", {"model": {"w": torch.randn(1000)}, "step": 1})
    data = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    for name in ("truncated.pt", "empty.pt"):
        with pytest.raises(ValueError, match=f"{name} is truncated or corrupt"):
            read_checkpoint(tmp_path / name)
    with pytest.raises(ValueError, match="foreign.pt is not a musicdiff_nb checkpoint"):
        read_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*missing.pt: train one first"):
        read_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("text", ["hello world\n", "file_name,labels\na.wav,rock\n", "(\n"])
def test_a_text_file_is_not_a_checkpoint_in_one_line(tmp_path, text):
    (tmp_path / "notes.pt").write_text(text)
    with pytest.raises(ValueError) as error:
        read_checkpoint(tmp_path / "notes.pt")
    assert str(error.value) == (f"{tmp_path / 'notes.pt'} is not a musicdiff_nb checkpoint "
                                "(not a file that torch.save wrote)")


def test_an_output_folder_must_be_makeable_and_writable(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("")
    assert check_writable_folder(tmp_path / "new" / "runs") == tmp_path / "new" / "runs"
    assert not (tmp_path / "new").exists()  # checked, not made
    with pytest.raises(NotADirectoryError, match="a_file is a file; choose another output folder"):
        check_writable_folder(tmp_path / "a_file")
    with pytest.raises(NotADirectoryError, match="cannot make the folder .*a_file/runs: .*a_file is a file"):
        check_writable_folder(tmp_path / "a_file" / "runs")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root writes anywhere: simulate what everyone else gets
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != locked and real_access(p, mode, **kw))
    with pytest.raises(PermissionError, match="cannot write in .*locked: choose another output folder"):
        check_writable_folder(locked / "runs")
