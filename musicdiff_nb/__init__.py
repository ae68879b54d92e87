"""musicdiff_nb: music generation with a Diffusion Transformer over STFT
spectrograms — the helper package of the musicdiff notebooks."""

from .data import label_names, load_music_dataset, multi_hot, spectrograms
from .files import trained_checkpoint
from .model import DiT, DiTConfig
from .sample import sample, save_audio, write_wav
from .schedule import DDPMSchedule
from .spectrogram import SpectrogramConfig, to_spectrogram, to_waveform
from .train import Checkpoint, History, TrainConfig, load_checkpoint, pick_device, train

__version__ = "0.1.0"

__all__ = [
    "SpectrogramConfig", "to_spectrogram", "to_waveform",
    "DDPMSchedule",
    "DiT", "DiTConfig",
    "TrainConfig", "History", "Checkpoint", "train", "load_checkpoint", "pick_device",
    "sample", "save_audio", "write_wav",
    "load_music_dataset", "label_names", "multi_hot", "spectrograms",
    "trained_checkpoint",
]
