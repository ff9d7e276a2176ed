"""Audio-driven talking heads: speech to FOMM keypoints (MS-Sync, Airale, Vaufreydaz, Alameda-Pineda).

A causal talker predicts the whole keypoint sequence (positions and Jacobians, head motion
included) from speech, frame by frame; multi-scale syncers, trained contrastively first,
supply the sync loss and the evaluation scores. Modules:

* ``config`` typed params sections; ``features`` keypoint vectors and per-clip files;
  ``dataset`` clips with aligned audio; ``pyramid`` the shared temporal pyramid;
* ``audio_encoder``, ``generator`` the talker; ``syncer``, ``discriminator``, ``losses``;
* ``training``, ``checkpoint``, ``evaluation``, ``inference`` (what ``fomm talk`` uses);
* ``provenance`` which FOMM weights each file was made from.
"""

from .checkpoint import load_syncers_checkpoint, load_talker_checkpoint, save_syncers_checkpoint, save_talker_checkpoint
from .config import (SyncerConfig, TalkerEvalConfig, TalkerFommConfig, TalkerModelConfig, TalkerTrainConfig,
                     check_compatible)
from .dataset import (KeypointStats, TalkerClip, TalkerClips, align_audio_to_video, audio_frames_per_video_frame,
                      compute_stats)
from .discriminator import TemporalDiscriminator
from .evaluation import MouthProbe, evaluate_talker, evaluate_talker_with_offsets, fit_mouth_probe
from .features import (extract_clip_keypoints, keypoints_path, kp_to_vector, load_clip_keypoints, save_clip_keypoints,
                       vector_to_kp)
from .generator import Talker
from .inference import SpeechFeatures, audio_features_from_wav, speech_features, talk_keypoints, video_frames_for
from .provenance import Recorded, require_same_fomm
from .pyramid import pyramid
from .syncer import Syncers, estimate_offset, lse_scores, sync_scores
from .threads import limited_threads
from .training import train_syncers, train_talker

__all__ = [
    "KeypointStats", "MouthProbe", "Recorded", "SpeechFeatures", "SyncerConfig", "Syncers", "Talker", "TalkerClip",
    "TalkerClips", "TalkerEvalConfig", "TalkerFommConfig", "TalkerModelConfig", "TalkerTrainConfig", "TemporalDiscriminator", "align_audio_to_video",
    "audio_features_from_wav", "audio_frames_per_video_frame", "check_compatible", "compute_stats", "estimate_offset",
    "evaluate_talker", "evaluate_talker_with_offsets", "extract_clip_keypoints", "fit_mouth_probe", "keypoints_path", "kp_to_vector", "limited_threads",
    "load_clip_keypoints", "load_syncers_checkpoint", "load_talker_checkpoint", "lse_scores", "pyramid",
    "require_same_fomm", "save_clip_keypoints", "save_syncers_checkpoint", "save_talker_checkpoint", "speech_features", "sync_scores",
    "talk_keypoints", "train_syncers", "train_talker", "vector_to_kp", "video_frames_for",
]
