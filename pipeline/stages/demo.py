"""``fomm demo``: one test identity animated with another's motion, the pipeline's showcase output.

Also leaves the pair's source image and driving audio as ``images/demo.png`` and
``audio/demo.wav``, the folder layout ``fomm talk`` reads, so the talker demo speaks the
same sentence with the same face.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import pandas as pd
import typer

from fomm_core.outputs import check_output_dir, replace_output_dir
from fomm_core.data import ShardStore
from fomm_core.errors import FommError
from pipeline.cli_support import user_errors
from pipeline.ids import safe_join
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import summary
from pipeline.stages.animate import animate_file


@dataclass
class DemoConfig:
    """The ``demo`` section of params.yaml. Empty clip ids pick the first test clips of two people
    (a training clip drives when the test set has a single identity)."""

    source_clip: str = ""
    driving_clip: str = ""
    relative: bool = True
    adapt_scale: bool = True
    batch_size: int = 8
    device: str = "auto"

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


def pick_pair(store: ShardStore, config: DemoConfig) -> tuple[str, str]:
    """(source clip, driving clip): given ids, else the first test clip and the first one of another person."""
    test = sorted(store.select("test"), key=lambda c: c.clip_id)
    if config.source_clip or config.driving_clip:
        for clip_id in (config.source_clip, config.driving_clip):
            store.clip(clip_id)  # raises a clear error for an unknown id
        if not (config.source_clip and config.driving_clip):
            raise FommError("demo: set both source_clip and driving_clip, or neither")
        return config.source_clip, config.driving_clip
    if not test:
        raise FommError(f"{store.root}: no test clips for the demo")
    source = test[0]
    # Another test person's motion; with a single test identity, a training identity's.
    for pool in (test, sorted(store.select(None), key=lambda c: c.clip_id)):
        others = [c for c in pool if c.person_id != source.person_id]
        if others:
            return source.clip_id, others[0].clip_id
    raise FommError(f"{store.root}: the demo needs clips of two different people, found only {source.person_id}")


def clip_files(clips_dir: Path, clip_id: str) -> tuple[Path, Path | None]:
    """The cropped clip's video and audio, as `fomm crop`'s manifest records them."""
    manifest = clips_dir / "manifest.parquet"
    if not manifest.is_file():
        raise FommError(f"{manifest}: not found; run `fomm crop` first or pass --clips")
    rows = pd.read_parquet(manifest, columns=["clip_id", "status", "video", "audio"])
    row = rows[(rows.clip_id == clip_id) & (rows.status == "ok")]
    if row.empty:
        raise FommError(f"{manifest}: no cropped clip {clip_id}")
    video = safe_join(clips_dir, *str(row.video.iloc[0]).split("/"))
    audio = str(row.audio.iloc[0] or "")
    return video, (safe_join(clips_dir, *audio.split("/")) if audio else None)


@user_errors
def command(
    checkpoint: Path = typer.Option(Path("artifacts/train/checkpoint.pt"), "--checkpoint", help="fomm train output."),
    shards: Path = typer.Option(Path("artifacts/shards"), "--shards", help="fomm shard output (source frames)."),
    clips: Path = typer.Option(Path("artifacts/clips"), "--clips", help="fomm crop output (driving video and audio)."),
    out: Path = typer.Option(Path("artifacts/demo"), "--out", help="Output folder, replaced atomically."),
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml; reads the demo section."),
) -> None:
    """Animate a test clip's first frame with another person's test clip (relative motion)."""
    config = load_section(params, "demo", DemoConfig)
    check_output_dir(out, "demo", (checkpoint, shards, clips))
    store = ShardStore(shards)
    source_id, driving_id = pick_pair(store, config)
    image = store.read_frames(source_id, [0])[0]
    driving, audio = clip_files(clips, driving_id)
    with replace_output_dir(out, "demo", (checkpoint, shards, clips)) as tmp:
        (tmp / "images").mkdir()
        (tmp / "audio").mkdir()
        if not cv2.imwrite(str(tmp / "images" / "demo.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise FommError(f"{tmp / 'images' / 'demo.png'}: cannot write the source image")
        if audio is not None:
            shutil.copyfile(audio, tmp / "audio" / "demo.wav")
        message = animate_file(image, f"{source_id} (frame 0)", driving, checkpoint, tmp / "animation.mp4",
                               relative=config.relative, adapt_scale=config.adapt_scale,
                               batch_size=config.batch_size, device=config.device, audio_from=audio)
        (tmp / "pair.json").write_text(json.dumps({"source_clip": source_id, "driving_clip": driving_id,
                                                   "driving_video": str(driving)}, indent=2) + "\n")
    summary(f"demo: {source_id} driven by {driving_id}: {message.replace(str(tmp), str(out))}")
