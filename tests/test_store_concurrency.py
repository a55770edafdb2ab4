"""Real processes sharing one activation store: a second run waits for the first's entry and reuses it;
a killed writer's lock is free at once and its checkpoints resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import xxhash

from selectivity_eval.core.extraction.extract import extract_activations
from selectivity_eval.plugins.datasets.digits import Digits
from selectivity_eval.plugins.models.digits_cnn import DigitsCNNSource
from tests.store_writer import LAYERS

WRITER = Path(__file__).with_name("store_writer.py")
PATIENCE_S = 300  # only a bound on waiting for a process that is stuck; no outcome depends on speed


@pytest.fixture
def start_writer():
    """Starts store_writer.py processes; any still running when the test ends is killed."""
    started: list[subprocess.Popen] = []

    def start(store: Path, log: Path, *extra: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(WRITER.parent.parent)}
        process = subprocess.Popen(
            [sys.executable, str(WRITER), str(store), *extra], stdout=subprocess.PIPE, stderr=log.open("w"), env=env,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def result_of(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(timeout=PATIENCE_S)
    assert process.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def expected() -> dict[str, str]:
    """The layers' values computed in memory, as digests."""
    model = DigitsCNNSource({}).load(seed=0)
    data = Digits({"split": "test"}).load(seed=0)
    extraction = extract_activations(model, data, LAYERS, batch_size=64, device=torch.device("cpu"))
    return {label: xxhash.xxh3_128_hexdigest(values.tobytes()) for label, values in extraction.activations.items()}


def test_a_second_run_waits_for_the_entry_being_written_and_reuses_it(tmp_path, expected, start_writer):
    store, gate = tmp_path / "store", tmp_path / "gate"
    first = start_writer(store, tmp_path / "first.log", "--hold", str(gate))
    wait_for(Path(f"{gate}.started").exists, "the first run's first batch")
    second = start_writer(store, tmp_path / "second.log")
    wait_for(lambda: "waiting for it to finish" in (tmp_path / "second.log").read_text(), "the second run to wait")
    assert f"process {first.pid}" in (tmp_path / "second.log").read_text()
    assert second.poll() is None  # still waiting: it wrote nothing into the live entry
    gate.touch()
    first_result, second_result = result_of(first), result_of(second)
    assert first_result == {"cache": {"conv2": "miss", "fc1": "miss"}, "digests": expected}
    assert second_result == {"cache": {"conv2": "hit", "fc1": "hit"}, "digests": expected}


def test_a_killed_writers_lock_is_free_and_its_checkpoints_resume(tmp_path, expected, start_writer):
    store, gate = tmp_path / "store", tmp_path / "gate"
    first = start_writer(store, tmp_path / "first.log", "--hold", str(gate))
    wait_for(Path(f"{gate}.started").exists, "the first run's first batch")
    assert any(path.suffix == ".lock" and "process" in path.read_text() for path in store.iterdir())
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=PATIENCE_S)
    assert first.returncode == -signal.SIGKILL
    second = start_writer(store, tmp_path / "second.log")
    result = result_of(second)
    assert "waiting" not in (tmp_path / "second.log").read_text()
    assert result == {"cache": {"conv2": "resumed at image 64", "fc1": "resumed at image 64"}, "digests": expected}
