"""musicdiff_nb: music generation with a Diffusion Transformer over STFT
spectrograms — the helper package of the musicdiff notebooks."""

from .checkpoint import Checkpoint, History, TrainState, load_checkpoint
from .conditioning import Conditioning, text_conditioning, with_condition
from .config import RUNS, DataConfig, RunConfig, SampleConfig, TrainConfig, named_run
from .data import SPLIT, label_names, load_data, load_music_dataset, multi_hot, spectrograms
from .files import trained_checkpoint
from .model import DiT, DiTConfig
from .neighbours import nearest_clips
from .processes import pick_device
from .sample import sample, save_audio, write_wav
from .schedule import DDPMSchedule, ScheduleConfig
from .settings import notebook_settings
from .spectrogram import SpectrogramConfig, to_spectrogram, to_waveform
from .train import train

__version__ = "0.1.0"  # the one place it is declared: pyproject.toml reads it

__all__ = [
    "SpectrogramConfig", "to_spectrogram", "to_waveform",
    "DDPMSchedule", "ScheduleConfig",
    "DiT", "DiTConfig",
    "Conditioning", "text_conditioning", "with_condition",
    "RunConfig", "DataConfig", "SampleConfig", "TrainConfig", "RUNS", "named_run",
    "train", "TrainState", "History", "Checkpoint", "load_checkpoint", "pick_device",
    "sample", "save_audio", "write_wav",
    "load_music_dataset", "load_data", "label_names", "multi_hot", "spectrograms", "SPLIT",
    "nearest_clips",
    "trained_checkpoint",
    "notebook_settings",
]
