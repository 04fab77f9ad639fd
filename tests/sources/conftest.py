"""A local HTTP server that replays stored service responses and injects faults.

Tests add routes: ``server.route(path, reply_or_callable, ...)``. Each route answers with its
replies in turn (the last one repeats); a callable receives the `Request` and returns a `Reply`.
A path with no route goes to ``server.fallback`` (a callable) when one is set, else 404.
Every request is logged in ``server.requests``.
"""

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

DATA = Path(__file__).parent.parent / "data"


@dataclass
class Reply:
    """One scripted answer."""

    body: bytes = b""
    status: int = 200
    headers: dict = field(default_factory=dict)
    content_type: str = "application/octet-stream"
    delay: float = 0.0  # seconds to wait before answering (a slow server)
    truncate_to: int = None  # send only this many bytes of body, announcing all of it


@dataclass
class Request:
    method: str
    path: str
    params: dict
    form: dict
    headers: dict


class FakeService:
    def __init__(self):
        self.routes = {}
        self.requests = []
        self._lock = threading.Lock()
        self.httpd = None
        self.fallback = None  # answers the paths no route names (e.g. /tap/async/{job id})

    @property
    def url(self):
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, path, *replies):
        """Answer ``path`` with ``replies`` in turn, the last one repeating."""
        self.routes[path] = list(replies)

    def requests_to(self, path):
        return [r for r in self.requests if r.path == path]

    def _answer(self, request):
        with self._lock:
            self.requests.append(request)
            replies = self.routes.get(request.path)
            if not replies and self.fallback is not None:
                reply = self.fallback
                replies = None
            elif not replies:
                return Reply(b"not found", status=404, content_type="text/plain")
            else:
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
        return reply(request) if callable(reply) else reply


def _handler_class(service):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def _handle(self):
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            request = Request(self.command, parts.path,
                              dict(parse_qsl(parts.query, keep_blank_values=True)),
                              dict(parse_qsl(body)), dict(self.headers))
            reply = service._answer(request)
            if reply.delay:
                time.sleep(reply.delay)
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if reply.truncate_to is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                body = reply.body if reply.truncate_to is None else reply.body[:reply.truncate_to]
                self.wfile.write(body)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (time-out)
                pass
            if reply.truncate_to is not None:
                self.close_connection = True

        do_GET = do_POST = do_DELETE = do_PUT = _handle

    return Handler


@pytest.fixture
def fake_service():
    service = FakeService()
    service.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(service))
    service.httpd.daemon_threads = True
    thread = threading.Thread(target=service.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    yield service
    service.httpd.shutdown()
    service.httpd.server_close()
    thread.join(5)


@pytest.fixture
def stored():
    """Read a stored response file from tests/data as bytes."""
    def read(name):
        return (DATA / name).read_bytes()
    return read

