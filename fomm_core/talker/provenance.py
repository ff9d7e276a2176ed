"""Which FOMM weights a talker file was made from, and refusing to mix files of different ones.

Keypoint files, syncers and talkers each record the :func:`~fomm_core.checkpoint.weights_sha256`
of the FOMM checkpoint whose detector produced their keypoints. Files of two FOMM runs can
have the same shapes (same keypoint count) and would combine silently into a talker that
renders the wrong motion; every step that combines them calls :func:`require_same_fomm`.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import FommError


class Recorded(NamedTuple):
    """One input's recorded FOMM identity: what it is, the hash ('' = none), the command that remakes it."""

    what: str
    fomm_sha256: str
    remake: str


def short(sha: str) -> str:
    return sha[:12] if sha else "none"


def require_same_fomm(*inputs: Recorded) -> str:
    """The common hash of ``inputs`` (upstream first), or a one-line error naming the odd one out.

    The error asks to remake the later (downstream) input of the first disagreeing pair.
    """
    for item in inputs:
        if not item.fomm_sha256:
            raise FommError(f"{item.what} records no FOMM checkpoint (written before checkpoints were recorded); "
                            f"rerun `{item.remake}`")
    first = inputs[0]
    for item in inputs[1:]:
        if item.fomm_sha256 != first.fomm_sha256:
            raise FommError(f"FOMM weights differ: {item.what} has {short(item.fomm_sha256)}, {first.what} has "
                            f"{short(first.fomm_sha256)}; rerun `{item.remake}` with the same FOMM checkpoint")
    return first.fomm_sha256
