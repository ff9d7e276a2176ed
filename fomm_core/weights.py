"""Finding, verifying and loading pretrained weights and checkpoints, safely.

Everything goes through ``torch.load(..., weights_only=True)`` (no arbitrary pickles) and every
downloaded or cached file is checked against a SHA-256 before use: a truncated or tampered
``vgg19-*.pth`` would otherwise silently turn the perceptual loss into noise.

The VGG-19 search order is: an explicit path, the torch hub cache
(``$TORCH_HOME`` or ``~/.cache/torch``, then ``hub/checkpoints/<file>``), a download into that
cache (only when allowed). If none works the caller either gets a FommError saying what to do
or, with ``backbone='random'``, an info object saying the backbone is random.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from .atomic import atomic_path
from .digest import sha256_of_file
from .errors import FommError

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
# torchvision/torch.hub naming: ``<name>-<first hex digits of sha256>.<ext>``.
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,64})\.")
_HEX = re.compile(r"[0-9a-f]{1,64}")
_CHUNK = 1 << 20


class ChecksumError(FommError):
    """A file's SHA-256 is not the expected one (corrupt, truncated or a different file)."""


@dataclass(frozen=True)
class VggWeights:
    """What the perceptual backbone was built from; log :meth:`log_params` with the run."""

    state_dict: dict[str, torch.Tensor] | None
    backbone: Literal["pretrained", "random"]
    source: Literal["path", "hub_cache", "download", "random"]
    path: str = ""
    sha256: str = ""
    note: str = ""  # why we fell back to random, or that the checksum was only computed

    def log_params(self) -> dict[str, str]:
        params = {"perceptual_backbone": self.backbone, "vgg_weights_source": self.source}
        if self.sha256:
            params["vgg_weights_sha256"] = self.sha256
        return params


def torch_hub_dir() -> Path:
    """``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``), like ``torch.hub.get_dir``."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch"
    )
    return Path(home) / "hub"


def hub_checkpoint_path(url: str) -> Path:
    """Where torch hub keeps the file downloaded from ``url``."""
    return torch_hub_dir() / "checkpoints" / _file_name(url)


def _file_name(url: str) -> str:
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise FommError(f"weights URL {url!r} does not end in a file name")
    return name


def sha_prefix_from_name(name: str | os.PathLike) -> str | None:
    """``vgg19-dcbb9e9d.pth`` → ``dcbb9e9d`` (torch hub convention), else None."""
    match = _HASH_IN_NAME.search(os.path.basename(str(name)))
    return match.group(1) if match else None


def _normalise_expected(expected: str | None, what: str) -> str | None:
    if expected is None or expected == "":
        return None
    value = expected.strip().lower()
    if not _HEX.fullmatch(value):
        raise FommError(f"{what}: expected SHA-256 {expected!r} is not 1-64 hex digits")
    return value


def verify_sha256(path: str | os.PathLike, expected: str, *, fix_hint: str = "") -> str:
    """Hash ``path`` and raise FommError unless it starts with ``expected``; returns the hash."""
    actual = sha256_of_file(path)
    if not actual.startswith(expected):
        hint = f"; {fix_hint}" if fix_hint else ""
        raise ChecksumError(f"{path}: SHA-256 {actual[:16]}... does not match expected {expected}{hint}")
    return actual


def download_file(
    url: str,
    target: str | os.PathLike,
    *,
    expected_sha256: str | None,
    timeout: float = 30.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> str:
    """Download ``url`` to ``target`` via a temp file, verifying the SHA-256 before the rename.

    Nothing is left at ``target`` unless the whole file arrived and matched. Returns the hash.
    """
    target = Path(target)
    expected = _normalise_expected(expected_sha256, url)
    digest = hashlib.sha256()
    with atomic_path(target) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                total = response.headers.get("Content-Length")
                total_int = int(total) if total and total.isdigit() else None
                done = 0
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total_int)
                if total_int is not None and done != total_int:
                    raise FommError(f"cannot download {url}: stopped after {done} of {total_int} bytes")
        except urllib.error.HTTPError as exc:
            raise FommError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise FommError(f"cannot download {url}: {reason}") from None
        actual = digest.hexdigest()
        if expected and not actual.startswith(expected):
            raise ChecksumError(
                f"download of {url} is corrupt: SHA-256 {actual[:16]}... does not match expected "
                f"{expected}; nothing was saved, try again"
            )
    return actual


def load_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load`` a checkpoint on the CPU with ``weights_only=True`` and clean errors."""
    path = Path(path)
    if not path.is_file():
        raise FommError(f"checkpoint not found: {path}; check the path")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/unsafe files
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().split("\n")[0] or type(exc).__name__
        if first.startswith("Weights only load failed"):  # torch's advice to unpickle untrusted code: not ours
            first = "torch.load(weights_only=True) refused it"
        raise FommError(
            f"cannot read checkpoint {path}: {first[:200]} (corrupt, truncated or not a weights-only torch file)"
        ) from None


def _load_vgg_file(path: Path, where: str) -> dict[str, torch.Tensor]:
    from .losses.vgg import check_vgg19_state_dict  # local: weights.py must not need the losses at import

    state = load_checkpoint(path)
    check_vgg19_state_dict(state, where=f"{where} {path}")
    return dict(state)


def load_vgg19_state_dict(
    path: str | os.PathLike | None,
    *,
    allow_download: bool,
    backbone: Literal["pretrained", "random"],
    expected_sha256: str | None = None,
    url: str = VGG19_URL,
    timeout: float = 30.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> VggWeights:
    """Find the ImageNet VGG-19 weights (path → hub cache → download) and verify them.

    ``expected_sha256`` (full hash or prefix) checks an explicit ``path`` whose name carries no
    hash; without either, the hash is computed and returned in ``VggWeights.sha256``. ``url``'s
    file name (``vgg19-<sha prefix>.pth``) names the cache file and its expected hash.
    ``backbone='random'`` turns "no weights anywhere" into ``VggWeights(state_dict=None, ...)``
    instead of an error; bad weights (wrong checksum, corrupt) are always an error.
    """
    if backbone not in ("pretrained", "random"):
        raise FommError(f"perceptual_backbone must be 'pretrained' or 'random', got {backbone!r}")
    expected = _normalise_expected(expected_sha256, "vgg_weights_sha256")

    if path:
        path = Path(path)
        if not path.is_file():
            raise FommError(f"VGG-19 weights file not found: {path}; fix losses.vgg_weights or leave it empty")
        want = expected or sha_prefix_from_name(path)
        if want:
            sha = verify_sha256(path, want, fix_hint="re-download it or fix vgg_weights_sha256")
            note = ""
        else:
            sha = sha256_of_file(path)
            note = f"checksum not verified (no expected hash); computed SHA-256 {sha}"
        return VggWeights(_load_vgg_file(path, "VGG-19 weights"), "pretrained", "path", str(path), sha, note)

    name_prefix = sha_prefix_from_name(_file_name(url))
    want = expected or name_prefix
    cached = hub_checkpoint_path(url)
    if cached.is_file():
        sha = verify_sha256(cached, want, fix_hint="delete the file so it is downloaded again") if want else sha256_of_file(cached)
        return VggWeights(_load_vgg_file(cached, "cached VGG-19 weights"), "pretrained", "hub_cache", str(cached), sha)

    failure = f"VGG-19 weights not in the torch hub cache ({cached})"
    if allow_download:
        try:
            sha = download_file(url, cached, expected_sha256=want, timeout=timeout, progress=progress)
        except ChecksumError:
            raise
        except FommError as exc:
            if backbone != "random":
                raise FommError(
                    f"{exc}. Get the file on a machine with internet and copy it to {cached} "
                    "(or set losses.vgg_weights), or set losses.perceptual_backbone: random"
                ) from None
            failure = str(exc)
        else:
            return VggWeights(_load_vgg_file(cached, "downloaded VGG-19 weights"), "pretrained", "download", str(cached), sha)

    if backbone == "random":
        return VggWeights(None, "random", "random", note=f"{failure}; using a randomly initialised VGG-19")
    raise FommError(
        f"{failure} and downloading is off; set losses.allow_download: true, copy {_file_name(url)} there "
        "(or set losses.vgg_weights), or set losses.perceptual_backbone: random"
    )


__all__ = [
    "VGG19_URL",
    "ChecksumError",
    "VggWeights",
    "download_file",
    "hub_checkpoint_path",
    "load_checkpoint",
    "load_vgg19_state_dict",
    "sha256_of_file",
    "sha_prefix_from_name",
    "torch_hub_dir",
    "verify_sha256",
]
