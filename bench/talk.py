"""Benchmark ``fomm talk`` on CPU: seconds of video generated per wall second, and memory.

The two phases of talk are measured apart, each in its own subprocess so that its peak RSS
(``ru_maxrss``) is its own: *keypoints* (WAV -> log-mels -> talker rollout, one torch
thread) and *render* (FOMM generator at batch 8 on ``--threads`` threads, frames streamed
to ffmpeg with the WAV muxed in, as talk writes them). Both run for ``--seconds`` (30) and
``--short-seconds`` (10) of speech: equal peaks show that memory does not grow with the
audio length. The keypoint phase (where the whole file used to be held) also runs alone for
``--memory-lengths`` (30, 300 and 600 s) and reports its peak RSS at each. Models: ``--model-dir`` (talker.pt + fomm.pt, e.g. a trained
artifacts/talker) or untrained ones built from params.yaml (``talker_model`` section, or
TalkerModelConfig defaults; ``model`` with ``train.frame_size``, the small 128 px FOMM).
The speech is synthetic (numpy), 44.1 kHz so resampling is included. Prints one JSON object.

    .venv/bin/python bench/talk.py [--model-dir artifacts/talker] [--seconds 30] [--short-seconds 10]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RATE = 44100
FPS = 25.0


def peak_rss_mb() -> float:
    """This process's peak RSS (ffmpeg's is its own and does not grow: frames stream through)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def synth_speech(path: Path, seconds: float, seed: int = 0) -> None:
    """Voiced 'syllables' (a buzzy 120 Hz source with moving formant-like tones) and pauses."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * RATE))
    t = np.arange(n) / RATE
    envelope = np.clip(np.sin(2 * np.pi * 2.7 * t) + 0.3 * np.sin(2 * np.pi * 0.4 * t), 0, None)
    voice = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 8))
    formant = np.sin(2 * np.pi * (600 + 300 * np.sin(2 * np.pi * 1.3 * t)) * t)
    signal = 0.25 * envelope * (voice * (0.6 + 0.4 * formant)) / 3 + rng.normal(0, 0.005, n)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(signal, -1, 1) * 32767).astype(np.int16).tobytes())


def build_untrained(model_dir: Path) -> str:
    """talker.pt + fomm.pt with random weights and the configs fomm would train by default."""
    import torch
    import yaml

    from fomm_core.checkpoint import save_checkpoint
    from fomm_core.config import from_mapping
    from fomm_core.model_config import ModelConfig
    from fomm_core.models import build_models
    from fomm_core.talker import Talker, TalkerModelConfig, save_talker_checkpoint

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    torch.manual_seed(0)
    section = params.get("talker_model")
    talker_config = from_mapping(TalkerModelConfig, section, "talker_model") if section else TalkerModelConfig()
    talker = Talker(talker_config)
    for branch in [*talker.audio_branches, talker.free_branch]:  # zero-initialised: would stand still
        torch.nn.init.normal_(branch.net[-1].weight, std=0.05)
    save_talker_checkpoint(model_dir / "talker.pt", talker.eval())
    model_config = from_mapping(ModelConfig, params["model"], "model")
    kp_detector, generator, _ = build_models(model_config)
    size = int(params.get("train", {}).get("frame_size", 256))
    save_checkpoint(model_dir / "fomm.pt", model_config=model_config,
                    models={"kp_detector": kp_detector, "generator": generator},
                    extra={"train_config": {"frame_size": size}})
    return (f"untrained: talker_model {'from params.yaml' if section else 'defaults'}, "
            f"FOMM params.yaml model at {size} px")


def source_image(size: int) -> "torch.Tensor":  # noqa: F821
    import torch

    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 3, size, size, generator=g), 9, 1, 4)


# ----------------------------------------------------------------------------- phases (children)
def phase_keypoints(args) -> dict:
    import torch

    from fomm_core.checkpoint import load_inference_models
    from fomm_core.talker import audio_features_from_wav, load_talker_checkpoint, talk_keypoints

    torch.set_num_threads(args.threads)
    talker = load_talker_checkpoint(args.model_dir / "talker.pt", "cpu")
    kp_detector, _, _, size, *_ = load_inference_models(args.model_dir / "fomm.pt", "cpu")
    with torch.inference_mode():
        source_kp = kp_detector(source_image(size or 256))
    import scipy.io.wavfile  # noqa: F401  (fomm_core.audio defers these ~1 s imports: not part of the timing)
    import scipy.signal  # noqa: F401

    loaded = peak_rss_mb()
    start = time.perf_counter()
    speech = audio_features_from_wav(args.wav, FPS, talker.config.audio_per_frame)
    features_s = time.perf_counter() - start
    start = time.perf_counter()
    chunks = [np.concatenate([c["value"].reshape(len(c["value"]), -1).numpy(),
                              c["jacobian"].reshape(len(c["value"]), -1).numpy()], axis=1)
              for c in talk_keypoints(talker, source_kp, speech)]
    keypoints_s = time.perf_counter() - start
    keypoints = np.concatenate(chunks)
    np.save(args.kp_out, keypoints)
    total = features_s + keypoints_s
    return {"frames": len(keypoints), "features_s": round(features_s, 3), "keypoints_s": round(keypoints_s, 3),
            "video_s_per_wall_s": round(speech.num_frames / FPS / total, 2),
            "peak_rss_after_load_mb": loaded, "peak_rss_mb": peak_rss_mb()}


def phase_render(args) -> dict:
    import torch

    from fomm_core.checkpoint import load_inference_models
    from fomm_core.inference.animate import Animator, to_uint8_frames
    from fomm_core.inference.device import resolve_precision
    from fomm_core.inference.video_io import VideoWriter

    torch.set_num_threads(args.threads)
    kp_detector, generator, config, size, *_ = load_inference_models(args.model_dir / "fomm.pt", "cpu")
    size = size or 256
    dtype = resolve_precision(args.precision, torch.device("cpu"))
    animator = Animator(kp_detector, generator, source_image(size), dtype=dtype)
    vectors = torch.from_numpy(np.load(args.kp_in))
    k = config.num_kp
    value, jacobian = vectors[:, : 2 * k].reshape(-1, k, 2), vectors[:, 2 * k:].reshape(-1, k, 2, 2)
    batch = args.batch
    animator.generate({"value": value[:batch], "jacobian": jacobian[:batch]})  # warm-up, not timed
    loaded = peak_rss_mb()
    render_s = 0.0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        with VideoWriter(Path(tmp) / "talk.mp4", size, size, FPS, audio_from=args.wav) as writer:
            for i in range(0, len(value), batch):
                t0 = time.perf_counter()
                frames = to_uint8_frames(animator.generate({"value": value[i:i + batch],
                                                            "jacobian": jacobian[i:i + batch]}))
                render_s += time.perf_counter() - t0
                writer.write(frames)
    total_s = time.perf_counter() - start
    return {"frames": len(value), "size": size, "precision": str(dtype).removeprefix("torch."), "batch": batch,
            "render_s": round(render_s, 3), f"render_fps_batch{batch}": round(len(value) / render_s, 2),
            "render_and_encode_s": round(total_s, 3), "video_s_per_wall_s": round(len(value) / FPS / total_s, 3),
            "peak_rss_after_load_mb": loaded, "peak_rss_mb": peak_rss_mb()}


# ----------------------------------------------------------------------------- driver
def run_phase(phase: str, wav: Path, work: Path, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", phase, "--wav", str(wav),
           "--model-dir", str(args.model_dir), "--kp-out", str(work / f"{wav.stem}.npy"),
           "--kp-in", str(work / f"{wav.stem}.npy"), "--threads", str(args.threads), "--batch", str(args.batch),
           "--precision", args.precision]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{phase} phase failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="talker.pt + fomm.pt (default: untrained)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--short-seconds", type=float, default=10.0, help="second length, for the memory check")
    parser.add_argument("--memory-lengths", default="30,300,600",
                        help="speech lengths (s) for the keypoint phase's peak RSS; '' to skip")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the renderer")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", default="auto", help="renderer: auto, float32 or bfloat16 (as fomm talk)")
    parser.add_argument("--phase", choices=["keypoints", "render"], help=argparse.SUPPRESS)
    parser.add_argument("--wav", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--kp-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--kp-in", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps((phase_keypoints if args.phase == "keypoints" else phase_render)(args)))
        return

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.model_dir is None:
            args.model_dir = work / "models"
            args.model_dir.mkdir()
            models = build_untrained(args.model_dir)
        else:
            models = str(args.model_dir)
        lengths = {"long": args.seconds, "short": args.short_seconds}
        phases: dict[str, dict[str, dict]] = {"keypoints": {}, "render": {}}
        for name, seconds in lengths.items():
            wav = work / f"speech_{name}.wav"
            synth_speech(wav, seconds)
            for phase in ("keypoints", "render"):  # render reads the keypoints file of its length
                phases[phase][name] = run_phase(phase, wav, work, args)
        memory = {}
        for seconds in (float(v) for v in args.memory_lengths.split(",") if v.strip()):
            wav = work / f"speech_{seconds:g}s.wav"
            synth_speech(wav, seconds)
            run = run_phase("keypoints", wav, work, args)
            memory[f"{seconds:g}s"] = {"peak_rss_mb": run["peak_rss_mb"], "features_s": run["features_s"],
                                       "keypoints_s": run["keypoints_s"]}
            wav.unlink()
    kp, render = phases["keypoints"]["long"], phases["render"]["long"]
    wall = kp["features_s"] + kp["keypoints_s"] + render["render_and_encode_s"]
    result = {
        "models": models,
        "device": "cpu",
        "render_threads": args.threads,
        "talker_threads": 1,
        "audio_s": args.seconds,
        "sample_rate": RATE,
        "frames": render["frames"],
        "size": render["size"],
        "precision": render["precision"],
        "video_s_per_wall_s": round(args.seconds / wall, 3),
        "keypoints_video_s_per_wall_s": kp["video_s_per_wall_s"],
        "render_video_s_per_wall_s": render["video_s_per_wall_s"],
        f"render_fps_batch{args.batch}": render[f"render_fps_batch{args.batch}"],
        "keypoints": kp,
        "render": render,
        "peak_rss_mb": {phase: {f"{lengths[n]:g}s": r["peak_rss_mb"] for n, r in runs.items()}
                        for phase, runs in phases.items()},
        "keypoint_phase_by_length": memory,
        "bench_wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
