"""VGG-19 weight discovery, checksums and downloads, against real files and a loopback server.

The state dict used here has the exact torchvision VGG-19 ``features`` shapes (random values),
saved with torch.save and named ``vgg19-<its sha256 prefix>.pth`` like the real file.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading

import pytest
import torch

from fomm_core.errors import FommError
from fomm_core.losses.vgg import Vgg19Features, vgg19_feature_shapes
from fomm_core.weights import (
    VGG19_URL,
    ChecksumError,
    download_file,
    hub_checkpoint_path,
    load_checkpoint,
    load_vgg19_state_dict,
    sha_prefix_from_name,
)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """(path, sha256, state_dict) of a torchvision-format VGG-19 checkpoint named by its hash."""
    gen = torch.Generator().manual_seed(1)
    state = {k: torch.randn(shape, generator=gen) * 0.01 for k, shape in vgg19_feature_shapes().items()}
    state["classifier.6.bias"] = torch.randn(1000, generator=gen)  # ignored by the feature extractor
    folder = tmp_path_factory.mktemp("vgg")
    raw = folder / "raw.pth"
    torch.save(state, raw)
    data = raw.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    path = folder / f"vgg19-{sha[:8]}.pth"
    raw.rename(path)
    return path, sha, state


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, tuple[bytes, str]] = {}
        self.hits: dict[str, int] = {}


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - quiet test output
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        self.server.hits[self.path] = self.server.hits.get(self.path, 0) + 1
        if self.path not in self.server.routes:
            self.send_error(404)
            return
        data, mode = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if mode == "cut" else data)


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _url(srv: _Server, name: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/{name}"


def _closed_port_url(name: str) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def _assert_same_state(loaded, original):
    assert set(loaded) == set(original)
    for key, value in original.items():
        assert torch.equal(loaded[key], value), key


def test_name_carries_the_hash_prefix_like_torch_hub():
    assert sha_prefix_from_name(VGG19_URL.rsplit("/", 1)[1]) == "dcbb9e9d"
    assert sha_prefix_from_name("my_vgg.pth") is None


def test_explicit_path_is_verified_by_its_name_and_loads(vgg_file, torch_home):
    path, sha, state = vgg_file
    result = load_vgg19_state_dict(str(path), allow_download=False, backbone="pretrained")
    assert result.source == "path" and result.backbone == "pretrained" and result.sha256 == sha
    _assert_same_state(result.state_dict, state)
    vgg = Vgg19Features(result.state_dict)
    assert torch.equal(vgg.features[28].weight, state["features.28.weight"])


def test_explicit_path_with_other_name_uses_expected_sha_or_reports_it(vgg_file, tmp_path, torch_home):
    path, sha, _ = vgg_file
    renamed = tmp_path / "weights.pth"
    renamed.write_bytes(path.read_bytes())
    ok = load_vgg19_state_dict(renamed, allow_download=False, backbone="pretrained", expected_sha256=sha.upper())
    assert ok.sha256 == sha and ok.note == ""
    unverified = load_vgg19_state_dict(renamed, allow_download=False, backbone="pretrained")
    assert unverified.sha256 == sha and sha in unverified.note
    wrong = ("0" if sha[0] != "0" else "1") + sha[1:12]
    with pytest.raises(ChecksumError, match=wrong):
        load_vgg19_state_dict(renamed, allow_download=False, backbone="random", expected_sha256=wrong)


def test_missing_explicit_path_is_an_error_even_with_random_backbone(tmp_path, torch_home):
    with pytest.raises(FommError, match="not found"):
        load_vgg19_state_dict(tmp_path / "nope.pth", allow_download=False, backbone="random")


def test_hub_cache_is_used_without_network(vgg_file, torch_home, server):
    path, sha, state = vgg_file
    url = _url(server, path.name)
    cached = torch_home / "hub" / "checkpoints" / path.name
    assert hub_checkpoint_path(url) == cached
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    result = load_vgg19_state_dict(None, allow_download=True, backbone="pretrained", url=url)
    assert result.source == "hub_cache" and result.path == str(cached) and result.sha256 == sha
    _assert_same_state(result.state_dict, state)
    assert server.hits == {}


def test_corrupt_hub_cache_file_is_rejected_not_used(vgg_file, torch_home):
    path, _, _ = vgg_file
    cached = torch_home / "hub" / "checkpoints" / path.name
    cached.parent.mkdir(parents=True)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="delete"):
        load_vgg19_state_dict(None, allow_download=False, backbone="random", url=_closed_port_url(path.name))


def test_download_lands_in_cache_verified_then_cache_is_reused(vgg_file, torch_home, server):
    path, sha, state = vgg_file
    server.routes[f"/{path.name}"] = (path.read_bytes(), "ok")
    url = _url(server, path.name)
    seen = []
    result = load_vgg19_state_dict(None, allow_download=True, backbone="pretrained", url=url,
                                   progress=lambda done, total: seen.append((done, total)))
    cached = torch_home / "hub" / "checkpoints" / path.name
    assert result.source == "download" and result.path == str(cached) and result.sha256 == sha
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)
    _assert_same_state(result.state_dict, state)
    again = load_vgg19_state_dict(None, allow_download=True, backbone="pretrained", url=url)
    assert again.source == "hub_cache" and server.hits[f"/{path.name}"] == 1


@pytest.mark.parametrize("mode", ["corrupt", "cut"])
def test_bad_download_leaves_nothing_in_cache(vgg_file, torch_home, server, mode):
    path, _, _ = vgg_file
    data = bytearray(path.read_bytes())
    if mode == "corrupt":
        data[100] ^= 0x01
    server.routes[f"/{path.name}"] = (bytes(data), mode if mode == "cut" else "ok")
    error = ChecksumError if mode == "corrupt" else FommError
    with pytest.raises(error, match="nothing was saved" if mode == "corrupt" else "stopped after"):
        # even the random fallback must not hide a corrupt download
        load_vgg19_state_dict(None, allow_download=True, backbone="pretrained", url=_url(server, path.name))
    folder = torch_home / "hub" / "checkpoints"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_corrupt_download_is_an_error_even_with_random_backbone(vgg_file, torch_home, server):
    path, _, _ = vgg_file
    server.routes[f"/{path.name}"] = (b"not the weights", "ok")
    with pytest.raises(ChecksumError):
        load_vgg19_state_dict(None, allow_download=True, backbone="random", url=_url(server, path.name))


def test_offline_download_fails_cleanly_with_what_to_do(torch_home):
    url = _closed_port_url("vgg19-dcbb9e9d.pth")
    with pytest.raises(FommError) as info:
        load_vgg19_state_dict(None, allow_download=True, backbone="pretrained", url=url, timeout=5)
    message = str(info.value)
    assert "cannot download" in message and "perceptual_backbone: random" in message
    assert str(torch_home / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message
    assert "\n" not in message
    fallback = load_vgg19_state_dict(None, allow_download=True, backbone="random", url=url, timeout=5)
    assert fallback.state_dict is None and fallback.log_params()["perceptual_backbone"] == "random"
    assert "cannot download" in fallback.note


def test_http_error_is_a_clean_error(torch_home, server):
    with pytest.raises(FommError, match="404"):
        download_file(_url(server, "vgg19-abcdef12.pth"), torch_home / "x.pth", expected_sha256="abcdef12")
    assert not (torch_home / "x.pth").exists()


def test_no_weights_and_no_download(torch_home):
    url = _closed_port_url("vgg19-dcbb9e9d.pth")
    with pytest.raises(FommError, match="allow_download"):
        load_vgg19_state_dict(None, allow_download=False, backbone="pretrained", url=url)
    result = load_vgg19_state_dict(None, allow_download=False, backbone="random", url=url)
    assert result.state_dict is None and result.backbone == "random" and result.source == "random"
    assert result.log_params() == {"perceptual_backbone": "random", "vgg_weights_source": "random"}


def test_file_that_is_not_vgg19_is_rejected(tmp_path, torch_home):
    raw = tmp_path / "raw.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, raw)
    sha = hashlib.sha256(raw.read_bytes()).hexdigest()
    path = raw.rename(tmp_path / f"vgg19-{sha[:8]}.pth")
    with pytest.raises(FommError, match="not a torchvision VGG-19"):
        load_vgg19_state_dict(path, allow_download=False, backbone="pretrained")


class _NotWeights:
    pass


def test_load_checkpoint_round_trip_and_clean_errors(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"step": 3, "weights": {"a": torch.arange(4.0)}}, good)
    loaded = load_checkpoint(good)
    assert loaded["step"] == 3 and torch.equal(loaded["weights"]["a"], torch.arange(4.0))
    with pytest.raises(FommError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[:50])
    with pytest.raises(FommError, match="cannot read checkpoint"):
        load_checkpoint(corrupt)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"obj": _NotWeights()}, unsafe)  # arbitrary pickles are refused (weights_only)
    with pytest.raises(FommError, match="cannot read checkpoint"):
        load_checkpoint(unsafe)
