"""Shared fixtures: an isolated data folder, the real downloaded data, a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: Real data files shared by the developers' checkouts (not part of the repository).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _session_data_dir(tmp_path_factory: pytest.TempPathFactory):
    """Every test runs with ``SCELMO_DATA_DIR`` in a temporary folder, never the user's cache.

    The real Geneformer V1 dictionaries are linked into it when they are available, so code
    that fetches them by default works offline.
    """
    folder = tmp_path_factory.mktemp("scelmo-data")
    source = SHARED_DATA / "geneformer_v1"
    if source.is_dir():
        (folder / "geneformer_v1").mkdir()
        # Links to the files (not to the folder), so that nothing scelmo writes can land in the
        # shared folder: a re-download would replace the link, not the file behind it.
        for file in source.glob("*.pkl"):
            (folder / "geneformer_v1" / file.name).symlink_to(file)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCELMO_DATA_DIR", str(folder))
        yield folder


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``SCELMO_DATA_DIR`` for this test only."""
    folder = tmp_path / "scelmo-data"
    monkeypatch.setenv("SCELMO_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def real_data_dir(_session_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The session's ``SCELMO_DATA_DIR``, with the real Geneformer V1 dictionaries (else skip).

    Conversions written to its ``derived/`` folder are reused by later tests.
    """
    if not (_session_data_dir / "geneformer_v1").is_dir():
        pytest.skip(
            f"needs the real Geneformer V1 dictionaries in {SHARED_DATA / 'geneformer_v1'}, which is absent"
        )
    monkeypatch.setenv("SCELMO_DATA_DIR", str(_session_data_dir))
    return _session_data_dir


@dataclass
class LocalServer:
    """A real HTTP server on 127.0.0.1 serving the files in ``root``; it records request paths."""

    root: Path
    port: int = 0
    requests: list[str] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def add(self, name: str, content: bytes) -> str:
        """Serve ``content`` as ``name``; returns its URL."""
        (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        (self.root / name).write_bytes(content)
        return self.url(name)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def http_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A :class:`LocalServer`; ``http_server.stop()`` simulates the host going offline."""
    # A proxy configured in the environment must not intercept requests to this machine.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "served"
    root.mkdir()
    server = LocalServer(root=root)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            server.requests.append(self.path)
            super().do_GET()

        def log_message(self, format, *args):  # quiet test output
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    server.port = httpd.server_address[1]
    server._server = httpd
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.stop()
    thread.join(timeout=5)
    shutil.rmtree(root, ignore_errors=True)
