"""Editing (editing.py): what is known is kept exactly, what is not is plain sampling, and the
CLI's editing options refuse bad values in one line."""

import pytest
import soundfile as sf
import torch

from musicdiff_nb import DDPMSchedule, DiT, DiTConfig, load_checkpoint, sample, to_spectrogram, to_waveform
from musicdiff_nb.data import decode_audio
from musicdiff_nb.editing import (
    band_mask,
    continuation,
    inpaint,
    interpolate,
    invert,
    loop,
    resampling_path,
    sample_known,
    slerp,
    time_mask,
    variation,
)
from musicdiff_nb.files import trained_checkpoint
from musicdiff_nb.sources import demo_folder
from musicdiff_nb.spectrogram import magnitude_db

from conftest import error_of, randomize

SAMPLERS = [("ddim", 8), ("dpm++", 8), ("ddpm", 12)]


def tiny(prediction_type="sample", cond_dim=0):
    config = DiTConfig.preset("tiny", input_size=(32, 16), cond_dim=cond_dim, prediction_type=prediction_type)
    return randomize(DiT(config)).eval(), DDPMSchedule()


def seed(n=0):
    return torch.Generator().manual_seed(n)


@pytest.fixture(scope="module")
def shipped():
    ckpt = load_checkpoint(trained_checkpoint())
    return ckpt.ema, ckpt.schedule, ckpt.spectrogram


@pytest.fixture(scope="module")
def real_clip(shipped):
    """One window of a demo theme, as the shipped model sees it, [1, 1, 128, 128]."""
    cfg = shipped[2]
    wave = decode_audio(str(sorted(demo_folder().glob("*.ogg"))[0]), cfg.sample_rate)
    return to_spectrogram(wave[30 * cfg.sample_rate:][:cfg.clip_samples], cfg)[None]


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon", "v_prediction"])
@pytest.mark.parametrize("sampler,steps", SAMPLERS)
@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_all_known_is_the_input_and_nothing_known_is_plain_sampling(prediction_type, sampler, steps, guidance_scale):
    model, schedule = tiny(prediction_type, cond_dim=4)
    how = dict(steps=steps, sampler=sampler, cond=torch.tensor([1.0, 0.0, 1.0, 0.0]), guidance_scale=guidance_scale)
    clip = torch.randn(2, 2, 32, 16, generator=seed(5))
    everything, nothing = torch.ones_like(clip, dtype=torch.bool), torch.zeros_like(clip, dtype=torch.bool)
    assert torch.equal(sample_known(model, schedule, clip, everything, generator=seed(), **how), clip)
    plain = sample(model, schedule, 2, generator=seed(), **how)
    assert torch.equal(sample_known(model, schedule, clip, nothing, generator=seed(), **how), plain)
    # and with RePaint's resampling the known part is still exactly the input, the rest new
    resampled = sample_known(model, schedule, clip, time_mask(clip, 0, 8), generator=seed(), jump=2, resample=3,
                             **how)
    assert torch.equal(resampled[..., :8], clip[..., :8]) and not torch.allclose(resampled[..., 8:], clip[..., 8:])


def test_resampling_path():
    assert resampling_path([9, 7, 5, 3, 1]) == [9, 7, 5, 3, 1]
    assert resampling_path([9, 7, 5, 3, 1], jump=1, resample=2) == [9, 7, 9, 7, 5, 7, 5, 3, 5, 3, 1, 3, 1]
    assert resampling_path([9, 7, 5, 3, 1], jump=2, resample=2) == [9, 7, 5, 9, 7, 5, 3, 1, 5, 3, 1]
    with pytest.raises(ValueError, match="resample=0"):
        resampling_path([9, 7], resample=0)


@pytest.mark.parametrize("sampler,steps", SAMPLERS)
def test_variation_ends(sampler, steps):
    model, schedule = tiny()
    clip = torch.randn(2, 2, 32, 16, generator=seed(5))
    assert torch.equal(variation(model, schedule, clip, 0.0, steps=steps, sampler=sampler, generator=seed()), clip)
    plain = sample(model, schedule, 2, steps=steps, sampler=sampler, generator=seed())
    assert torch.equal(variation(model, schedule, clip, 1.0, steps=steps, sampler=sampler, generator=seed()), plain)
    with pytest.raises(ValueError, match=r"strength=1.5: use a value in \[0, 1\]"):
        variation(model, schedule, clip, 1.5)


def test_variations_stay_closer_to_the_clip_the_lower_the_strength(shipped, real_clip):
    model, schedule, _ = shipped
    clips = real_clip.expand(8, -1, -1, -1)
    distance = [(variation(model, schedule, clips, s, steps=20, generator=seed()) - clips).norm().item()
                for s in (0.2, 0.5, 0.9)]
    assert distance == sorted(distance), distance


def test_ddim_inversion_then_decoding_returns_the_clip(shipped):
    """On a clip the shipped model made, within 5 % (relative L2) at 200 DDIM steps (measured: 2.5 %;
    8.6 % at 50 steps, 50 % at 10: the error shrinks with the step)."""
    model, schedule, _ = shipped
    clip = sample(model, schedule, 2, steps=50, generator=seed())
    errors = {}
    for steps in (10, 200):
        decoded = sample(model, schedule, 2, steps=steps, x_T=invert(model, schedule, clip, steps))
        errors[steps] = ((decoded - clip).norm() / clip.norm()).item()
    assert errors[200] < 0.05 and errors[200] < errors[10] / 4, errors


def test_interpolation_ends_and_slerp():
    model, schedule = tiny()
    a, b = torch.randn(2, 2, 32, 16, generator=seed(3))
    path = interpolate(model, schedule, a, b, frames=5, steps=6)
    ends = sample(model, schedule, 2, steps=6, x_T=torch.stack([a, b]))
    assert path.shape == (5, 2, 32, 16) and torch.allclose(path[[0, -1]], ends, atol=1e-5)
    middle = slerp(a, b, 0.5)
    assert torch.allclose(middle.norm(), (a.norm() + b.norm()) / 2, rtol=0.05)  # a straight line would shrink it
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)


def test_inpainted_clip_keeps_its_known_part_after_decoding(shipped, real_clip):
    """The frames outside the span, decoded (Griffin-Lim) and analysed again, stay within 1 dB (mean
    absolute) of the original decoded the same way (measured: 0.44 dB); the span itself is new (6 to 9 dB)."""
    model, schedule, cfg = shipped
    span = time_mask(real_clip, 48, 80)
    out = inpaint(model, schedule, real_clip, span, steps=10, sampler="dpm++", generator=seed())
    assert torch.equal(out[..., :48], real_clip[..., :48]) and torch.equal(out[..., 80:], real_clip[..., 80:])
    heard, original = (magnitude_db(to_spectrogram(to_waveform(x, cfg), cfg), cfg) for x in (out, real_clip))
    known = ~span[0, 0, 0]
    assert (heard - original)[..., known].abs().mean() < 1.0
    assert (heard - original)[..., ~known].abs().mean() > 3.0


def test_band_inpainting_keeps_the_other_bands(shipped, real_clip):
    model, schedule, _ = shipped
    band = band_mask(real_clip, 0, 32)
    out = inpaint(model, schedule, real_clip, band, steps=10, sampler="dpm++", generator=seed())
    assert torch.equal(out[..., 32:, :], real_clip[..., 32:, :]) and not torch.equal(out, real_clip)


def test_continuation_windows_overlap_the_piece():
    model, schedule = tiny()
    window = 16
    first = sample(model, schedule, 2, steps=5, generator=seed())
    assert torch.equal(continuation(model, schedule, window, 2, steps=5, generator=seed()), first)
    piece = continuation(model, schedule, 50, 2, overlap=6, steps=5, generator=seed())
    assert piece.shape == (2, 2, 32, 50) and torch.equal(piece[..., :window], first)
    # each window after the first: its known start is the piece's end, so the piece goes on from there
    known = torch.zeros_like(first)
    known[..., :6] = first[..., -6:]
    generator = seed()
    sample(model, schedule, 2, steps=5, generator=generator)  # the draws of the first window
    second = sample_known(model, schedule, known, time_mask(known, 0, 6), steps=5, generator=generator)
    assert torch.equal(piece[..., window:2 * window - 6], second[..., 6:])
    with pytest.raises(ValueError, match="overlap=16"):
        continuation(model, schedule, 50, overlap=16)


def test_loop_closes_on_its_start():
    model, schedule = tiny()
    piece = loop(model, schedule, 40, 2, steps=5, generator=seed())
    assert piece.shape == (2, 2, 32, 40) and torch.isfinite(piece).all()
    with pytest.raises(ValueError, match="at least 24 frames"):
        loop(model, schedule, 20)


# -- the command line ---------------------------------------------------------------

@pytest.fixture(scope="module")
def audio_files(tmp_path_factory, shipped):
    cfg, folder = shipped[2], tmp_path_factory.mktemp("audio")
    wave = decode_audio(str(sorted(demo_folder().glob("*.ogg"))[0]), cfg.sample_rate)[30 * cfg.sample_rate:]
    sf.write(folder / "three_seconds.wav", wave[:3 * cfg.sample_rate].numpy(), cfg.sample_rate)
    sf.write(folder / "44k.wav", wave[:3 * cfg.sample_rate].numpy(), 44100)
    sf.write(folder / "short.wav", wave[:cfg.sample_rate // 2].numpy(), cfg.sample_rate)
    return folder


def test_cli_editing(tmp_path, audio_files):
    from musicdiff_nb.__main__ import main
    ckpt, clip = str(trained_checkpoint()), str(audio_files / "three_seconds.wav")
    main(["sample", "--checkpoint", ckpt, "-n", "1", "--seconds", "3", "--steps", "5", "--out", str(tmp_path / "a")])
    audio, rate = sf.read(tmp_path / "a" / "piece_000.wav")
    assert rate == 16000 and len(audio) == 3 * 16000
    main(["sample", "--checkpoint", ckpt, "-n", "2", "--inpaint", clip, "--start", "1.0", "--end", "1.4",
          "--steps", "5", "--out", str(tmp_path / "b")])
    audio, _ = sf.read(tmp_path / "b" / "inpainted_001.wav")
    assert len(audio) == len(sf.read(clip)[0])
    out = tmp_path / "c"
    main(["interpolate", clip, "3", "--frames", "3", "--steps", "5", "--checkpoint", ckpt, "--out", str(out)])
    assert len(list(out.glob("interpolation_*.wav"))) == 3 and (out / "interpolation.png").exists()


@pytest.mark.parametrize("options,message", [
    (["--init", "{dir}/three_seconds.wav", "--strength", "1.5"], "--strength 1.5: use a value in [0, 1]"),
    (["--init", "{dir}/44k.wav"], "44k.wav is at 44100 Hz, this model at 16000 Hz: resample it first"),
    (["--init", "{dir}/short.wav"], "short.wav is 0.50 s long: give at least 1.02 s"),
    (["--inpaint", "{dir}/three_seconds.wav", "--start", "2", "--end", "4"],
     "--start 2.0 --end 4.0: outside {dir}/three_seconds.wav (3.00 s long)"),
    (["--inpaint", "{dir}/three_seconds.wav", "--start", "0.5", "--end", "2"], "a span of at most 0.51 s"),
    (["--inpaint", "{dir}/three_seconds.wav"], "--inpaint needs --start and --end"),
    (["--loop"], "--loop needs --seconds"),
    (["--seconds", "0"], "--seconds 0.0: ask for a positive length"),
])
def test_cli_editing_errors(capsys, tmp_path, audio_files, options, message):
    options = [o.format(dir=audio_files) for o in options]
    err = error_of(capsys, "sample", "--checkpoint", str(trained_checkpoint()), *options, "--out", str(tmp_path))
    assert message.format(dir=audio_files) in err
