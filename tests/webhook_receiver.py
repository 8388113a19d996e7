"""A webhook receiver for tests: a real HTTP server that checks signatures and can be down."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support import free_port

__all__ = ["Receiver", "running_receiver"]


class Receiver(ThreadingHTTPServer):
    """Records every delivery; answers 503 while ``down``; accepts each event id once.

    ``delay``: seconds it takes to answer each delivery. ``keep_alive``: HTTP/1.1 connections
    kept open between deliveries, as a receiver behind any web server keeps them.
    """

    # socketserver's default backlog is 5: twenty deliveries at once overflowed it and were
    # reset, which a real receiver behind a web server would not do.
    request_queue_size = 128

    def __init__(self, secret: str, *, delay: float = 0.0, keep_alive: bool = False) -> None:
        handler = _KeepAliveHandler if keep_alive else _Handler
        super().__init__(("127.0.0.1", free_port()), handler)
        self.secret = secret
        self.delay = delay
        self.last = 0.0
        """When it last accepted an event (epoch seconds)."""
        self.down = False
        self.lock = threading.Lock()
        self.attempts: list[str] = []
        self.accepted: dict[str, dict[str, Any]] = {}
        self.duplicates: list[str] = []
        self.bad_signatures: list[str] = []

    @property
    def url(self) -> str:
        """Where to register this receiver."""
        return f"http://127.0.0.1:{self.server_address[1]}/events"

    def events(self) -> list[dict[str, Any]]:
        """The accepted events, in arrival order."""
        with self.lock:
            return list(self.accepted.values())

    def verify(self, event_id: str, timestamp: str, body: bytes, signature: str) -> bool:
        """The check a receiver makes, written from the Standard Webhooks description."""
        message = f"{event_id}.{timestamp}.".encode() + body
        expected = hmac.new(self.secret.encode(), message, hashlib.sha256).digest()
        presented = [s.partition(",")[2] for s in signature.split() if s.startswith("v1,")]
        return any(hmac.compare_digest(base64.b64decode(p), expected) for p in presented if p)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.server.delay:
            time.sleep(self.server.delay)
        event_id = self.headers.get("webhook-id", "")
        with self.server.lock:
            self.server.attempts.append(event_id)
            if self.server.down:
                self._answer(503)
                return
            signed = self.server.verify(
                event_id,
                self.headers.get("webhook-timestamp", ""),
                body,
                self.headers.get("webhook-signature", ""),
            )
            if not signed:
                self.server.bad_signatures.append(event_id)
                self._answer(401)
                return
            if event_id in self.server.accepted:
                self.server.duplicates.append(event_id)
            else:
                self.server.accepted[event_id] = json.loads(body)
                self.server.last = time.time()
        self._answer(200)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


class _KeepAliveHandler(_Handler):
    protocol_version = "HTTP/1.1"


@contextmanager
def running_receiver(secret: str, *, keep_alive: bool = False) -> Iterator[Receiver]:
    """A receiver serving in a thread for the duration of the block."""
    server = Receiver(secret, keep_alive=keep_alive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
