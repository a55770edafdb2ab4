"""A full disk: a store larger than the free space, and a disk that fills while the outputs are written.

Each test runs twice: on a real, small tmpfs (mounted here when the test runs as root and the
container allows it, else the second way), and with the full disk injected (``shutil.disk_usage``
reporting almost nothing free; ``os.fsync`` failing with ENOSPC). Either way the run exits 2 naming
the path, leaves no partial file under a final name, and a rerun after freeing space loses nothing.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections import namedtuple
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selectivity_eval.core.cli.app import app
from selectivity_eval.core.outputs import atomic
from selectivity_eval.core.store import activation_store
from selectivity_eval.core.study import run as run_module
from tests.test_store import SPEC

OUTPUTS = ("units.csv", "summary.json", "run.json", "labels.npy", "measured.npy", "rows.json")
Disk = namedtuple("Disk", "directory fill free_all")
REAL_DISK_USAGE, REAL_FSYNC = shutil.disk_usage, os.fsync


def mounted(directory: Path, size: str) -> bool:
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True)
    return done.returncode == 0


@pytest.fixture(params=["tmpfs", "injected"])
def disk(request, tmp_path, monkeypatch):
    """A small disk: ``fill(leave)`` fills it (leaving ``leave`` bytes), ``free_all()`` frees it again."""
    directory = tmp_path / "disk"
    if request.param == "tmpfs" and mounted(directory, "2m"):
        filler = directory / "filler"

        def fill(leave: int = 0) -> None:
            descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                while True:
                    os.write(descriptor, b"\0" * 4096)
            except OSError as error:
                assert error.errno == errno.ENOSPC
            finally:
                os.close(descriptor)
            os.truncate(filler, max(0, filler.stat().st_size - leave))

        try:
            yield Disk(directory, fill, lambda: filler.unlink(missing_ok=True))
        finally:
            subprocess.run(["umount", "-l", str(directory)], check=True)
        return

    def fill(leave: int = 0) -> None:
        def no_space(descriptor):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(atomic.os, "fsync", no_space)

    yield Disk(directory, fill, lambda: monkeypatch.setattr(atomic.os, "fsync", REAL_FSYNC))


def cli(spec, *args):
    return CliRunner().invoke(app, [str(spec), "-q", *args])


def left_after_failure(output: Path) -> dict[str, bytes]:
    """The outputs a failed run left under their final names (no temporary file may be left beside them)."""
    assert not list(output.glob("**/.*.tmp"))
    return {name: (output / name).read_bytes() for name in OUTPUTS if (output / name).exists()}


def assert_complete(left: dict[str, bytes], output: Path) -> None:
    """Each file a failed run left is whole: the same as a successful run writes (run.json: valid JSON)."""
    for name, data in left.items():
        if name == "run.json":
            json.loads(data)
        else:
            assert data == (output / name).read_bytes(), name


def test_a_store_larger_than_the_free_space_is_refused_naming_the_path_and_the_bytes(disk, write_spec, monkeypatch):
    output = disk.directory / "run"
    if not (disk.directory / "filler").parent.is_mount():
        def almost_full(path):
            return REAL_DISK_USAGE(path)._replace(free=10_000)

        monkeypatch.setattr(activation_store.shutil, "disk_usage", almost_full)
    else:
        disk.fill(leave=20_000)
    result = cli(write_spec({**SPEC, "output": str(output)}))
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "No space left on the device writing" in message and "values.partial.npy" in message
    assert "It needs" in message and "bytes" in message and "Traceback" not in result.output
    assert left_after_failure(output) == {}

    disk.free_all()
    monkeypatch.setattr(activation_store.shutil, "disk_usage", REAL_DISK_USAGE)
    assert cli(write_spec({**SPEC, "output": str(output)})).exit_code == 0
    assert all((output / name).is_file() for name in OUTPUTS)


@pytest.mark.parametrize(
    ("when", "leave", "lost"),
    [("record_rows", 4096, "measured.npy"), ("write_units_csv", 4096, "units.csv"), ("write_json", 0, "summary.json")],
)
def test_a_disk_filling_while_outputs_are_written_exits_2_and_leaves_nothing_partial(
    disk, write_spec, monkeypatch, when, leave, lost
):
    output = disk.directory / "run"
    original = getattr(run_module, when)

    def fills_first(*args, **kwargs):
        disk.fill(leave)  # a page is enough to start labels.npy or units.csv, not to finish them
        return original(*args, **kwargs)

    monkeypatch.setattr(run_module, when, fills_first)
    spec = write_spec({**SPEC, "output": str(output)})
    result = cli(spec)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "No space left on the device writing" in message and str(output) in message
    left = left_after_failure(output)
    assert lost not in left and (output / "spec.resolved.yaml").is_file()

    monkeypatch.setattr(run_module, when, original)
    disk.free_all()
    result = cli(spec)
    assert result.exit_code == 0, result.output
    assert all((output / name).is_file() for name in OUTPUTS)
    assert_complete(left, output)
    assert set(json.loads((output / "run.json").read_text())["activation_cache"].values()) == {"hit"}


def test_no_space_raised_by_any_writer_exits_2_naming_its_file(write_spec, tmp_path, monkeypatch):
    def full(path, *_args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(run_module, "write_units_csv", full)
    result = cli(write_spec(SPEC))
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"No space left on the device writing {tmp_path / 'run' / 'units.csv'}" in message
    assert "Traceback" not in result.output
