"""Faults of files, downloads and the data folder: links out of the folder, writes that fail
part-way, runs killed during a download, damaged tables and registries.

Writes fail for real: ``RLIMIT_FSIZE`` makes the kernel refuse to grow any file past a size
(``EFBIG``), exactly where a full disk would refuse with ``ENOSPC``. Downloads come from a real
HTTP server on 127.0.0.1; the killed runs are real ``scelmo fetch`` processes.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import scelmo as se
import scelmo.datasets as ds
from scelmo import _atomic
from scelmo.cli import main
from scelmo.datasets._archives import record_member
from scelmo.datasets._derived import derived_path, load_derived

resource = pytest.importorskip("resource")  # POSIX only: file size limits
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals, links and file size limits")


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".tmp-"))


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@contextlib.contextmanager
def disk_full_after(nbytes: int):
    """Every file write past ``nbytes`` fails with EFBIG, as on a disk that filled up."""
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def table(n_genes: int, seed: int) -> se.GeneEmbeddings:
    rng = np.random.default_rng(seed)
    return se.GeneEmbeddings([f"G{i}" for i in range(n_genes)], rng.normal(size=(n_genes, 64)))


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the data folder, which nothing may write into."""
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


# --- 2. links out of the data folder ---------------------------------------------------------


def test_download_through_a_linked_subfolder_is_refused(data_dir, http_server, outside):
    content = b"gene\tvalue\n" * 100
    ds.register("table", url=http_server.add("t.tsv", content), sha256=sha(content))
    (data_dir / "table").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="Refusing to write") as err:
        ds.fetch("table", progressbar=False)
    message = str(err.value)
    assert f"{data_dir / 'table'} is a symbolic link to {outside}" in message
    assert "outside the data folder" in message
    assert "remove the link" in message
    assert files_under(outside) == {}
    assert http_server.requests == []  # refused before anything was downloaded


def test_download_over_a_linked_file_is_refused_and_the_file_behind_it_kept(data_dir, http_server, outside):
    content = b"new version\n"
    ds.register("table", url=http_server.add("t.tsv", content), sha256=sha(content))
    (outside / "t.tsv").write_bytes(b"someone else's file\n")
    (data_dir / "table").mkdir(parents=True)
    (data_dir / "table" / "t.tsv").symlink_to(outside / "t.tsv")
    with pytest.raises(ValueError, match=r"t\.tsv is a symbolic link to .*outside the data folder"):
        ds.fetch("table", progressbar=False)
    assert (data_dir / "table" / "t.tsv").is_symlink()
    assert files_under(outside) == {"t.tsv": b"someone else's file\n"}
    assert leftovers(data_dir) == []


def test_a_linked_file_with_the_registered_hash_is_still_read(data_dir, http_server, outside):
    # Reading through a link is fine (a copy placed by hand); only writing through one is not.
    content = b"the published bytes\n"
    ds.register("table", url=http_server.add("t.tsv", content), sha256=sha(content))
    (outside / "t.tsv").write_bytes(content)
    (data_dir / "table").mkdir(parents=True)
    (data_dir / "table" / "t.tsv").symlink_to(outside / "t.tsv")
    assert ds.fetch("table", progressbar=False).read_bytes() == content
    assert http_server.requests == []


def test_member_extraction_through_a_linked_folder_is_refused(data_dir, http_server, outside):
    archive = zip_bytes({"tables/genes.bin": b"x" * 1000})
    ds.register("arch", url=http_server.add("arch.zip", archive), sha256=sha(archive))
    ds.register("genes", archive="arch", member="tables/genes.bin", sha256="unknown")
    (data_dir / "arch").mkdir(parents=True)
    (data_dir / "arch" / "tables").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match=r"arch/tables is a symbolic link to .*outside the data folder"):
        ds.fetch("genes", progressbar=False)
    assert files_under(outside) == {}
    assert leftovers(data_dir) == []


def test_manifest_through_a_linked_folder_is_refused(data_dir, http_server, outside):
    archive = zip_bytes({"genes.bin": b"x" * 1000})
    ds.register("arch", url=http_server.add("arch.zip", archive), sha256=sha(archive))
    ds.register("genes", archive="arch", member="genes.bin", sha256="unknown")
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "extracted").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match=r"extracted is a symbolic link to .*outside the data folder"):
        ds.fetch("genes", progressbar=False)
    assert files_under(outside) == {}
    assert not (data_dir / "arch" / "genes.bin").exists()  # refused before extracting


def test_derived_file_through_a_linked_folder_is_refused(data_dir, outside):
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "derived").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match=r"derived is a symbolic link to .*outside the data folder"):
        load_derived(
            "thing",
            "a" * 64,
            ".json",
            build=lambda: {"a": 1},
            write=lambda obj, path: path.write_text(json.dumps(obj)),
            read=lambda path: json.loads(path.read_text()),
        )
    assert files_under(outside) == {}


def test_user_registry_that_is_a_link_out_is_not_written_through(data_dir, outside):
    (outside / "registry.json").write_text('{"entries": {}, "local": {}}')
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "registry.json").symlink_to(outside / "registry.json")
    with pytest.raises(ValueError, match=r"registry\.json is a symbolic link to .*outside the data folder"):
        ds.register("mine", url="https://example.org/x.bin", sha256="unknown")
    assert (outside / "registry.json").read_text() == '{"entries": {}, "local": {}}'
    assert (data_dir / "registry.json").is_symlink()


def test_a_data_folder_that_is_itself_a_link_is_fine(tmp_path, monkeypatch, http_server):
    real = tmp_path / "big-disk" / "scelmo"
    real.mkdir(parents=True)
    (tmp_path / "cache").symlink_to(real, target_is_directory=True)
    monkeypatch.setenv("SCELMO_DATA_DIR", str(tmp_path / "cache"))
    content = b"bytes\n"
    ds.register("table", url=http_server.add("t.tsv", content), sha256=sha(content))
    assert ds.fetch("table", progressbar=False).read_bytes() == content
    assert (real / "table" / "t.tsv").read_bytes() == content


# --- 4. writes that fail part-way --------------------------------------------------------------


def test_gene_table_write_on_a_full_disk_keeps_the_old_table(tmp_path):
    path = tmp_path / "genes.npz"
    old = table(200, seed=0)
    old.write(path)
    before = path.read_bytes()
    with disk_full_after(4096), pytest.raises(OSError, match="File too large") as err:
        table(300, seed=1).write(path)
    assert path.read_bytes() == before
    assert se.GeneEmbeddings.read(path) == old
    assert leftovers(tmp_path) == []
    assert f"Could not save the gene table {path}" in str(err.value)
    assert "is unchanged" in str(err.value)


def test_gene_table_write_interrupted_keeps_the_old_table(tmp_path, monkeypatch):
    path = tmp_path / "genes.npz"
    old = table(50, seed=0)
    old.write(path)
    real = np.lib.format.write_array
    calls = []

    def write_then_stop(fp, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the vectors, after the genes were written
            fp.write(b"\0" * 100)
            raise KeyboardInterrupt
        return real(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        table(60, seed=1).write(path)
    monkeypatch.undo()
    assert se.GeneEmbeddings.read(path) == old
    assert leftovers(tmp_path) == []


def test_download_on_a_full_disk_keeps_the_old_file(data_dir, http_server):
    content = bytes(range(256)) * 80
    ds.register("table", url=http_server.add("t.bin", content), sha256=sha(content))
    (data_dir / "table").mkdir(parents=True)
    (data_dir / "table" / "t.bin").write_bytes(b"an older version")
    with disk_full_after(4096), pytest.raises(OSError, match=r"Could not download 'table'.*File too large"):
        ds.fetch("table", progressbar=False)
    assert (data_dir / "table" / "t.bin").read_bytes() == b"an older version"
    assert leftovers(data_dir) == []
    assert ds.fetch("table", progressbar=False).read_bytes() == content


def test_download_interrupted_by_ctrl_c_leaves_no_temporary_file(data_dir, http_server, monkeypatch):
    import pooch

    content = b"x" * 10_000
    ds.register("table", url=http_server.add("t.bin", content), sha256=sha(content))
    (data_dir / "table").mkdir(parents=True)
    (data_dir / "table" / "t.bin").write_bytes(b"an older version")

    def half_then_ctrl_c(self, url, output_file, pooch_):
        Path(output_file).write_bytes(content[:5000])
        raise KeyboardInterrupt

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", half_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        ds.fetch("table", progressbar=False)
    assert (data_dir / "table" / "t.bin").read_bytes() == b"an older version"
    assert leftovers(data_dir) == []


def test_member_extraction_on_a_full_disk_leaves_nothing(data_dir, http_server):
    member = b"m" * 20_000
    archive = zip_bytes({"genes.bin": member})
    ds.register("arch", url=http_server.add("arch.zip", archive), sha256=sha(archive))
    ds.register("genes", archive="arch", member="genes.bin", sha256="unknown")
    ds.fetch("arch", progressbar=False)  # the archive itself is already here
    with disk_full_after(4096), pytest.raises(OSError, match="File too large"):
        ds.fetch("genes", progressbar=False)
    assert not (data_dir / "arch" / "genes.bin").exists()
    assert not (data_dir / "extracted" / "arch.json").exists()
    assert leftovers(data_dir) == []
    assert ds.fetch("genes", progressbar=False).read_bytes() == member


def test_user_registry_save_on_a_full_disk_keeps_the_old_registry(data_dir):
    ds.register("first", url="https://example.org/first.bin", sha256="unknown")
    before = (data_dir / "registry.json").read_bytes()
    with disk_full_after(1024), pytest.raises(OSError, match="File too large"):
        ds.register("second", url="https://example.org/second.bin", sha256="unknown", description="d" * 5000)
    assert (data_dir / "registry.json").read_bytes() == before
    assert leftovers(data_dir) == []
    assert ds.entry("first")["url"] == "https://example.org/first.bin"


def test_manifest_save_on_a_full_disk_keeps_the_old_manifest(data_dir):
    manifest = data_dir / "extracted" / "arch.json"
    common = {"archive": "arch", "verified_by": "sha256:" + "0" * 64, "archive_sha256": "0" * 64}
    record_member(
        manifest, "arch/a.bin", **common, record={"entry": "a", "member": "a.bin", "sha256": "1" * 64}
    )
    before = manifest.read_bytes()
    with disk_full_after(1024), pytest.raises(OSError, match="File too large"):
        record_member(
            manifest, "arch/b.bin", **common, record={"entry": "b", "note": "n" * 5000, "sha256": "2" * 64}
        )
    assert manifest.read_bytes() == before
    assert leftovers(data_dir) == []


def test_derived_file_on_a_full_disk_is_not_kept(data_dir, caplog):
    obj = {"values": list(range(5000))}
    derived = {
        "build": lambda: obj,
        "write": lambda value, path: path.write_text(json.dumps(value)),
        "read": lambda path: json.loads(path.read_text()),
    }
    with disk_full_after(4096):
        assert load_derived("thing", "a" * 64, ".json", **derived) == obj
    assert "could not keep the converted file" in caplog.text
    assert list((data_dir / "derived").iterdir()) == []


def test_atomic_write_syncs_the_file_before_moving_it_in_place(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        os, "fsync", lambda fd: (events.append(("fsync", os.fstat(fd).st_size)), real_fsync(fd))
    )
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append(("replace", Path(b).name)), real_replace(a, b))
    )
    with _atomic.atomic_open(tmp_path / "state.json", "w", encoding="utf-8") as handle:
        handle.write("{}" * 10)
    assert events[:2] == [("fsync", 20), ("replace", "state.json")]
    assert (tmp_path / "state.json").read_text() == "{}" * 10


def test_atomic_folder_replaces_a_folder_whole_or_not_at_all(tmp_path):
    target = tmp_path / "checkpoint"
    with _atomic.atomic_folder(target) as tmp:
        (tmp / "a.bin").write_bytes(b"one")

    def half_then_stop():
        with _atomic.atomic_folder(target) as tmp:
            (tmp / "a.bin").write_bytes(b"two, half")
            raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        half_then_stop()
    assert files_under(target) == {"a.bin": b"one"}
    with _atomic.atomic_folder(target) as tmp:
        (tmp / "b.bin").write_bytes(b"two")
    assert files_under(target) == {"b.bin": b"two"}
    assert leftovers(tmp_path) == []


# --- 6. runs killed during a download ----------------------------------------------------------


class SlowFile:
    """A real HTTP server sending ``size`` bytes in 1 MiB pieces, ``pause`` seconds apart."""

    def __init__(self, size: int, pause: float) -> None:
        self.content = bytes(range(256)) * (size // 256)
        self.pause = pause
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-length", str(len(service.content)))
                self.end_headers()
                try:
                    for start in range(0, len(service.content), 1 << 20):
                        self.wfile.write(service.content[start : start + (1 << 20)])
                        self.wfile.flush()
                        time.sleep(service.pause)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client was killed

            def log_message(self, format, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/slow.bin"

    def __enter__(self) -> SlowFile:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_fetch(data_dir: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "SCELMO_DATA_DIR": str(data_dir), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    return subprocess.Popen(
        [sys.executable, "-m", "scelmo", "fetch", name, "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for_partial_download(proc: subprocess.Popen, folder: Path) -> Path:
    deadline = time.monotonic() + 120  # starting Python and importing scelmo is slow on a busy machine
    while time.monotonic() < deadline:
        partial = [p for p in folder.rglob(".tmp-*") if p.stat().st_size > 0]
        if partial:
            return partial[0]
        if proc.poll() is not None:
            raise AssertionError(f"fetch ended before downloading: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the download did not start")


@pytest.fixture
def slow_file(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with SlowFile(size=64 << 20, pause=0.2) as server:
        yield server


@pytest.mark.slow  # starts a real `scelmo fetch` process
def test_sigterm_during_fetch_removes_the_partial_download(data_dir, slow_file):
    ds.register("slow", url=slow_file.url, sha256=sha(slow_file.content))
    proc = start_fetch(data_dir, "slow")
    partial = wait_for_partial_download(proc, data_dir)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert (proc.returncode, leftovers(data_dir)) == (143, [])
    assert not (data_dir / "slow" / "slow.bin").exists()
    assert partial.name.startswith(f".tmp-{proc.pid}@")  # the writer's pid is in the name


@pytest.mark.slow  # starts a real `scelmo fetch` process
def test_sigkill_during_fetch_leaves_a_file_the_next_fetch_removes(data_dir, slow_file):
    ds.register("slow", url=slow_file.url, sha256=sha(slow_file.content))
    proc = start_fetch(data_dir, "slow")
    partial = wait_for_partial_download(proc, data_dir)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert leftovers(data_dir) == [partial.name]  # SIGKILL cannot be handled
    slow_file.pause = 0
    assert ds.fetch("slow", progressbar=False).read_bytes() == slow_file.content
    assert leftovers(data_dir) == []


def test_next_fetch_removes_abandoned_temporary_files_only(data_dir, http_server):
    content = b"bytes\n"
    ds.register("table", url=http_server.add("t.bin", content), sha256=sha(content))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid, host = int(gone.stdout), _atomic._HOST
    folder = data_dir / "other"
    folder.mkdir(parents=True)
    names = {
        "dead_writer": f".tmp-{dead_pid}@{host}-aaaa-x.bin",
        "live_writer": f".tmp-{os.getppid()}@{host}-bbbb-x.bin",
        "other_machine": f".tmp-{dead_pid}@00000000-cccc-x.bin",
        "old_format_fresh": ".tmp-0123456789abcdef0123456789abcdef-x.bin",
        "old_format_2h": ".tmp-fedcba9876543210fedcba9876543210-x.bin",
        "other_machine_2h": f".tmp-{dead_pid}@00000000-dddd-x.bin",
    }
    for name in names.values():
        (folder / name).write_bytes(b"half")
    two_hours_ago = time.time() - 7200
    for key in ("old_format_2h", "other_machine_2h"):
        os.utime(folder / names[key], (two_hours_ago, two_hours_ago))
    ds.fetch("table", progressbar=False)
    kept = {"live_writer", "other_machine", "old_format_fresh"}
    assert leftovers(data_dir) == sorted(names[key] for key in kept)


def test_sigterm_handler_is_installed_only_while_downloading(data_dir, http_server, monkeypatch):
    import pooch

    content = b"x" * 100
    ds.register("table", url=http_server.add("t.bin", content), sha256=sha(content))
    seen = []
    real = pooch.HTTPDownloader.__call__

    def spy(self, url, output_file, pooch_):
        seen.append(signal.getsignal(signal.SIGTERM))
        return real(self, url, output_file, pooch_)

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", spy)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ds.fetch("table", progressbar=False)
    assert seen == [_atomic._on_sigterm]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    # An application's own handler is left alone.
    (data_dir / "table" / "t.bin").unlink()
    own = lambda signum, frame: None  # noqa: E731
    previous = signal.signal(signal.SIGTERM, own)
    try:
        ds.fetch("table", progressbar=False)
        assert seen[-1] is own
        assert signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- 12. damaged gene tables -------------------------------------------------------------------


def npz_with_provenance(path: Path, provenance: str) -> None:
    np.savez(
        path,
        genes=np.asarray(["A", "B"]),
        vectors=np.eye(2, dtype=np.float32),
        provenance=np.asarray(provenance),
    )


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("empty", "is empty"),
        ("truncated", "damaged or incomplete"),
        ("not_a_zip", "damaged or incomplete"),
        ("bad_json", "provenance is not valid JSON"),
        ("json_list", "provenance is not a JSON object"),
    ],
)
def test_damaged_gene_table_names_the_file_and_the_fix(tmp_path, damage, says):
    path = tmp_path / "genes.npz"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        table(100, seed=0).write(path)
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "not_a_zip":
        path.write_bytes(b"\x93NUMPY" + b"\0" * 200)
    elif damage == "bad_json":
        npz_with_provenance(path, '{"text_source": "manual"')
    else:
        npz_with_provenance(path, "[1, 2]")
    with pytest.raises(ValueError, match="write it again") as err:
        se.GeneEmbeddings.read(path)
    assert type(err.value) is ValueError  # not a zipfile, EOF or JSON error
    message = str(err.value)
    assert str(path) in message
    assert says in message
    assert "\n" not in message


def test_damaged_gene_table_from_the_registry_says_to_fetch_again(data_dir):
    ds.register("mine", local_only=True, filename="mine/genes.npz", sha256="unknown")
    (data_dir / "mine").mkdir(parents=True)
    (data_dir / "mine" / "genes.npz").write_bytes(b"PK\x03\x04 half a zip")
    with pytest.raises(ValueError, match=r"mine/genes\.npz is damaged or incomplete.*fetch it again"):
        se.GeneEmbeddings.load("mine")


@pytest.mark.parametrize("cut", [0, 40])
def test_damaged_trusted_pickle_names_the_file(tmp_path, cut):
    path = tmp_path / "genes.pickle"
    path.write_bytes(pickle.dumps({f"G{i}": [float(i)] * 8 for i in range(20)})[:cut])
    with pytest.raises(ValueError, match="download or write it again") as err:
        se.GeneEmbeddings.read(path, trusted=True)
    assert type(err.value) is ValueError  # not EOFError or UnpicklingError
    assert str(path) in str(err.value)
    assert ("is empty" if cut == 0 else "damaged or incomplete") in str(err.value)


def test_truncated_derived_file_is_rebuilt_from_its_source(data_dir, caplog):
    builds = []

    def build():
        builds.append(1)
        return {"genes": list(range(1000))}

    def write(obj, path):
        with gzip.open(path, "wt") as handle:
            json.dump(obj, handle)

    def read(path):
        with gzip.open(path, "rt") as handle:
            return json.load(handle)

    first = load_derived("thing", "a" * 64, ".json.gz", build=build, write=write, read=read)
    path = derived_path("thing", "a" * 64, ".json.gz")
    path.write_bytes(path.read_bytes()[:-20])  # cut short: gzip raises EOFError
    assert load_derived("thing", "a" * 64, ".json.gz", build=build, write=write, read=read) == first
    assert len(builds) == 2
    assert f"rebuilding {path}, which could not be read (EOFError" in caplog.text
    assert read(path) == first


# --- 15. a damaged registry file, a data folder that is a file ---------------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{broken", "is not valid JSON"),
        ("[]", "holds a list, not a JSON object"),
        ('{"entries": []}', "'entries' is a list, not a JSON object"),
        ('{"entries": {"mine": "https://x"}}', "entry 'mine' is a string, not a JSON object"),
        ('{"local": {"mine": {"path": 3}}}', "local entry 'mine' lacks a text 'path' and 'sha256'"),
    ],
)
def test_damaged_user_registry_is_one_line_naming_the_file_and_the_fix(data_dir, content, says):
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "registry.json").write_text(content)
    with pytest.raises(ValueError, match="delete it and register your entries again") as err:
        ds.fetch("geneformer_v1_token_dictionary", progressbar=False)
    message = str(err.value)
    assert str(data_dir / "registry.json") in message
    assert says in message
    assert "\n" not in message


@pytest.mark.parametrize("below", [False, True])
def test_data_folder_that_is_a_file_is_one_line_naming_it(tmp_path, monkeypatch, capsys, below):
    file = tmp_path / "not-a-folder"
    file.write_text("x")
    monkeypatch.setenv("SCELMO_DATA_DIR", str(file / "data" if below else file))
    with pytest.raises(NotADirectoryError) as err:
        ds.data_dir()
    message = str(err.value)
    assert f"{file} is a file, not a folder" in message
    assert "set SCELMO_DATA_DIR to a folder" in message
    assert main(["fetch", "--list"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert f"{file} is a file, not a folder" in lines[0]
