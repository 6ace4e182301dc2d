"""A real HTTP file server on 127.0.0.1 for fetch tests.

Serves in-memory files with a strong ETag (the content's SHA-256) and Last-Modified, honours
``Range: bytes=N-`` and ``If-Range`` (RFC 9110: a validator that does not match the current file
gets the whole file with 200), and can misbehave on demand: drop the connection after some bytes,
answer 500 a number of times, ignore Range or If-Range, send no validators, send no
Content-Length (a body delimited by closing the connection), redirect in a loop, compress the
body with gzip whatever the client asked for, send bytes one at a time with a pause (a trickle).
A file may be replaced between requests (`files[path] = new bytes`).
"""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Behaviour:
    """Misbehaviour switches; `requests` records (path, Range header) and `if_range` the If-Range of every GET."""

    drop_after: int | None = None  # close the connection after this many body bytes (once)
    fail_times: int = 0  # answer HTTP 500 this many times first
    ignore_range: bool = False
    ignore_if_range: bool = False  # resume from Range even when If-Range does not match (a broken server)
    validators: bool = True  # send ETag and Last-Modified
    content_length: bool = True  # False: no Content-Length, the body ends when the connection closes
    redirect_loop: bool = False
    gzip: bool = False  # send the body gzip-compressed (Content-Encoding: gzip), even to "identity"
    gzipped: bool = False  # the served bytes are gzip already (a bomb): send them as they are, as gzip
    trickle: float | None = None  # send the body a byte at a time, this many seconds apart
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    if_range: list[str | None] = field(default_factory=list)
    accept_encoding: list[str | None] = field(default_factory=list)


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-body (as a download given up does) is no error of the server's."""

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class FileServer:
    """``with FileServer({"/a.pth": data}) as srv: srv.url("/a.pth")``."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.behaviour = Behaviour()
        self.modified: dict[str, float] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

            def _empty(self, status: int, **headers: str) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key.replace("_", "-"), value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                b = outer.behaviour
                rng = self.headers.get("Range")
                b.requests.append((self.path, rng))
                b.if_range.append(self.headers.get("If-Range"))
                b.accept_encoding.append(self.headers.get("Accept-Encoding"))
                if b.redirect_loop:
                    self._empty(302, Location=self.path + ("x" if len(self.path) < 60 else ""))
                    return
                if b.fail_times > 0:
                    b.fail_times -= 1
                    self._empty(500)
                    return
                data = outer.files.get(self.path)
                if data is None:
                    self._empty(404)
                    return
                etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
                modified = formatdate(
                    outer.modified.setdefault(self.path + etag, len(outer.modified) + 1e9), usegmt=True
                )
                if b.gzip:
                    data = gzip.compress(data, compresslevel=6, mtime=0)
                start = 0
                condition = self.headers.get("If-Range")
                honour = (
                    not (b.gzip or b.gzipped)
                    and rng
                    and not b.ignore_range
                    and (b.ignore_if_range or condition in (None, etag, modified))
                )
                if honour:
                    assert rng is not None
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self._empty(416, Content_Range=f"bytes */{len(data)}")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                if b.gzip or b.gzipped:
                    self.send_header("Content-Encoding", "gzip")
                if b.validators:
                    self.send_header("ETag", etag)
                    self.send_header("Last-Modified", modified)
                if b.content_length:
                    self.send_header("Content-Length", str(len(data) - start))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                body = data[start:]
                if b.trickle is not None:
                    try:
                        for i in range(len(body)):
                            self.wfile.write(body[i : i + 1])
                            self.wfile.flush()
                            time.sleep(b.trickle)
                    except OSError:  # the client gave up
                        self.close_connection = True
                    return
                if b.drop_after is not None:
                    cut, b.drop_after = b.drop_after, None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.close()
                    return
                try:
                    self.wfile.write(body)
                except OSError:  # the client stopped reading (as it should, e.g. from a gzip bomb)
                    self.close_connection = True

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        """The full URL of a served path."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port_url(path: str = "/x.pth") -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def gzip_bomb(decoded: int) -> bytes:
    """A gzip body that decodes to `decoded` zero bytes (about 1/1000 of that on the wire)."""
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    block = bytes(1 << 20)
    parts = [packer.compress(block) for _ in range(decoded >> 20)]
    return b"".join([*parts, packer.flush()])
