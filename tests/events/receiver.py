"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 in a thread, answering each
POST as its plan says (status, headers, or "hang" until released) and keeping what came;
and a runsmtp with the webhooks role set up to reach it quickly."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.test import override_settings
from standardwebhooks import Webhook

from tests.relay.conftest import SERVER_ENV
from tests.relay.smtp_helpers import Server


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    time: float
    status: int = 0  # what the receiver answered (0 until it has)

    def verified(self, secret: str) -> dict:
        """The JSON body, after the `standardwebhooks` library has checked the signature
        (WebhookVerificationError otherwise)."""
        return Webhook(secret).verify(self.body, self.headers)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.plan: list[tuple | str] = []  # consumed one per request; then 200
        self.delay = 0.0  # seconds each answer waits (POSTs in flight for longer)
        self.release = threading.Event()
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = Request(self.path, {k.lower(): v for k, v in self.headers.items()},
                                  body, time.monotonic())
                with receiver._cond:
                    receiver.requests.append(request)
                    action = receiver.plan.pop(0) if receiver.plan else (200, {}, b"thanks")
                    receiver._cond.notify_all()
                if receiver.delay:
                    time.sleep(receiver.delay)
                if action == "hang":
                    receiver.release.wait(60)
                    action = (200, {}, b"late")
                status, headers, text = action
                request.status = status
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait(self, count: int, timeout: float = 30) -> list[Request]:
        """Block until ``count`` requests have come; all of them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.requests)} of {count} webhook POSTs came"
                self._cond.wait(left)
            return list(self.requests)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


HOOK_ENV = {
    **SERVER_ENV,
    "DELIVERY_MODE": "capture",
    "WEBHOOK_ALLOW_HTTP": "true",
    "WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on 127.0.0.1
    "WEBHOOK_RETRY_FIRST": "0.3",
    "WEBHOOK_RETRY_MAX": "1",
    "WEBHOOK_RETRY_WINDOW": "4",
    "WEBHOOK_LEASE": "2",
    "WEBHOOK_POLL_INTERVAL": "0.2",
    "WEBHOOK_CACHE_SECONDS": "0",
    "WEBHOOK_TIMEOUT": "3",
}
LOCAL = override_settings(WEBHOOK_ALLOW_HTTP=True, WEBHOOK_ALLOW_PRIVATE=True)


def start(tls_files, tmp_path_factory, **env) -> Server:
    return Server(cert=tls_files[0], key=tls_files[1], env_extra={**HOOK_ENV, **env},
                  workdir=tmp_path_factory.mktemp("runsmtp")).start()


def no_traceback(server: Server) -> None:
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]
