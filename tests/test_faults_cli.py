"""The command line stopped from outside: SIGTERM, SIGKILL and Ctrl-C, in real processes.

A command is started as ``python -m scelmo ...`` (through :mod:`runpy`, after making
``AnnData.write_h5ad`` wait once the file is written, so that the signal lands while the
output is still a temporary file) or as the installed ``scelmo`` script, and stopped with a real
signal. What must hold: SIGTERM removes the temporary output (exit code 143); after SIGKILL
the next command writing to the folder removes it; Ctrl-C gives one line and exit code 130,
also while the program is still importing.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scanpy as sc

import scelmo as se
from scelmo._atomic import _HOST
from scelmo.cli import main

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

#: ``python -c`` program: ``python -m scelmo ARGS`` whose h5ad writes then touch MARKER and wait.
SLOW_WRITE = """
import pathlib, runpy, sys, time
import anndata

marker, *args = sys.argv[1:]
real_write = anndata.AnnData.write_h5ad

def slow_write(self, filename, *a, **k):
    real_write(self, filename, *a, **k)
    pathlib.Path(marker).write_text(str(filename))
    time.sleep(300)

anndata.AnnData.write_h5ad = slow_write
sys.argv = ["scelmo", *args]
runpy.run_module("scelmo", run_name="__main__", alter_sys=True)
"""


def _temporary(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


@pytest.fixture(scope="module")
def work(tmp_path_factory, _session_data_dir) -> Path:
    folder = tmp_path_factory.mktemp("faults-cli")
    adata = sc.datasets.pbmc68k_reduced()
    adata.write_h5ad(folder / "pbmc.h5ad")
    rng = np.random.default_rng(0)
    genes = list(adata.raw.var_names)
    se.GeneEmbeddings(genes, rng.standard_normal((len(genes), 8))).write(folder / "genes.npz")
    return folder


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _start_slow_embed(work: Path, out: Path, marker: Path) -> subprocess.Popen:
    args = ["embed", "pbmc.h5ad", "-o", str(out), "-g", "genes.npz", "-q"]
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITE, str(marker), *args],
        cwd=work,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(
                f"the command ended before writing (code {process.returncode}): {process.stderr.read()}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_during_the_write_removes_the_temporary_output(work, tmp_path):
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    marker = tmp_path / "written"
    process = _start_slow_embed(work, out_folder / "embedded.h5ad", marker)
    _wait_for(marker, process)
    assert len(_temporary(out_folder)) == 1  # the whole output, still under its temporary name
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert sorted(p.name for p in out_folder.iterdir()) == []


@pytest.mark.slow
def test_after_sigkill_the_next_run_removes_the_left_over_file(work, tmp_path, capsys, monkeypatch):
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    out = out_folder / "embedded.h5ad"
    marker = tmp_path / "written"
    process = _start_slow_embed(work, out, marker)
    _wait_for(marker, process)
    process.kill()  # SIGKILL: nothing can clean up
    process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL
    left = _temporary(out_folder)
    assert len(left) == 1
    # A file of a command still running beside the next one is not touched.
    running = out_folder / f".tmp-{os.getpid()}@{_HOST}-0123456789ab-other.h5ad"
    running.write_bytes(b"being written")
    monkeypatch.chdir(work)
    code = main(["embed", "pbmc.h5ad", "-o", str(out), "-g", "genes.npz", "-q"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out_folder.iterdir()) == sorted(["embedded.h5ad", running.name])
    assert ad.read_h5ad(out).obsm["X_elmo"].shape == (700, 8)
    # It was known to be abandoned by its name: the writer's process id and machine.
    assert re.fullmatch(rf"\.tmp-{process.pid}@{_HOST}-[0-9a-f]+-embedded\.h5ad", left[0])


def test_stale_outputs_are_told_from_live_ones(tmp_path):
    """Which left-over files the next command removes: by writer (gone or alive), else by age."""
    from scelmo.cli._files import remove_stale_outputs

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    names = {
        f".tmp-{dead_pid}@{_HOST}-0123456789ab-a.h5ad": "removed",  # its writer is gone
        f".tmp-{os.getpid()}@{_HOST}-0123456789ab-b.h5ad": "kept",  # its writer runs
        ".tmp-0123456789ab-c.npz": "kept",  # no writer recorded, recent
        ".d.tmp-0123456789ab.h5ad": "kept",  # scelmo 0.1's name, recent
        "results.h5ad": "kept",
    }
    old = {".tmp-0123456789ab-e.npz": "removed", ".f.tmp-0123456789ab.h5ad": "removed", ".g.h5ad": "kept"}
    for name in {**names, **old}:
        (tmp_path / name).write_bytes(b"x")
    for name in old:
        os.utime(tmp_path / name, (0, 0))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".tmp-0123456789ab-h.npz").write_bytes(b"x")
    os.utime(tmp_path / "sub" / ".tmp-0123456789ab-h.npz", (0, 0))
    removed = remove_stale_outputs(tmp_path)
    expected = {name for name, what in {**names, **old}.items() if what == "removed"}
    assert {p.name for p in removed} == expected
    assert {p.name for p in tmp_path.iterdir()} == {*names, *old, "sub"} - expected
    assert (tmp_path / "sub" / ".tmp-0123456789ab-h.npz").exists()  # only the folder itself


# --- Ctrl-C ---------------------------------------------------------------------------------------
def _read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _entry_points() -> dict[str, list[str]]:
    script = Path(sys.executable).with_name("scelmo")
    points = {"python -m scelmo": ["-m", "scelmo"]}
    if script.is_file():
        points["scelmo script"] = [str(script)]
    return points


@pytest.mark.slow
@pytest.mark.parametrize("entry", list(_entry_points()))
def test_ctrl_c_while_importing_is_one_line(entry, work):
    # -X importtime reports each module as its import ends: Ctrl-C is sent as soon as numpy is
    # imported, while pandas, anndata and scanpy are still to come.
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", *_entry_points()[entry], "info", "pbmc.h5ad"],
        cwd=work,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(process.stderr, lines), daemon=True)
    reader.start()
    stderr = []
    while True:
        line = lines.get(timeout=300)
        assert line is not None, f"the command ended before importing numpy: {''.join(stderr)}"
        stderr.append(line)
        if re.search(r"\|\s*numpy$", line.rstrip()):
            break
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    reader.join(timeout=60)
    while (line := lines.get_nowait() if not lines.empty() else None) is not None:
        stderr.append(line)
    said = [line.rstrip() for line in stderr if not line.startswith("import time:")]
    assert process.returncode == 130, "".join(said)
    assert len(said) == 1, said
    assert said[0].endswith(": interrupted"), said
    assert said[0].startswith("scelmo")


@pytest.mark.slow
def test_ctrl_c_during_the_write_is_one_line_and_leaves_nothing(work, tmp_path):
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    marker = tmp_path / "written"
    process = _start_slow_embed(work, out_folder / "embedded.h5ad", marker)
    _wait_for(marker, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["scelmo embed: interrupted"]
    assert sorted(p.name for p in out_folder.iterdir()) == []
