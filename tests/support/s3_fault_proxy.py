"""A fault-injecting HTTP proxy in front of the S3 server, for the fault suite.

For a seeded share of requests it does one of three things S3 and networks really do:

* ``refused``: answers ``503 SlowDown`` without forwarding (the request was not applied);
* ``lost_answer``: forwards the request, then answers ``500 InternalError`` (it *was* applied, and
  the client cannot know: the case that makes retries need idempotence);
* ``reset``: drops the connection without an answer (RST).

Everything else is passed through, bodies streamed both ways. ``GET /__faults__`` reports the counts;
``PUT /__faults__`` with ``{"rate": 0.1}`` changes the share, and with ``{"deny_buckets": ["b"]}``
answers every request for those buckets ``403 AccessDenied``, as a bucket policy turned against us
would. AssumeRole requests passing through (to moto's STS) are counted. Run it as
``python -m tests.support.s3_fault_proxy --port P --upstream http://127.0.0.1:S3 --rate 0.1``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULTS = ("refused", "lost_answer", "reset")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
CHUNK = 64 * 1024

S3_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
    "<RequestId>fault-proxy</RequestId></Error>"
)


class FaultState:
    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self.rng = random.Random(seed)
        self.counts = {"requests": 0, "assume_role": 0, **dict.fromkeys(FAULTS, 0)}
        #: Buckets answered 403 AccessDenied (a customer's bucket policy turned against us).
        self.denied: set[str] = set()
        self.lock = threading.Lock()

    def pick(self) -> str | None:
        with self.lock:
            self.counts["requests"] += 1
            if self.rng.random() >= self.rate:
                return None
            fault = self.rng.choice(FAULTS)
            self.counts[fault] += 1
            return fault

    def report(self) -> dict[str, object]:
        with self.lock:
            return {"rate": self.rate, "deny_buckets": sorted(self.denied), **self.counts}


def make_handler(upstream: str, state: FaultState) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def _control(self) -> None:
            if self.command == "PUT":
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                state.rate = float(body.get("rate", state.rate))
                state.denied = set(body.get("deny_buckets", state.denied))
            payload = json.dumps(state.report()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _reset(self) -> None:
            """Close with RST: SO_LINGER on, zero timeout."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def _error(self, status: int, code: str, message: str) -> None:
            body = S3_ERROR.format(code=code, message=message).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(body)))
            self.end_headers()
            if self.command != "HEAD":  # an answer to HEAD has no body
                self.wfile.write(body)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _proxy(self) -> None:
            if self.path.startswith("/__faults__"):
                self._control()
                return
            # Read whole: requests here are small (the fault suite's media are a few seconds long).
            body = self._read_body()
            if b"Action=AssumeRole" in body:
                with state.lock:
                    state.counts["assume_role"] += 1
            bucket = self.path.split("?", 1)[0].lstrip("/").split("/", 1)[0]
            if bucket in state.denied:
                self._error(403, "AccessDenied", "Access Denied (injected)")
                return
            fault = state.pick()
            if fault == "refused":
                self._error(503, "SlowDown", "Please reduce your request rate. (injected)")
                return
            if fault == "reset":
                self._reset()
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            upstream_conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
            try:
                upstream_conn.request(self.command, self.path, body=body, headers=headers)
                response = upstream_conn.getresponse()
                if fault == "lost_answer":
                    response.read()
                    self._error(500, "InternalError", "We encountered an internal error. (injected)")
                    return
                self._relay(response)
            finally:
                upstream_conn.close()

        def _relay(self, response: http.client.HTTPResponse) -> None:
            length = response.getheader("Content-Length")
            payload = None if length is not None or self.command == "HEAD" else response.read()
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            if self.command == "HEAD" or length is not None:
                self.send_header("Content-Length", length or "0")
            else:
                assert payload is not None
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if payload is not None:
                self.wfile.write(payload)
                return
            while chunk := response.read(CHUNK):
                self.wfile.write(chunk)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _proxy

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the S3 server, e.g. http://127.0.0.1:9000")
    parser.add_argument("--rate", type=float, default=0.1, help="share of requests that fail")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port), make_handler(args.upstream, FaultState(args.rate, args.seed))
    )
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
