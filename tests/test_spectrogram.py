import pytest
import torch

from musicdiff_nb import SpectrogramConfig, to_spectrogram, to_waveform
from musicdiff_nb.spectrogram import compress, db, magnitude_db, round_trip_quality, stft


@pytest.mark.parametrize("preset", ["seed", "small"])
def test_complex_round_trip_is_lossless_on_music(demo_music, preset):
    cfg = SpectrogramConfig.preset(preset, sample_rate=22050)
    for wave in demo_music:
        quality = round_trip_quality(wave, cfg)
        assert quality["snr_db"] >= 60, quality
        assert quality["spectral_convergence"] < 1e-3, quality


def test_magnitude_round_trip_runs_and_is_lossier(demo_music):
    complex_cfg = SpectrogramConfig(sample_rate=22050)
    magnitude_cfg = SpectrogramConfig(sample_rate=22050, representation="magnitude")
    wave = demo_music[0, : 5 * 22050]
    griffin_lim = round_trip_quality(wave, magnitude_cfg)
    exact = round_trip_quality(wave, complex_cfg)
    print(f"round trip on music: complex {exact}, magnitude + Griffin-Lim {griffin_lim}")
    # Griffin-Lim recovers the magnitude fairly well but not the waveform (its phase is invented)
    assert griffin_lim["spectral_convergence"] < 0.25
    assert griffin_lim["snr_db"] < exact["snr_db"] - 40
    assert griffin_lim["spectral_convergence"] > 100 * exact["spectral_convergence"]


@pytest.mark.parametrize("representation, channels", [("complex", 2), ("magnitude", 1)])
def test_shapes(representation, channels):
    cfg = SpectrogramConfig.preset("small", representation=representation)
    wave = torch.randn(2, 3, cfg.clip_samples)
    spec = to_spectrogram(wave, cfg)
    assert spec.shape == (2, 3, *cfg.shape) == (2, 3, channels, 128, 128)
    assert cfg.freq_bins % 16 == 0 and cfg.frames % 16 == 0  # divisible by the model's patch sizes
    assert to_waveform(spec, cfg, length=cfg.clip_samples).shape == wave.shape


def test_music_has_about_unit_variance(demo_music):
    for preset in ("seed", "small"):
        cfg = SpectrogramConfig.preset(preset, sample_rate=22050)
        std = to_spectrogram(demo_music, cfg).std().item()
        assert 0.5 < std < 2.0, (preset, std)
        log_mag = to_spectrogram(demo_music, SpectrogramConfig.preset(preset, representation="magnitude"))
        assert abs(log_mag.mean().item()) < 1.0 and 0.5 < log_mag.std().item() < 2.0


def test_complex_representation_is_the_compressed_stft(demo_music):
    cfg = SpectrogramConfig(sample_rate=22050)
    x = compress(stft(demo_music, cfg)[..., :-1, :], cfg.compression) / cfg.scale
    assert torch.allclose(to_spectrogram(demo_music, cfg), torch.stack([x.real, x.imag], dim=-3), atol=1e-5)


def test_magnitude_db_undoes_the_compression(demo_music):
    cfg = SpectrogramConfig(sample_rate=22050)
    wave = demo_music[0, : cfg.clip_samples]
    expected = db(stft(wave, cfg)[:-1].abs())
    assert torch.allclose(magnitude_db(to_spectrogram(wave, cfg), cfg), expected, atol=1e-2)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="representation"):
        SpectrogramConfig(representation="phase")
    with pytest.raises(ValueError, match="n_fft"):
        SpectrogramConfig(n_fft=511)
    with pytest.raises(ValueError, match="expected"):
        to_waveform(torch.zeros(1, 3, 256, 10), SpectrogramConfig())
    with pytest.raises(TypeError, match="floating"):
        to_spectrogram(torch.zeros(100, dtype=torch.int16))


def test_mel_representation_inverts_through_griffin_lim(demo_music):
    cfg = SpectrogramConfig.preset("small", representation="mel", n_fft=1024, sample_rate=22050)
    wave = demo_music[0, : cfg.clip_samples]
    spec = to_spectrogram(wave, cfg)
    assert spec.shape == (1, cfg.n_mels, cfg.frames) and cfg.shape == (1, 128, 128)
    restored = to_waveform(spec, cfg, length=len(wave))
    assert restored.shape == wave.shape
    # the mel bands of the round trip come back close: the loss is the detail inside each band
    again = to_spectrogram(restored, cfg)
    assert float((again - spec).abs().mean()) < 0.15, float((again - spec).abs().mean())


def test_mel_bands_need_stft_bins_under_them():
    with pytest.raises(ValueError, match="n_fft >= 4 \\* n_mels"):
        SpectrogramConfig(representation="mel", n_fft=256, n_mels=128)
    mel = SpectrogramConfig.preset("small", representation="mel")  # a preset keeps its shape, with a longer STFT
    assert mel.shape == SpectrogramConfig.preset("small", representation="magnitude").shape and mel.n_fft == 1024


def test_mel_to_waveform_stays_finite_for_a_wild_model_output():
    cfg = SpectrogramConfig.preset("small").with_representation("mel")
    wild = torch.full((1, *cfg.shape), 100.0)  # exp(100 * scale) overflows float32 without the cap
    assert torch.isfinite(to_waveform(wild, cfg)).all()
