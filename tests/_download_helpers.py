"""A loopback HTTP server for the download tests, and the small mp4 files it serves.

The server answers each request to a path from a per-path script (first request 503,
second 404, ...), so a test can stage any sequence of failures yt-dlp will meet, and it
counts requests per path so a test can prove what was (not) requested again.
"""

from __future__ import annotations

import collections
import http.server
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

OK = "ok"
DROP = "drop"  # close the connection before sending any header
CUT = "cut"  # send the headers and half of the body, then close
STALL = "stall"  # wait ``Route.stall_s`` before answering (to trip the client's timeout)


def make_fixture_mp4(path: Path, seconds: float, tone: int = 440) -> Path:
    """A 640x360 25 fps H.264 + AAC test video made with ffmpeg's lavfi sources."""
    cmd = [
        "ffmpeg", "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=25:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=22050:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "38", "-pix_fmt", "yuv420p", "-g", "25",
        "-c:a", "aac", "-b:a", "32k", "-shortest", "-movflags", "+faststart", str(path),
    ]
    subprocess.run(cmd, check=True)
    return path


def probe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    return float(out.strip())


@dataclass
class Route:
    data: bytes
    content_type: str = "video/mp4"
    script: list = field(default_factory=list)  # one action per request, then OK forever
    chunk_size: int = 64 * 1024
    chunk_delay: float = 0.0
    retry_after: int = 0
    stall_s: float = 2.0


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format, *args):  # noqa: A002 - keep test output clean
        pass

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        action, route = self.server.owner._next(self.command, path, self.headers.get("Cookie", ""))
        if route is None:
            self._status_only(404)
            return
        if action == STALL:
            time.sleep(route.stall_s)
            action = OK
        if action == DROP:
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if isinstance(action, int):
            extra = {"Retry-After": str(route.retry_after)} if action == 429 else {}
            self._status_only(action, extra)
            return
        data, start = route.data, 0
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes=") and "," not in rng:
            first, _, last = rng[len("bytes="):].partition("-")
            start = int(first or 0)
            stop = int(last) + 1 if last else len(data)
            if start >= len(data):
                self._status_only(416, {"Content-Range": f"bytes */{len(data)}"})
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
            data = data[start:stop]
        else:
            self.send_response(200)
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if not body:
            return
        if action == CUT:
            data = data[: len(data) // 2]
        try:
            for offset in range(0, len(data), route.chunk_size):
                self.wfile.write(data[offset: offset + route.chunk_size])
                self.wfile.flush()
                if route.chunk_delay:
                    time.sleep(route.chunk_delay)
        except (BrokenPipeError, ConnectionResetError):
            return
        if action == CUT:
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    def _status_only(self, code: int, headers: dict | None = None) -> None:
        payload = f"status {code}".encode()
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: "LoopbackServer"


class LoopbackServer:
    """``http.server.ThreadingHTTPServer`` on 127.0.0.1:0 in a thread, with scripted routes."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.counts: collections.Counter = collections.Counter()
        self.log: list[tuple[str, str, object]] = []
        self.cookies: list[str] = []  # the Cookie header of every request
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def add(self, path: str, data: bytes, script=(), **kwargs) -> str:
        self.routes[path] = Route(data=data, script=list(script), **kwargs)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests(self, path: str, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for m, p, _ in self.log if p == path and (method is None or m == method))

    def _next(self, method: str, path: str, cookie: str = ""):
        with self._lock:
            self.cookies.append(cookie)
            route = self.routes.get(path)
            action = OK
            if route is not None and route.script:
                action = route.script.pop(0)
            self.log.append((method, path, action))
            self.counts[path] += 1
            return action, route
