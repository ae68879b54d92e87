"""``torchrun --nproc_per_node=2 -m musicdiff_nb train`` on CPU (gloo) trains
the model one process trains with the same global batch, and only rank 0
writes files and logs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from musicdiff_nb.__main__ import main
from musicdiff_nb.files import read_checkpoint

TRAIN = ["train", "--steps", "6", "--batch-size", "4", "--max-songs", "2", "--max-clips-per-song", "4",
         "--log-every", "1", "--checkpoint-every", "3"]

# Installed as sitecustomize.py, so that every Python process torchrun starts
# records the files under $WATCHED_DIR it opens for writing, renames into
# place or deletes, into $WRITES_DIR/<rank>.json when it exits.
RECORD_WRITES = '''
import atexit, json, os, sys

watched = os.path.abspath(os.environ["WATCHED_DIR"]) + os.sep
written = []


def record(event, args):
    if event == "open":
        path, writes = args[0], bool(args[2] & (os.O_WRONLY | os.O_RDWR))
    elif event in ("os.rename", "os.remove"):
        path, writes = args[1] if event == "os.rename" else args[0], True
    else:
        return
    if writes and isinstance(path, (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(path))
        if path.startswith(watched):
            written.append(path)


@atexit.register
def report():
    name = f"rank{os.environ['RANK']}" if "RANK" in os.environ else f"launcher{os.getpid()}"
    with open(os.path.join(os.environ["WRITES_DIR"], name + ".json"), "w") as f:
        json.dump(written, f)


sys.addaudithook(record)
'''


def torchrun(args, out_dir: Path, hooks: Path, writes: Path) -> subprocess.CompletedProcess:
    (hooks / "sitecustomize.py").write_text(RECORD_WRITES)
    python_path = os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, "WATCHED_DIR": str(out_dir), "WRITES_DIR": str(writes)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "musicdiff_nb", *args, "--out", str(out_dir)],
                          env=env, capture_output=True, text=True, timeout=600)


def assert_same_six_steps(reference, checkpoint):
    """``checkpoint`` holds the 6-step run of ``reference``: its losses and weights, to float tolerance."""
    one, two = read_checkpoint(reference), read_checkpoint(checkpoint)
    assert two["step"] == 6 and two["history"]["step"] == list(range(1, 7))
    assert two["history"]["loss"] == pytest.approx(one["history"]["loss"], rel=1e-4)
    for part in ("model", "ema"):
        for name, tensor in one[part].items():
            torch.testing.assert_close(two[part][name], tensor, rtol=1e-3, atol=1e-4, msg=f"{part} {name}")


@pytest.mark.slow
def test_two_processes_train_what_one_does_and_only_rank_0_writes(tmp_path):
    single, double, hooks, writes = (tmp_path / name for name in ("single", "double", "hooks", "writes"))
    hooks.mkdir()
    writes.mkdir()
    main([*TRAIN, "--out", str(single)])
    result = torchrun(TRAIN, double, hooks, writes)
    assert result.returncode == 0, result.stderr[-4000:]

    assert_same_six_steps(single / "last.pt", double / "last.pt")

    written = {path.stem: json.loads(path.read_text()) for path in writes.glob("*.json")}
    assert {"rank0", "rank1"} <= written.keys()
    assert {Path(path).name for path in written.pop("rank0")} >= {"last.pt", "loss.png", "run.yaml"}
    assert all(paths == [] for paths in written.values()), written  # rank 1 and the launcher wrote nothing
    assert sorted(path.name for path in double.iterdir()) == ["last.pt", "loss.png", "run.yaml"]
    assert result.stdout.count("training a DiT") == 1 and result.stdout.count("done: 6 steps") == 1


@pytest.mark.slow
def test_two_processes_streaming_their_shards_from_disk_train_what_one_does_in_memory(tmp_path):
    single, double, hooks, writes = (tmp_path / name for name in ("single", "double", "hooks", "writes"))
    hooks.mkdir()
    writes.mkdir()
    main([*TRAIN, "--no-stream", "--out", str(single)])
    result = torchrun([*TRAIN, "--stream"], double, hooks, writes)
    assert result.returncode == 0, result.stderr[-4000:]
    assert_same_six_steps(single / "last.pt", double / "last.pt")


def with_steps(steps: int) -> list[str]:
    args = list(TRAIN)
    args[args.index("--steps") + 1] = str(steps)
    return args


@pytest.mark.slow
def test_a_run_started_on_two_processes_resumes_on_one(tmp_path):
    """2 processes train 3 steps, 1 process resumes to 6: the run 1 process trains in 6 steps."""
    single, resumed, hooks, writes = (tmp_path / name for name in ("single", "resumed", "hooks", "writes"))
    hooks.mkdir()
    writes.mkdir()
    main([*with_steps(6), "--out", str(single)])
    result = torchrun(with_steps(3), resumed, hooks, writes)
    assert result.returncode == 0, result.stderr[-4000:]
    assert read_checkpoint(resumed / "last.pt")["step"] == 3
    main([*with_steps(6), "--out", str(resumed)])

    assert_same_six_steps(single / "last.pt", resumed / "last.pt")
