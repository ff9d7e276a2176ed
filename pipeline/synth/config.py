"""Settings of the synthetic talking-head set (the ``synth`` section of params.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

FPS = 25
SAMPLE_RATE = 22050
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 882: frame k <-> samples [k*882, (k+1)*882)
MAX_IDENTITIES = 10000  # person ids id90000..id99999


@dataclass
class SynthConfig:
    """How many talking heads to render, how long they talk, and how they are encoded.

    fps (25) and the audio rate (22050 Hz) are fixed by the stage contract so that one
    video frame is exactly 882 audio samples.
    """

    seed: int = 0
    identities: int = 10
    test_identities: int = 2  # the last N identities form the test partition
    videos_per_identity: int = 2
    clips_per_video: int = 2
    min_clip_seconds: float = 2.5
    max_clip_seconds: float = 4.0
    gap_seconds: float = 0.5  # silence between two clips of a video (jittered +-40%)
    lead_seconds: float = 0.4  # silence before the first and after the last clip
    width: int = 640
    height: int = 360
    crf: int = 17
    preset: str = "veryfast"
    workers: int = 2  # videos rendered in parallel; 0 = one per CPU core

    def validate(self) -> None:
        """Raise ValueError (turned into a one-line config error) for impossible settings."""
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")
        if not 1 <= self.identities <= MAX_IDENTITIES:
            raise ValueError(f"identities must be 1..{MAX_IDENTITIES}, got {self.identities}")
        if not 0 <= self.test_identities < self.identities:
            raise ValueError(
                f"test_identities must be at least 0 and less than identities ({self.identities}) "
                f"so some identities are left for training, got {self.test_identities}"
            )
        if self.videos_per_identity < 1:
            raise ValueError(f"videos_per_identity must be at least 1, got {self.videos_per_identity}")
        if self.clips_per_video < 1:
            raise ValueError(f"clips_per_video must be at least 1, got {self.clips_per_video}")
        if not 0.5 <= self.min_clip_seconds <= self.max_clip_seconds <= 60.0:
            raise ValueError(
                "need 0.5 <= min_clip_seconds <= max_clip_seconds <= 60, got "
                f"{self.min_clip_seconds} and {self.max_clip_seconds}"
            )
        if not 0.0 <= self.gap_seconds <= 10.0:
            raise ValueError(f"gap_seconds must be 0..10, got {self.gap_seconds}")
        if not 0.0 <= self.lead_seconds <= 10.0:
            raise ValueError(f"lead_seconds must be 0..10, got {self.lead_seconds}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value < 64 or value > 4096 or value % 2:
                raise ValueError(f"{name} must be an even number of pixels in 64..4096, got {value}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be 0..51 (lower is better quality), got {self.crf}")
        presets = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")
        if self.preset not in presets:
            raise ValueError(f"preset must be one of {', '.join(presets)}, got {self.preset!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (one per CPU) or more, got {self.workers}")
