"""Bad specs and hostile inputs exit 2 naming the file or the place (issue 13, item 9): not UTF-8,
nested too deeply, a seed too large, duplicate keys, a huge file, an output path that is a file,
and an image that declares more pixels than the data set allows (a decompression bomb)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import selectivity_eval as se
from selectivity_eval.core.cli.app import app
from selectivity_eval.core.registry.manager import LOAD_PLUGINS_ENV
from selectivity_eval.core.spec.yaml_loader import MAX_NESTING, MAX_SPEC_BYTES
from selectivity_eval.plugins.datasets.imagefolder import ImageFolder
from selectivity_eval.plugins.models.digits_cnn import DigitsCNNSource

from .image_files import write_image

SPEC = """\
model: digits-cnn
dataset: {plugin: digits, split: test}
layers: [fc2]
measures: [topclass]
device: cpu
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != LOAD_PLUGINS_ENV}
    command = [sys.executable, "-m", "selectivity_eval", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def assert_refused(result: subprocess.CompletedProcess, *named: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Error:" in result.stderr
    for text in named:
        assert text in result.stderr, (text, result.stderr)


def test_bad_spec_files_exit_2_naming_the_file_and_the_place(tmp_path):
    """One process per command: each case must exit 2 on its own."""
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(SPEC.replace("fc2", "caf\xe9").encode("latin-1"))
    deep = tmp_path / "deep.yaml"
    deep.write_text(SPEC + "extra: " + "[" * 5_000 + "]" * 5_000 + "\n")
    seed = tmp_path / "seed.yaml"
    seed.write_text(SPEC + f"seed: {2**70}\n")
    duplicate = tmp_path / "duplicate.yaml"
    duplicate.write_text(SPEC + "layers: [fc1]\n")
    huge = tmp_path / "huge.yaml"
    with huge.open("w") as handle:
        handle.write(SPEC + "notes: [")
        chunk = "a, " * 100_000
        while handle.tell() < 50 * 2**20:
            handle.write(chunk)
        handle.write("a]\n")

    assert_refused(cli("validate", "latin.yaml", cwd=tmp_path), "latin.yaml", "not UTF-8", "line 3")
    assert_refused(cli("validate", "deep.yaml", cwd=tmp_path), "deep.yaml", f"nested more than {MAX_NESTING} levels")
    assert_refused(cli("run", "seed.yaml", "-q", cwd=tmp_path), "seed.yaml", "seed (line 6)", "less than or equal to")
    assert_refused(cli("validate", "duplicate.yaml", cwd=tmp_path), "duplicate.yaml", "'layers'", "lines 3 and 6")
    assert_refused(cli("run", "huge.yaml", cwd=tmp_path), "huge.yaml", f"at most {MAX_SPEC_BYTES:,} bytes")
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_an_output_that_is_a_file_exits_2_in_a_fresh_process(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "taken").write_text("my notes\n")
    assert_refused(cli("run", "spec.yaml", "--output", "taken", "-q", cwd=tmp_path), "'taken'", "is a file")
    assert_refused(cli("run", "spec.yaml", "-o", "taken/run", "-q", cwd=tmp_path), "'taken'", "in its path")
    assert (tmp_path / "taken").read_text() == "my notes\n"


class ModelThatMustNotLoad(DigitsCNNSource):
    name = "must-not-load"

    def load(self, *, seed):
        raise AssertionError("the model was loaded before the output was checked")


class MustNotLoadPlugin:
    @se.hookimpl
    def register_models(self, register):
        register(ModelThatMustNotLoad)


@pytest.mark.parametrize("command", ["run", "validate"])
def test_the_output_is_checked_before_the_model_loads(registered_plugin, tmp_path, command):
    registered_plugin(MustNotLoadPlugin(), name="must-not-load-plugin")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("digits-cnn", "must-not-load") + f"output: {tmp_path / 'taken'}\n")
    (tmp_path / "taken").write_text("")
    result = CliRunner().invoke(app, [command, str(spec)])
    assert result.exit_code == 2, result.output
    assert "is a file" in result.output and "before the output" not in result.output


def test_a_duplicate_key_in_a_nested_mapping_names_both_lines(tmp_path, write_spec):
    spec = write_spec("model: digits-cnn\ndataset:\n  plugin: digits\n  split: test\n  split: all\nlayers: [fc2]\n")
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    assert "the key 'split' appears twice in one mapping, on lines 4 and 5" in result.output


def test_a_key_that_overrides_a_yaml_merge_is_no_duplicate(write_spec):
    spec = write_spec(
        "model: digits-cnn\ndataset:\n  <<: {plugin: digits, split: all}\n  split: test\nlayers: [fc2]\ndevice: cpu\n"
    )
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.output


def bomb_png(path: Path, side: int = 12_000) -> Path:
    """A valid 1-bit PNG of side x side pixels (144 Mpixel by default) in a few tens of kilobytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_refused_by_default_before_decoding(tmp_path):
    root = tmp_path / "images"
    write_image(root / "cat" / "small.png")
    bomb = bomb_png(root / "cat" / "bomb.png")
    assert bomb.stat().st_size < 100_000
    data = ImageFolder(root=str(root), on_unreadable="skip").load(seed=0)
    names = [data.describe(i) for i in range(len(data))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning included
        assert data.dataset[names.index(str(bomb))] == (None, 0)
        assert data.dataset[names.index(str(root / "cat" / "small.png"))][0] is not None


def test_the_pixel_limit_is_a_data_set_parameter(tmp_path, write_spec):
    root = tmp_path / "images"
    small = write_image(root / "cat" / "small.png", size=(16, 16))
    assert ImageFolder(root=str(root), max_pixels=255).load(seed=0).dataset[0] == (None, 0)
    assert ImageFolder(root=str(root), max_pixels=256).load(seed=0).dataset[0][0] is not None
    spec = write_spec(
        {"model": "digits-cnn", "dataset": {"plugin": "imagefolder", "root": str(root), "max_pixels": 10**9},
         "layers": ["fc2"]}
    )
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2 and "dataset.max_pixels" in result.output
    assert small.is_file()
