"""A real HTTP file server on 127.0.0.1 for fetch tests.

Serves in-memory files, honours ``Range: bytes=N-``, and can misbehave on demand: drop the
connection after some bytes, answer 500 a number of times, or ignore Range.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Behaviour:
    """Misbehaviour switches; `requests` records (path, Range header) of every GET."""

    drop_after: int | None = None  # close the connection after this many body bytes (once)
    fail_times: int = 0  # answer HTTP 500 this many times first
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class FileServer:
    """``with FileServer({"/a.pth": data}) as srv: srv.url("/a.pth")``."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.behaviour = Behaviour()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_GET(self) -> None:
                b = outer.behaviour
                rng = self.headers.get("Range")
                b.requests.append((self.path, rng))
                if b.fail_times > 0:
                    b.fail_times -= 1
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = outer.files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                if rng and not b.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if b.drop_after is not None:
                    cut, b.drop_after = b.drop_after, None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.close()
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
