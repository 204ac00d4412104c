"""A small real HTTP receiver on 127.0.0.1 for the webhook and SMS channel tests.

It records every request (path, query, headers, JSON body), counts the
``X-Xinshu-Key`` values it has accepted (so a re-delivery is seen as a
duplicate on the receiver's side), and answers like a WeCom/DingTalk group
robot (``{"errcode": 0, "errmsg": "ok"}``) or like the generic HTTP SMS gateway
(``{"ok": true, "duplicate": <key seen before>}``). ``fail_next`` makes the
next requests fail with an HTTP status or a robot ``errcode``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    answered: int


@dataclass
class Receiver:
    """Requests are kept in order; ``accepted`` counts successful deliveries per key."""

    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    accepted: Counter = field(default_factory=Counter)
    failures: list[tuple[int, dict | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def fail_next(self, count: int = 1, status: int = 500, body: dict | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (and ``body``) instead of success."""
        with self.lock:
            self.failures.extend([(status, body)] * count)

    def on(self, path_prefix: str) -> list[Request]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    def duplicates(self) -> dict[str, int]:
        """Keys accepted more than once, with how many extra deliveries each had."""
        return {key: count - 1 for key, count in self.accepted.items() if count > 1}

    def _answer(self, path: str, key: str | None) -> tuple[int, dict]:
        with self.lock:
            if self.failures:
                status, body = self.failures.pop(0)
                return status, body if body is not None else {"error": "receiver told to fail"}
            seen = bool(key) and self.accepted[key] > 0
            if key:
                self.accepted[key] += 1
        if path.startswith("/sms"):
            return 200, {"ok": True, "duplicate": seen}
        return 200, {"errcode": 0, "errmsg": "ok"}

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw.decode("utf-8"))
                except ValueError:
                    body = raw
                parts = urlsplit(self.path)
                status, answer = receiver._answer(parts.path, self.headers.get("X-Xinshu-Key"))
                receiver.requests.append(
                    Request(parts.path, parse_qs(parts.query), dict(self.headers.items()), body, status)
                )
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
