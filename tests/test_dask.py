"""The dask executor: the same results as in process, a worker killed mid-run, resuming.

One LocalCluster (2 worker processes on 127.0.0.1) serves the module; specs reach it by its address.
Its workers find the test data set plugin (``tests/dask_slow_plugin.py``) through an entry point
of a distribution put on ``sys.path`` before they start: worker processes inherit the path.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from selectivity_eval.core.cli.app import app
from selectivity_eval.core.registry.manager import reload_plugins

from .dask_specs import digits_example, run, spec_file



@pytest.fixture(autouse=True)
def torch_threads():
    """Tests may change torch's thread count (the workers run one thread); give it back after each."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def plugin_on_path(tmp_path_factory):
    """``slow-digits`` as an installed distribution with an entry point, on this process's sys.path."""
    root = tmp_path_factory.mktemp("dask-plugin")
    shutil.copy(Path(__file__).with_name("dask_slow_plugin.py"), root / "se_dask_slow_plugin.py")
    info = root / "se_dask_slow_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: se-dask-slow-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[selectivity_eval]\nse_dask_slow_plugin = se_dask_slow_plugin\n")
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    reload_plugins()
    yield root
    sys.path.remove(str(root))
    reload_plugins()


@pytest.fixture(scope="module")
def cluster(plugin_on_path, tmp_path_factory):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # loopback only, any free port
        local_directory=str(tmp_path_factory.mktemp("dask-scratch")),
    ) as started:
        yield started


def on_dask(cluster, **settings) -> dict:
    return {"executor": {"kind": "dask", "address": cluster.scheduler_address, **settings}}


def stored(run_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """The store's arrays, by directory name (layer label and key)."""
    arrays = {}
    for directory in sorted(d for d in (run_dir / "activations").iterdir() if d.is_dir()):
        assert (directory / "complete.json").is_file() and not (directory / "shards").exists()
        arrays[directory.name] = {
            name: np.load(directory / f"{name}.npy") for name in ("values", "readable", "predicted")
        }
    return arrays


def by_label(arrays: dict) -> dict:
    return {name.rsplit("-", 1)[0]: value for name, value in arrays.items()}


def assert_same_arrays(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for name in first:
        for array in first[name]:
            np.testing.assert_array_equal(first[name][array], second[name][array], err_msg=f"{name} {array}")


def assert_same_results(local: Path, dask: Path, files=("units.csv", "summary.json")) -> None:
    for name in files:
        assert (local / name).read_bytes() == (dask / name).read_bytes(), name


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


@pytest.mark.parametrize("local_threads", [1, 2, 4])
def test_digits_example_on_a_local_cluster_matches_the_local_run(cluster, tmp_path, local_threads):
    """What docs/distributed.md guarantees, at 1, 2 and 4 torch threads in this process.

    The workers run torch on one thread; with MKL's strict reproducibility (set on import) the
    activations, and so every result, are bit for bit the in-process ones at any thread count.
    Measured from the same activations (the Dask run's store, reused by an in-process run), the
    results are bit for bit the same whatever the executor, chunking and thread count.
    """
    torch.set_num_threads(local_threads)  # the autouse fixture restores it
    local = spec_file(tmp_path, "local", digits_example())
    dask = spec_file(tmp_path, "dask", {**digits_example(), **on_dask(cluster)})
    assert run(local).exit_code == 0
    result = run(dask)
    assert result.exit_code == 0, result.output
    assert_same_results(tmp_path / "local", tmp_path / "dask")
    assert_same_arrays(stored(tmp_path / "local"), stored(tmp_path / "dask"))
    shutil.copytree(tmp_path / "dask" / "activations", tmp_path / "again" / "activations")
    assert run(spec_file(tmp_path, "again", digits_example())).exit_code == 0
    assert set(record(tmp_path / "again")["activation_cache"].values()) == {"hit"}
    assert_same_results(tmp_path / "again", tmp_path / "dask")
    executor = record(tmp_path / "dask")["executor"]
    assert executor["kind"] == "dask" and executor["workers"] == 2 and executor["shard_tasks"] >= 2
    assert executor["measure_tasks"] >= 4
    assert record(tmp_path / "local")["executor"] == {"kind": "local"}
    assert set(record(tmp_path / "dask")["activation_cache"].values()) == {"miss"}


def test_chance_untrained_and_a_subset_of_images_match_the_local_run(cluster, tmp_path):
    """Skipped images and correct_only (workers read only the measured rows), shufflings split in blocks."""
    spec = {
        "model": "digits-cnn",
        "dataset": {"plugin": "slow-digits", "broken": [3, 100], "on_unreadable": "skip", "correct_only": True},
        "layers": [{"name": "fc1", "relu": True}, "fc2"],
        "measures": ["ccmas", "topclass", {"name": "precision", "top_n": 20}],
        "chance": {"permutations": 23, "seed": 4},
        "untrained_baseline": True,
        "batch_size": 64,
        "device": "cpu",
    }
    local = spec_file(tmp_path, "local", spec)
    dask = spec_file(
        tmp_path, "dask", {**spec, **on_dask(cluster, shard_images=100, chunk_units=7, permutation_block=5)}
    )
    assert run(local).exit_code == 0
    result = run(dask)
    assert result.exit_code == 0, result.output
    assert_same_results(tmp_path / "local", tmp_path / "dask", ("units.csv", "summary.json", "untrained/units.csv"))
    assert_same_arrays(stored(tmp_path / "local"), stored(tmp_path / "dask"))
    images = record(tmp_path / "dask")["images"]
    assert images == record(tmp_path / "local")["images"]
    assert images["unreadable"] == ["digit-3.png", "digit-100.png"] and images["dropped_incorrect"] > 0
    executor = record(tmp_path / "dask")["executor"]
    assert executor["chance_tasks"] >= 2 * 5 * 2  # two layers (and the untrained pair), 10 units in 2 chunks, 5 blocks
    assert "layers_sent_in_memory" not in executor  # workers read the measured rows from the store


def test_a_measure_that_raises_on_workers_fails_as_in_process(cluster, tmp_path):
    """Measures travel to the workers with their tasks, so one registered only in the client runs there too.

    The measure is defined inside the test on purpose: cloudpickle sends such a class by value, so
    the workers need not import anything from tests/ (unlike tests.thirdparty_plugin.Broken).
    """
    import selectivity_eval as se

    class Broken(se.Measure):
        """Raises on every chunk."""

        name = "broken"
        columns = {"broken": se.Column.VALUE}

        def compute(self, stats):
            raise RuntimeError("deliberate failure")

    class BrokenPlugin:
        @se.hookimpl
        def register_measures(self, register):
            register(Broken)

    spec = {"model": "digits-cnn", "dataset": {"plugin": "digits", "split": "test"}, "layers": ["fc1", "fc2"],
            "measures": ["topclass", "broken"], "device": "cpu"}
    with se.plugin_registered(BrokenPlugin(), name="broken-plugin"):
        assert run(spec_file(tmp_path, "local", spec)).exit_code == 1
        result = run(spec_file(tmp_path, "dask", {**spec, **on_dask(cluster, chunk_units=16)}))
    assert result.exit_code == 1 and "deliberate failure" in result.output and "broken-plugin" in result.output
    assert_same_results(tmp_path / "local", tmp_path / "dask")
    assert record(tmp_path / "dask")["failures"] == record(tmp_path / "local")["failures"]
    assert len(record(tmp_path / "dask")["failures"]) == 2


def test_unreadable_image_on_a_worker_exits_2_naming_it(cluster, tmp_path):
    spec = {
        "model": "digits-cnn",
        "dataset": {"plugin": "slow-digits", "broken": [100]},
        "layers": ["fc2"],
        "measures": ["topclass"],
        "batch_size": 64,
        "device": "cpu",
    }
    result = run(spec_file(tmp_path, "dask", {**spec, **on_dask(cluster, shard_images=64)}))
    assert result.exit_code == 2 and "digit-100.png" in result.output and "on_unreadable" in result.output
    assert not list((tmp_path / "dask" / "activations").glob("*/complete.json"))


def test_failed_shard_leaves_the_layer_incomplete_and_a_rerun_skips_finished_shards(cluster, tmp_path):
    flag = tmp_path / "fail"
    flag.touch()
    spec = {
        "model": "digits-cnn",
        "layers": [{"name": "fc1", "relu": True}, "fc2"],
        "measures": ["ccmas"],
        "batch_size": 64,
        "device": "cpu",
    }
    failing = {**spec, "dataset": {"plugin": "slow-digits", "fail_flag": str(flag), "fail_at": 449}}
    path = spec_file(tmp_path, "dask", {**failing, **on_dask(cluster, shard_images=64)})
    result = run(path)
    assert result.exit_code == 1 and "item 449 fails" in result.output
    layers = sorted(d for d in (tmp_path / "dask" / "activations").iterdir() if d.is_dir())
    assert len(layers) == 2 and not any((d / "complete.json").exists() for d in layers)
    assert all(not (d / "shards" / "7.done").exists() for d in layers)  # the failing shard (images 448-449)
    finished = min(len(list((d / "shards").glob("*.done"))) for d in layers)

    flag.unlink()
    assert run(path).exit_code == 0
    skipped = record(tmp_path / "dask")["executor"]["shards_skipped"]  # tasks still running at the failure may add some
    assert finished <= skipped <= 7
    expected = f"resumed ({skipped} of 8 shards on disk)" if skipped else "miss"
    assert set(record(tmp_path / "dask")["activation_cache"].values()) == {expected}
    local = spec_file(tmp_path, "local", {**spec, "dataset": {"plugin": "slow-digits"}})
    assert run(local).exit_code == 0
    assert_same_results(tmp_path / "local", tmp_path / "dask", ("units.csv",))
    assert_same_arrays(by_label(stored(tmp_path / "local")), by_label(stored(tmp_path / "dask")))


class Interrupted(Exception):
    pass


def test_interrupted_in_process_extraction_continues_on_dask(cluster, tmp_path, monkeypatch):
    """The rows an in-process run checkpointed count as finished shards; the rest run on the workers."""
    from selectivity_eval.core.extraction import extract
    from selectivity_eval.plugins.models.digits_cnn import DigitsCNN

    monkeypatch.setattr(extract, "CHECKPOINT_SECONDS", -1.0)
    original, batches = DigitsCNN.forward, []

    def dies_on_fifth_batch(self, x):
        if len(batches) == 4:
            raise Interrupted("killed")
        batches.append(len(x))
        return original(self, x)

    spec = {"model": "digits-cnn", "dataset": {"plugin": "digits", "split": "test"}, "layers": ["conv2", "fc2"],
            "measures": ["ccmas"], "batch_size": 64, "device": "cpu"}
    path = spec_file(tmp_path, "run", spec)
    monkeypatch.setattr(DigitsCNN, "forward", dies_on_fifth_batch)
    with pytest.raises(Interrupted):
        CliRunner().invoke(app, [str(path), "-q", "--debug"], catch_exceptions=False)
    monkeypatch.setattr(DigitsCNN, "forward", original)
    path = spec_file(tmp_path, "run", {**spec, **on_dask(cluster, shard_images=64)})
    assert run(path).exit_code == 0
    assert set(record(tmp_path / "run")["activation_cache"].values()) == {"resumed (4 of 8 shards on disk)"}
    assert run(spec_file(tmp_path, "fresh", spec)).exit_code == 0
    assert_same_results(tmp_path / "fresh", tmp_path / "run", ("units.csv",))
    assert_same_arrays(stored(tmp_path / "fresh"), stored(tmp_path / "run"))


def test_worker_killed_mid_shard_loses_nothing(cluster, tmp_path):
    """SIGKILL the worker process reading image 200 (shard 3 of 8); dask reruns its tasks elsewhere."""
    signals = tmp_path / "signals"
    signals.mkdir()
    spec = {
        "model": "digits-cnn",
        "layers": [{"name": "conv2", "relu": True}, "fc2"],
        "measures": ["ccmas", "topclass"],
        "batch_size": 32,
        "device": "cpu",
    }
    slow = {"plugin": "slow-digits", "delay": 0.004, "signal_at": 200, "signal_dir": str(signals)}
    killed: list[int] = []
    stop = threading.Event()

    def kill_the_first_signaller():
        while not stop.is_set():
            entries = list(signals.iterdir())
            if entries:
                pid = int(entries[0].name)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.002)

    killer = threading.Thread(target=kill_the_first_signaller, daemon=True)
    killer.start()
    try:
        result = run(spec_file(tmp_path, "dask", {**spec, "dataset": slow, **on_dask(cluster, shard_images=64)}))
    finally:
        stop.set()
        killer.join()
    assert result.exit_code == 0, result.output
    assert len(killed) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    rereaders = {int(p.name) for p in signals.iterdir()} - set(killed)
    assert rereaders, "the killed shard was not run again"
    assert run(spec_file(tmp_path, "local", {**spec, "dataset": {"plugin": "slow-digits"}})).exit_code == 0
    assert_same_results(tmp_path / "local", tmp_path / "dask", ("units.csv", "summary.json"))
    assert_same_arrays(by_label(stored(tmp_path / "local")), by_label(stored(tmp_path / "dask")))
    from distributed import Client

    with Client(cluster.scheduler_address, set_as_default=False) as client:  # leave the cluster as we found it
        client.wait_for_workers(2, timeout=60)
