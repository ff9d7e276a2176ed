"""``fomm talk``: make still faces speak WAV files (the audio-driven talker + the FOMM renderer).

For each (WAV, image) pair the talker predicts a keypoint sequence from the speech,
starting at the image's own keypoints, and the FOMM generator renders it frame batch by
frame batch straight into ffmpeg, which muxes the WAV in. The video has exactly
``ceil(samples * 25 / rate)`` frames (see :func:`fomm_core.talker.video_frames_for`), so it
covers the whole speech and ends at most one frame (40 ms) after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import typer

from fomm_core.checkpoint import load_inference_models
from fomm_core.errors import FommError
from fomm_core.inference.animate import Animator, fold_batchnorm, from_uint8_frames, to_uint8_frames
from fomm_core.inference.device import resolve_device, resolve_precision
from fomm_core.faces import load_backend
from fomm_core.inference.face_crop import image_crop_box
from fomm_core.inference.video_io import VideoWriter, read_image, resize_square, written_by_fomm
from fomm_core.outputs import check_output_file
from fomm_core.talker import SpeechFeatures, audio_features_from_wav, load_talker_checkpoint, talk_keypoints
from pipeline.cli_support import user_errors
from pipeline.progress import progress_bar, summary
from pipeline.stages.animate import CONTAINERS

FPS = 25.0  # the talker is trained on 25 fps video with 100 Hz log-mels (4 per frame)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # preference order when one stem has several
AUDIO_SUFFIX = ".wav"
TALKER_FILE = "talker.pt"
FOMM_FILE = "fomm.pt"
MAKER = "dvc repro train-talker"
LISTED_NAMES = 20  # unmatched names listed in full before "+N more"
KP_CHUNK = 100  # talker frames per chunk: bounded memory however long the speech


@dataclass(frozen=True)
class Pair:
    stem: str
    audio: Path
    image: Path
    out: Path


@dataclass
class Matching:
    """What pairing two folders by file stem found."""

    pairs: list[Pair]
    audio_only: list[str] = field(default_factory=list)  # WAV names without an image
    image_only: list[str] = field(default_factory=list)  # image names without a WAV
    notes: list[str] = field(default_factory=list)  # ambiguities resolved by a rule


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
    """Visible files of ``folder`` whose suffix (any case) is one of ``suffixes``, by stem."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in suffixes:
            continue  # dot files include other tools' half-written temporaries
        found.setdefault(path.stem, []).append(path)
    for paths in found.values():
        paths.sort(key=lambda p: (suffixes.index(p.suffix.lower()), p.name))
    return found


def match_pairs(audio_dir: Path, img_dir: Path, out_dir: Path) -> Matching:
    """Pair every WAV with the image of the same stem; unmatched names are kept for the report."""
    for option, folder in (("--audio-dir", audio_dir), ("--img-dir", img_dir)):
        if not folder.is_dir():
            raise FommError(f"{option} {folder}: not a directory")
    wavs = _by_stem(audio_dir, (AUDIO_SUFFIX,))
    images = _by_stem(img_dir, IMAGE_SUFFIXES)
    matching = Matching(pairs=[])
    for stem, audio in wavs.items():
        if stem not in images:
            matching.audio_only.extend(p.name for p in audio)
            continue
        for kind, paths in (("WAVs", audio), ("images", images[stem])):
            if len(paths) > 1:
                matching.notes.append(f"{stem}: several {kind} ({', '.join(p.name for p in paths)}); "
                                      f"using {paths[0].name}")
        matching.pairs.append(Pair(stem, audio[0], images[stem][0], out_dir / f"{stem}.mp4"))
    matching.image_only = [p.name for stem, paths in images.items() if stem not in wavs for p in paths]
    return matching


def name_list(names: list[str]) -> str:
    """Names comma-separated, the tail elided for very long lists."""
    shown = ", ".join(names[:LISTED_NAMES])
    return shown + (f", ... (+{len(names) - LISTED_NAMES} more)" if len(names) > LISTED_NAMES else "")


def unmatched_report(matching: Matching, audio_dir: Path, img_dir: Path) -> list[str]:
    lines = []
    if matching.audio_only:
        lines.append(f"unmatched: {len(matching.audio_only)} WAV(s) in {audio_dir} without an image in {img_dir}: "
                     f"{name_list(matching.audio_only)}")
    if matching.image_only:
        lines.append(f"unmatched: {len(matching.image_only)} image(s) in {img_dir} without a WAV in {audio_dir}: "
                     f"{name_list(matching.image_only)}")
    return lines


def _model_paths(model_dir: Path) -> tuple[Path, Path]:
    talker, fomm = model_dir / TALKER_FILE, model_dir / FOMM_FILE
    what = {talker: "the talker checkpoint", fomm: "the FOMM renderer checkpoint (kp_detector + generator)"}
    for path in (talker, fomm):
        if not path.is_file():
            raise FommError(f"{path} not found ({what[path]}); `{MAKER}` writes it, or pass --model-dir")
    return talker, fomm


class FaceCropper:
    """The training-like face crop (dlib landmarks), or the centred square when there is no face.

    ``talk`` must work on any picture, so an image without a detectable face is not an
    error: it falls back to the centred square with a printed note.
    """

    def __init__(self, enabled: bool):
        self.backend = load_backend() if enabled else None

    def box(self, image, name: str) -> tuple[tuple[int, int, int, int] | None, str]:
        """The crop box (None: centred square) and a word for the summary line."""
        if self.backend is None:
            return None, "centred crop"
        try:
            return image_crop_box(image, name, self.backend), "face crop"
        except FommError:
            summary(f"note: {name}: no face found; using the centred square crop")
            return None, "centred crop, no face found"


def read_speech(path: Path, audio_per_frame: int) -> SpeechFeatures:
    """Talker features of a WAV file at any rate and length, in bounded memory."""
    return audio_features_from_wav(path, FPS, audio_per_frame)


@dataclass
class Renderer:
    """Models loaded once, reused for every pair (BatchNorm folded once, not per image)."""

    talker: torch.nn.Module
    kp_detector: torch.nn.Module
    generator: torch.nn.Module
    size: int
    device: torch.device
    dtype: torch.dtype
    batch_size: int

    def talk(self, pair: Pair, cropper: FaceCropper, progress=None, task=None) -> tuple[int, float, str]:
        """Render one pair to ``pair.out``; returns (frames, audio seconds, crop description)."""
        speech = read_speech(pair.audio, self.talker.config.audio_per_frame)
        image = read_image(pair.image)
        box, crop = cropper.box(image, pair.image.name)
        source = from_uint8_frames(resize_square(image, self.size, box)[None])
        animator = Animator(self.kp_detector, self.generator, source, dtype=self.dtype, fold=False)
        if progress is not None:
            progress.reset(task, total=speech.num_frames, description=pair.stem)
        with VideoWriter(pair.out, self.size, self.size, FPS, audio_from=pair.audio) as writer:
            # Keypoints are absolute and start at the source's own: render them as they are.
            for chunk in talk_keypoints(self.talker, animator.cache.kp, speech, chunk_frames=KP_CHUNK):
                count = chunk["value"].shape[0]
                for start in range(0, count, self.batch_size):
                    kp = {k: v[start:start + self.batch_size].to(self.device) for k, v in chunk.items()}
                    writer.write(to_uint8_frames(animator.generate(kp)))
                    if progress is not None:
                        progress.advance(task, len(kp["value"]))
            if writer.frames_written != speech.num_frames:  # a bug, not a user error: fail loudly
                raise RuntimeError(f"{pair.audio}: rendered {writer.frames_written} of {speech.num_frames} frames")
        return writer.frames_written, speech.duration_s, crop


def load_renderer(model_dir: Path, device: str, precision: str, batch_size: int) -> Renderer:
    talker_path, fomm_path = _model_paths(model_dir)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    # The talker's thousands of tiny sequential steps run best on one CPU thread (see
    # fomm_core.talker.threads); only the renderer goes to the accelerator.
    talker = load_talker_checkpoint(talker_path, "cpu")
    kp_detector, generator, config, frame_size, *_ = load_inference_models(fomm_path, dev)
    if config.num_kp != talker.config.num_kp:
        raise FommError(f"{fomm_path} detects {config.num_kp} keypoints but {talker_path} was trained on "
                        f"{talker.config.num_kp}; use the FOMM checkpoint the talker was trained with")
    return Renderer(talker, fold_batchnorm(kp_detector), fold_batchnorm(generator), frame_size or 256, dev, dtype,
                    batch_size)


def _check_outputs(matching: Matching, inputs: tuple[Path | None, ...], flag: str) -> None:
    """Caught before the models load: every target is writable, no input, and not a video
    someone else made (only our own earlier renderings are replaced)."""
    for pair in matching.pairs:
        check_output_file(pair.out, "talk", inputs, is_ours=written_by_fomm, flag=flag)


def _plan(audio_dir, img_dir, audio, image, out_dir, out) -> tuple[Matching, Path, Path]:
    """Pairs to render from either the folder options or the single-pair options."""
    single = audio is not None or image is not None
    if single and (audio_dir is not None or img_dir is not None):
        raise FommError("--audio/--image (one pair) and --audio-dir/--img-dir (folders) are mutually exclusive")
    if single:
        if audio is None or image is None:
            raise FommError("one pair needs both --audio FILE and --image FILE")
        if out is not None and out_dir is not None:
            raise FommError("give --out FILE or --out-dir DIR, not both")
        for option, path in (("--audio", audio), ("--image", image)):
            if not path.is_file():
                raise FommError(f"{option} {path}: file not found")
        target = out if out is not None else (out_dir or Path("artifacts/talk")) / f"{audio.stem}.mp4"
        if target.suffix.lower() not in CONTAINERS:
            raise FommError(f"--out {target}: use a .mp4, .mkv or .mov file name")
        matching = Matching([Pair(audio.stem, audio, image, target)])
        _check_outputs(matching, (audio, image), "--out" if out is not None else "--out-dir")
        return matching, audio.parent, image.parent
    if audio_dir is None or img_dir is None:
        raise FommError("give --audio-dir DIR and --img-dir DIR (or --audio FILE and --image FILE for one pair)")
    if out is not None:
        raise FommError("--out names one file; with --audio-dir/--img-dir use --out-dir")
    out_dir = out_dir or Path("artifacts/talk")
    if out_dir.exists() and not out_dir.is_dir():
        raise FommError(f"--out-dir {out_dir} is a file, not a folder; choose another output folder")
    matching = match_pairs(audio_dir, img_dir, out_dir)
    if not matching.pairs:
        detail = "; ".join(unmatched_report(matching, audio_dir, img_dir)) or "no WAV and no image found"
        raise FommError(f"no pair to talk: no WAV in {audio_dir} has an image with the same name in {img_dir} "
                        f"({detail})")
    _check_outputs(matching, (audio_dir, img_dir), "--out-dir")
    return matching, audio_dir, img_dir


@user_errors
def command(
    audio_dir: Optional[Path] = typer.Option(None, "--audio-dir",
                                             help="Folder of WAV files (any sample rate, mono or stereo)."),
    img_dir: Optional[Path] = typer.Option(None, "--img-dir",
                                           help="Folder of face images; NAME.wav speaks with NAME.png/.jpg/.jpeg."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="One WAV file (with --image; not with the folders)."),
    image: Optional[Path] = typer.Option(None, "--image", help="One image (with --audio)."),
    model_dir: Path = typer.Option(Path("artifacts/talker"), "--model-dir",
                                   help=f"Folder holding {TALKER_FILE} and {FOMM_FILE} (see above)."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir",
                                           help="Output folder for NAME.mp4 (default: artifacts/talk)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file for one pair (.mp4, .mkv or .mov)."),
    crop_face: bool = typer.Option(True, "--crop-face/--no-crop-face",
                                   help="Crop each image to its face like the training clips (dlib landmarks; a "
                                        "centred square when no face is found) or always to the centred square."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Frames per renderer forward pass."),
    device: str = typer.Option("auto", "--device", help="Renderer device: auto (CUDA if available), cpu or cuda[:N]."),
    precision: str = typer.Option("auto", "--precision",
                                  help="Renderer precision: auto (bfloat16 where native), float32 or bfloat16."),
) -> None:
    """Animate face images to speak WAV files: one video with the speech muxed in per pair.

    Pairs: every NAME.wav in --audio-dir with the image NAME.png/.jpg/.jpeg (any case) in
    --img-dir; names found on one side only are listed at the end (not an error, unless no
    pair is left). Or one pair with --audio and --image. Output: OUT_DIR/NAME.mp4 (or
    --out), written atomically, 25 fps, exactly as long as the speech (rounded up to a
    whole frame), at the FOMM checkpoint's training size (256 if it does not say).

    Model dir (--model-dir, made by `dvc repro train-talker`): talker.pt, the talker
    checkpoint (fomm-talker-v1); fomm.pt, the FOMM checkpoint (fomm-checkpoint-v1 with
    kp_detector and generator) whose keypoints the talker was trained on.

    Images of any size are cropped to the face and resized. Keypoints are generated in
    chunks and frames streamed to ffmpeg, so memory stays flat for long audio.
    """
    matching, audio_root, img_root = _plan(audio_dir, img_dir, audio, image, out_dir, out)
    renderer = load_renderer(model_dir, device, precision, batch_size)
    for note in matching.notes:
        summary(f"note: {note}")
    cropper = FaceCropper(crop_face)
    done, seconds, failures = 0, 0.0, []
    with progress_bar() as progress:
        files = progress.add_task("talk", total=len(matching.pairs))
        frames_task = progress.add_task("frames", total=None)
        for pair in matching.pairs:
            try:
                frames, duration, crop = renderer.talk(pair, cropper, progress, frames_task)
            except FommError as exc:
                # One bad file should not cost the others; the run still fails at the end.
                failures.append(str(exc))
                summary(f"failed {pair.audio.name}: {exc}")
            else:
                done += 1
                seconds += frames / FPS
                summary(f"{pair.audio.name} + {pair.image.name} -> {pair.out} ({frames} frames, "
                        f"{frames / FPS:.2f} s video for {duration:.2f} s audio, {crop})")
            progress.advance(files)
    precision_name = str(renderer.dtype).removeprefix("torch.")
    summary(f"talk: {done} of {len(matching.pairs)} pair(s) done, {seconds:.2f} s of video "
            f"({renderer.size}x{renderer.size}, 25 fps) on {renderer.device} in {precision_name}")
    for line in unmatched_report(matching, audio_root, img_root):
        summary(line)
    if failures:
        if len(matching.pairs) == 1:
            raise FommError(failures[0])
        raise FommError(f"{len(failures)} of {len(matching.pairs)} pair(s) failed: {'; '.join(failures)}")
