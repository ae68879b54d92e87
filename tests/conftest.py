"""Shared fixtures (real music from the demo set, fetched once into the cache)
and the helpers that several test modules use."""

import importlib
import os
import sys
from pathlib import Path

import pytest
import torch

from musicdiff_nb import DDPMSchedule, SpectrogramConfig, load_music_dataset, spectrograms
from musicdiff_nb.data import decode_audio
from musicdiff_nb.sources import demo_folder

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"
# Small enough for fast CPU tests: 128 bins x 64 frames (0.5 s at 16 kHz)
TEST_SPEC = SpectrogramConfig.preset("small", frames=64)
ATOL = 1e-5
DIFFUSERS_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


# Debian's chromium, driven by Playwright without a browser download (the tests marked "browser")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium():
    """The browser's path; skipped without it, except under CI=1, where it fails."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must `apt-get install chromium` (see .ci/run)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="session")
def demo_files():
    return sorted(demo_folder().glob("*.ogg"))


@pytest.fixture(scope="session")
def demo_music(demo_files):
    """20 s of three different demo themes at 22.05 kHz, [3, samples]."""
    waves = [decode_audio(str(path), 22050)[30 * 22050: 50 * 22050] for path in demo_files[:3]]
    return torch.stack(waves)


@pytest.fixture(scope="session")
def demo_clips():
    """Real spectrogram clips [6, 2, 128, 64] (3 clips of 2 songs)."""
    ds = load_music_dataset("demo", TEST_SPEC, max_songs=2, max_clips_per_song=3, keep_audio=False)
    return spectrograms(ds)


# -- helpers --------------------------------------------------------------------

def error_of(capsys, *argv) -> str:
    """What the command prints when it refuses ``argv``: one line on stderr, exit status 1."""
    from musicdiff_nb.__main__ import main
    with pytest.raises(SystemExit) as exit:
        main(list(argv))
    err = capsys.readouterr().err
    assert exit.value.code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def benchmark(name: str):
    """The script benchmarks/NAME.py as a module (its folder on the path, for the modules it shares)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    module = importlib.import_module(name)
    assert Path(module.__file__).parent == BENCHMARKS, f"{name} is {module.__file__}, not the benchmark's script"
    return module


def randomize(model):
    """Give the zero-initialised layers weights, as training would."""
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return model


def dpm_solver_oracle(beta_schedule, prediction_type, spacing, steps):
    """diffusers' DPM-Solver++(2M), set to visit our timesteps."""
    from diffusers import DPMSolverMultistepScheduler  # 4 s to import: only in the tests that compare with it

    theirs = DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_schedule=DIFFUSERS_SCHEDULE[beta_schedule], beta_start=1e-4, beta_end=0.02,
        prediction_type=prediction_type, algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
        lower_order_final=True, final_sigmas_type="zero", timestep_spacing="trailing")
    timesteps = DDPMSchedule(beta_schedule=beta_schedule).timesteps(steps, spacing)
    if spacing == "trailing":
        theirs.set_timesteps(steps)
        assert theirs.timesteps.tolist() == timesteps
    else:  # diffusers' own "leading" differs from DDIM's: hand it ours
        theirs.set_timesteps(timesteps=timesteps)
    return theirs


def assert_close_for_its_size(got, expected, t):
    """Within ATOL of the numbers' size (at least 1): float32 keeps 7 digits, and
    an epsilon model's error becomes x0's times 1 / alpha_t (2e4 at cosine's
    t = 999), which DPM-Solver carries into x_t."""
    scale = max(1.0, expected.abs().max().item())
    assert torch.allclose(got, expected, atol=ATOL * scale, rtol=0), (t, (got - expected).abs().max(), scale)
