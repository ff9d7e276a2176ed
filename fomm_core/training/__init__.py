"""FOMM training: configs, the loss modules, the loop, DDP helpers, logging protocol, visuals."""

from .config import TrainConfig
from .distributed import DistInfo
from .fingerprint import shards_fingerprint
from .full_model import DiscriminatorFullModel, GeneratorFullModel
from .logger import NullLogger, TrainingLogger
from .trainer import CHECKPOINT_NAME, CURVE_NAME, METRICS_NAME, Trainer, TrainingInterrupted, TrainResult
from .visualize import sample_grid

__all__ = [
    "CHECKPOINT_NAME",
    "CURVE_NAME",
    "METRICS_NAME",
    "DiscriminatorFullModel",
    "DistInfo",
    "GeneratorFullModel",
    "NullLogger",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "TrainingLogger",
    "sample_grid",
    "shards_fingerprint",
]
