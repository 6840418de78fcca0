"""A threaded HTTP server on 127.0.0.1 with scripted failures, request log and a stop-after-N switch."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Fault:
    """An error answer to give instead of a real one."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


@dataclass
class Raw:
    """An answer body sent as these exact bytes (not JSON-encoded): broken JSON, an HTML page."""

    data: bytes
    content_type: str = "application/json"


@dataclass
class Request:
    """One request as the server saw it; ``received`` is its arrival time (``time.monotonic()``)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)


class FakeService:
    """Base class: subclasses implement :meth:`handle` (method, path, request) -> (status, headers, payload).

    Use as a context manager; ``url`` is the root. ``requests`` lists every request,
    ``answered`` counts the real (non-fault) answers. ``delay`` slows every answer, faults
    included, by that many seconds. After ``answer_limit`` real answers the server stops
    answering (it holds requests until ``release`` is set), or, with ``over_limit_status``,
    answers that status to every further request.
    """

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.over_limit_status: int | None = None
        self.requests: list[Request] = []
        self.answered = 0
        self._admitted = 0
        self.answer_limit: int | None = None
        self.held = 0
        self.release = threading.Event()
        self._faults: dict[str, deque[Fault]] = {}
        self._lock = threading.Lock()
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting -------------------------------------------------------------------------------

    def fail(
        self,
        path: str,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """The next ``times`` requests to ``path`` get ``status`` (with ``headers``) instead of an answer."""
        with self._lock:
            queue = self._faults.setdefault(path, deque())
            queue.extend(Fault(status, dict(headers or {}), body) for _ in range(times))

    def requests_to(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self.answered = 0
            self._admitted = 0
            self.answer_limit = None
            self.over_limit_status = None
            self.held = 0

    # -- subclass hooks --------------------------------------------------------------------------

    def handle(self, request: Request) -> tuple[int, dict[str, str], Any]:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> Any:
        return {"error": message}

    # -- serving ---------------------------------------------------------------------------------

    def _respond(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        request = Request(
            handler.command,
            handler.path.split("?")[0],
            {k.lower(): v for k, v in handler.headers.items()},
            handler.rfile.read(length) if length else b"",
            time.monotonic(),
        )
        with self._lock:
            self.requests.append(request)
            queue = self._faults.get(request.path)
            fault = queue.popleft() if queue else None
            # Counted on arrival, so that concurrent requests cannot slip past the limit.
            hold = fault is None and self.answer_limit is not None and self._admitted >= self.answer_limit
            if hold and self.over_limit_status is not None:
                hold, fault = False, Fault(self.over_limit_status)
            if hold:
                self.held += 1
            elif fault is None:
                self._admitted += 1
        if hold:
            # Simulates a server that stopped answering: the client waits until it is killed.
            self.release.wait(timeout=60)
            fault = Fault(503)
        if self.delay:
            time.sleep(self.delay)
        if fault is not None:
            status, headers = fault.status, fault.headers
            payload = (
                fault.body
                if fault.body is not None
                else self.error_body(fault.status, f"injected {fault.status}")
            )
        else:
            status, headers, payload = self.handle(request)
            if 200 <= status < 300:
                with self._lock:
                    self.answered += 1
        if isinstance(payload, Raw):
            data, content_type = payload.data, payload.content_type
        else:
            data, content_type = json.dumps(payload).encode(), "application/json"
        try:
            handler.send_response(status)
            handler.send_header("content-type", content_type)
            handler.send_header("content-length", str(len(data)))
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client is gone (killed on purpose in the resume test)

    def __enter__(self) -> FakeService:
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                service._respond(self)

            def do_GET(self) -> None:
                service._respond(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that hangs up (killed, interrupted) is part of the tests, not an error.
                pass

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def root(self) -> str:
        assert self._httpd is not None, "start the server with `with service:`"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"
