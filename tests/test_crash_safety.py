"""Training survives being killed, as a Colab session is: a process killed
while it saves leaves the previous checkpoint loadable, and a killed run,
resumed by a new process, repeats the uninterrupted run bit for bit (CPU)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from musicdiff_nb.files import read_checkpoint

TRAINING_PROCESS = Path(__file__).with_name("training_process.py")
# a wide model with few tokens: ~60 MB checkpoints, whose saves last long enough to be caught mid-way
BIG_CHECKPOINT = ("--hidden-size", 256, "--patch-size", 32)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")]


@pytest.fixture
def clips_file(demo_clips, tmp_path):
    path = tmp_path / "clips.pt"
    torch.save(demo_clips, path)
    return path


def start_training(clips_file, out_dir, *options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(TRAINING_PROCESS), str(clips_file), str(out_dir),
                             *map(str, options)], stderr=subprocess.PIPE, text=True)


def files_open_for_writing(pid: int, folder: Path) -> list[str]:
    """Files under ``folder`` that process ``pid`` holds open for writing."""
    found = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            flags = int(Path(f"/proc/{pid}/fdinfo/{fd}").read_text().split("flags:")[1].split()[0], 8)
        except (FileNotFoundError, IndexError):
            continue  # closed meanwhile
        if target.startswith(f"{folder}{os.sep}") and flags & (os.O_WRONLY | os.O_RDWR):
            found.append(target)
    return found


def kill_while_saving(process: subprocess.Popen, out_dir: Path):
    """SIGKILL ``process`` in the middle of a checkpoint save, once it has
    completed one save of its own."""
    checkpoint = out_dir / "last.pt"
    before = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the training process ended before it could be killed:\n{process.stderr.read()[-3000:]}")
        saved = checkpoint.exists() and checkpoint.stat().st_mtime_ns != before
        if saved and files_open_for_writing(process.pid, out_dir):
            process.send_signal(signal.SIGKILL)
            process.communicate()
            return
        time.sleep(0.002)
    process.kill()
    pytest.fail("no checkpoint save was seen within 300 s")


def test_a_process_killed_while_saving_keeps_the_previous_checkpoint(clips_file, tmp_path):
    out = tmp_path / "run"
    steps = []
    for _ in range(2):  # the second process resumes from what the first left, and is killed saving too
        process = start_training(clips_file, out, "--steps", 1000, "--checkpoint-every", 1, *BIG_CHECKPOINT)
        kill_while_saving(process, out)
        assert process.returncode == -signal.SIGKILL
        state = read_checkpoint(out / "last.pt")  # raises if the save left it half-written
        assert len(state["history"]["loss"]) == state["step"]
        steps.append(state["step"])
    assert 1 <= steps[0] < steps[1]


def assert_identical(a, b, where="checkpoint"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_a_killed_run_resumed_by_a_new_process_repeats_the_uninterrupted_run(clips_file, tmp_path):
    steps, options = 8, ("--steps", 8, "--checkpoint-every", 4)
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    for out_dir, extra in ((straight, ()), (killed, ("--kill-at", steps // 2 + 2))):
        process = start_training(clips_file, out_dir, *options, *extra)
        _, errors = process.communicate(timeout=300)
        assert process.returncode == (-signal.SIGKILL if extra else 0), errors[-3000:]
    assert read_checkpoint(killed / "last.pt")["step"] == steps // 2  # steps 5 and 6 were lost with the process

    resumed = start_training(clips_file, killed, *options)
    _, errors = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, errors[-3000:]

    a, b = read_checkpoint(straight / "last.pt"), read_checkpoint(killed / "last.pt")
    assert b["step"] == steps and b["history"]["step"] == list(range(1, steps + 1))
    assert b["history"]["loss"] == a["history"]["loss"]  # bit for bit
    for part in ("model", "ema", "optimizer", "rng"):
        assert_identical(a[part], b[part], part)
