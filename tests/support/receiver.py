"""A real HTTP server in the test process that records every request it receives (the webhook
peer for simulator tests)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    raw_path: str = ""


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    status: int = 204
    #: Seconds to wait before reading a request (a slow peer), and the paths of requests begun.
    delay: float = 0.0
    begun: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def clear(self) -> None:
        self.requests.clear()
        self.begun.clear()
        self.status = 204
        self.delay = 0.0

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_receiver() -> Receiver:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            holder["r"].begun.append(self.path)
            time.sleep(holder["r"].delay)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            holder["r"].requests.append(
                Received(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                         {k.lower(): v for k, v in self.headers.items()}, body, self.path)
            )  # fmt: skip
            self.send_response(holder["r"].status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _record

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(server)
    holder["r"] = receiver
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver
