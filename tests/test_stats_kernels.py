"""The compiled (numba) statistics against torch's, and when they are used."""

from __future__ import annotations

import io
import os
import subprocess
import threading
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from rich.console import Console

import selectivity_eval as se
from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.statistics.labels import Labels
from selectivity_eval.core.statistics.backend import KERNELS_VARIABLE, compiled_kernels
from selectivity_eval.core.statistics.layer_stats import LayerStats

FOUR = ["localist", "precision", "ccmas", "topclass"]


def awkward_matrix(seed: int, n_images=400, n_units=37, n_classes=30) -> tuple[np.ndarray, np.ndarray]:
    """Ties, signed zeros, a NaN unit, an infinite unit, a unit mixing both infinities, a constant unit."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_images)
    labels[:n_classes] = np.arange(n_classes)
    matrix = rng.integers(-2, 4, (n_images, n_units)).astype(np.float32)
    matrix[rng.random((n_images, n_units)) < 0.1] = -0.0
    matrix[:, 1] = np.maximum(rng.standard_normal(n_images), 0)
    matrix[7, 2] = np.nan
    matrix[8, 3] = np.inf
    matrix[[9, 10], 4] = [np.inf, -np.inf]
    matrix[:, 5] = 1.5
    return matrix, labels


def statistics(stats: LayerStats, k: int) -> dict[str, torch.Tensor]:
    thresholds = stats.runner_up_max
    return {
        "class_max": stats.class_max,
        "class_min": stats.class_min,
        "class_sum": stats.class_sum,
        "class_sum_squares": stats.class_sum_squares,
        "class_variance": stats.class_variance,
        "constant_units": stats.constant_units,
        "top_indices": stats.top_indices(k),
        "count_above": stats.count_above(thresholds),
        "count_at_or_above": stats.count_at_or_above(thresholds),
        "finite_units": stats.finite_units,
        "top_class": stats.top_class,
        "top_mean_class": stats.top_mean_class,
    }


def bits(values: torch.Tensor) -> torch.Tensor:
    """The bit patterns of floats (so that -0.0 and 0.0 differ), other tensors as they are."""
    if not values.is_floating_point():
        return values
    return values.view({torch.float32: torch.int32, torch.float64: torch.int64}[values.dtype])


@pytest.mark.parametrize("layout", ["contiguous", "column slice", "fortran"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_statistics_equal_torch_statistics_bit_for_bit(monkeypatch, layout, seed):
    matrix, labels = awkward_matrix(seed)
    if layout == "column slice":
        wider = np.hstack([np.ones((len(matrix), 3), np.float32), matrix, np.full((len(matrix), 5), np.nan, np.float32)])
        tensor = torch.from_numpy(wider)[:, 3 : 3 + matrix.shape[1]]
    elif layout == "fortran":
        tensor = torch.from_numpy(np.asfortranarray(matrix))
    else:
        tensor = torch.from_numpy(matrix)
    label_info = Labels.from_array(labels)
    results = {}
    for mode in ("compiled", "torch"):
        monkeypatch.setenv(KERNELS_VARIABLE, mode)
        stats = LayerStats(tensor, label_info)
        assert (compiled_kernels(tensor) is not None) == (mode == "compiled")
        results[mode] = statistics(stats, k=12)
    for name, compiled in results["compiled"].items():
        expected = results["torch"][name]
        assert compiled.dtype == expected.dtype, name
        assert torch.equal(compiled.isnan(), expected.isnan()), name
        numbers = ~expected.isnan()
        assert torch.equal(bits(compiled[numbers]), bits(expected[numbers])), name


@pytest.mark.parametrize("layout", ["contiguous", "column slice"])
def test_shufflings_class_statistics_equal_torch_and_the_full_pass_bit_for_bit(monkeypatch, layout):
    """The shufflings' lighter pass (max, min, sum only) against torch's batch and the full class pass."""
    matrix, labels = awkward_matrix(3, n_units=2100)  # wider than one block of units
    tensor = torch.from_numpy(matrix)
    if layout == "column slice":
        tensor = torch.from_numpy(np.hstack([matrix, matrix[:, :7]]))[:, : matrix.shape[1]]
    generator = torch.Generator().manual_seed(0)
    labellings = [Labels.from_array(labels).shuffled(generator) for _ in range(3)]
    results = {}
    for mode in ("compiled", "torch"):
        monkeypatch.setenv(KERNELS_VARIABLE, mode)
        results[mode] = LayerStats(tensor, labellings[0]).class_statistics(labellings)
    monkeypatch.setenv(KERNELS_VARIABLE, "compiled")
    full = [LayerStats(tensor, labelling) for labelling in labellings]
    for compiled, plain, stats in zip(results["compiled"], results["torch"], full):
        assert compiled[3] is None
        for ours, theirs, whole in zip(compiled[:3], plain[:3], (stats.class_max, stats.class_min, stats.class_sum)):
            assert ours.dtype == theirs.dtype
            assert torch.equal(ours.isnan(), theirs.isnan()) and torch.equal(ours.isnan(), whole.isnan())
            numbers = ~theirs.isnan()
            assert torch.equal(bits(ours[numbers]), bits(theirs[numbers]))
            assert torch.equal(bits(ours[numbers]), bits(whole[numbers]))


def test_shufflings_class_tables_filled_again_give_the_same_bits(monkeypatch):
    """``overwrite=True`` refills one set of tables for each shuffling in turn: the same bits as new
    tables, in the same memory each time, and nothing left over from the shuffling before."""
    monkeypatch.setenv(KERNELS_VARIABLE, "compiled")
    matrix, labels = awkward_matrix(5, n_units=2100)
    tensor = torch.from_numpy(matrix)
    generator = torch.Generator().manual_seed(1)
    labellings = [Labels.from_array(labels).shuffled(generator) for _ in range(4)]
    stats = LayerStats(tensor, labellings[0], reused=True)
    fresh = stats.class_statistics(labellings)
    addresses = set()
    for labelling, expected in zip(labellings, fresh):
        (again,) = stats.class_statistics([labelling], overwrite=True)
        addresses.add(tuple(table.data_ptr() for table in again[:3]))
        for ours, theirs in zip(again[:3], expected[:3]):
            assert torch.equal(ours.isnan(), theirs.isnan())
            numbers = ~theirs.isnan()
            assert torch.equal(bits(ours[numbers]), bits(theirs[numbers]))
    assert len(addresses) == 1


@pytest.mark.parametrize("preset", ["none", "gale2019"])
@pytest.mark.parametrize("seed", [0, 1])
def test_precision_of_shufflings_is_the_same_either_way(monkeypatch, preset, seed):
    """Shufflings ask precision for its headline columns alone: compiled, a pass counts the classes."""
    from selectivity_eval.core.measures.compute import measure_columns, resolve_measures

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 12, 500)  # few classes: many tied counts in a top set of 60
    matrix = rng.integers(0, 6, (500, 40)).astype(np.float32)
    measure = resolve_measures(["precision"], {"precision": {"preset": preset} if preset != "none" else {"top_n": 60}})[0]
    results = {}
    for mode in ("compiled", "torch"):
        monkeypatch.setenv(KERNELS_VARIABLE, mode)
        stats = LayerStats(torch.from_numpy(matrix), Labels.from_array(labels))
        results[mode] = measure_columns(measure, stats, "precision", {"precision", "precision_class"})
    assert set(results["compiled"]) == {"precision", "precision_class"}
    for column, values in results["compiled"].items():
        np.testing.assert_array_equal(values, results["torch"][column], err_msg=column)


def test_the_class_sums_are_float64_for_float32_input(monkeypatch):
    """1e8 + 1 - 1e8 is 1 in float64; a float32 running sum loses the 1 and gives 0."""
    monkeypatch.setenv(KERNELS_VARIABLE, "compiled")
    matrix = np.array([[1e8], [1.0], [-1e8], [1.0]], dtype=np.float32)
    stats = LayerStats(torch.from_numpy(matrix), Labels.from_array([0, 0, 0, 1]))
    assert stats.class_sum[:, 0].tolist() == [1.0, 1.0]


def test_concurrent_threads_get_their_own_results(monkeypatch):
    monkeypatch.setenv(KERNELS_VARIABLE, "compiled")
    cases = [awkward_matrix(seed, n_images=3000, n_units=64) for seed in range(6)]

    def class_max(case):
        matrix, labels = case
        return LayerStats(torch.from_numpy(matrix), Labels.from_array(labels)).class_max

    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(class_max, cases))
    monkeypatch.setenv(KERNELS_VARIABLE, "torch")
    for case, got in zip(cases, together):
        assert torch.equal(got.nan_to_num(), class_max(case).nan_to_num())


def test_auto_compiles_only_large_cpu_float_chunks(monkeypatch):
    monkeypatch.delenv(KERNELS_VARIABLE, raising=False)
    assert compiled_kernels(torch.zeros(10, 10)) is None
    monkeypatch.setattr("selectivity_eval.core.statistics.backend.COMPILED_MIN_ACTIVATIONS", 100)
    assert compiled_kernels(torch.zeros(10, 10)) is not None
    assert compiled_kernels(torch.zeros(10, 10, dtype=torch.float64)) is not None
    assert compiled_kernels(torch.zeros(10, 10, dtype=torch.bfloat16)) is None
    assert compiled_kernels(torch.zeros(10, 10, requires_grad=True)) is None
    assert compiled_kernels(torch.zeros(10, 10, device="meta")) is None


def test_auto_compiles_smaller_chunks_once_the_kernels_are_loaded(monkeypatch):
    """A run with a large layer loads the kernels anyway: its small layers then use them too."""
    import importlib

    from selectivity_eval.core.statistics import backend

    monkeypatch.delenv(KERNELS_VARIABLE, raising=False)
    conv = torch.zeros(backend.LOADED_MIN_ACTIVATIONS // 64, 64)
    tiny = torch.zeros(backend.LOADED_MIN_ACTIVATIONS // 64 - 1, 64)
    modules = {name: importlib.import_module(name) for name in backend.COMPILED_MODULES}
    for name in modules:
        monkeypatch.delitem(sys.modules, name)
    assert compiled_kernels(conv) is None
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    assert compiled_kernels(conv) is not None
    assert compiled_kernels(tiny) is None


def test_small_layers_never_load_numba():
    """Loading numba and the cached kernels costs about half a second; the digits example never pays it."""
    code = (
        "import sys, numpy as np, selectivity_eval as se\n"
        "se.compute_measures(np.random.default_rng(0).random((300, 20)), np.arange(300) % 10)\n"
        "print('numba' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_an_unknown_mode_names_the_variable(monkeypatch):
    monkeypatch.setenv(KERNELS_VARIABLE, "fast")
    with pytest.raises(UserInputError, match=f"{KERNELS_VARIABLE} is 'fast'.*auto, compiled, torch"):
        compiled_kernels(torch.zeros(2, 2))


@pytest.mark.parametrize("target", ["mean", "top"])
def test_chance_baselines_are_the_same_either_way(monkeypatch, target):
    """Compiled, each shuffling gets its own class pass and detection its own kernel; in torch,
    shufflings share one class pass in batches. The awkward matrix's non-finite units stay in."""
    matrix, labels = awkward_matrix(3, n_images=300, n_units=9)
    results = {}
    for mode in ("compiled", "torch"):
        monkeypatch.setenv(KERNELS_VARIABLE, mode)
        with pytest.warns(UserWarning, match="NaN or infinite"):
            results[mode] = se.chance_baselines(
                matrix, labels, [*FOUR, "detection"], {"detection": {"target": target}}, permutations=15, seed=4
            )
    assert set(results["compiled"]) == set(results["torch"])
    for column, values in results["compiled"].items():
        np.testing.assert_array_equal(values, results["torch"][column], err_msg=column)


@pytest.mark.parametrize("insertion_sort_max", [0, 256])
def test_both_ways_of_ranking_candidates_give_the_plain_ranking(monkeypatch, insertion_sort_max):
    """Units with up to 256 candidates rank them by insertion sort, others by two argsorts."""
    monkeypatch.setenv(KERNELS_VARIABLE, "compiled")
    monkeypatch.setattr("selectivity_eval.core.statistics.kernels.INSERTION_SORT_MAX", insertion_sort_max)
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(200), 10)
    matrix = rng.integers(0, 40, (len(labels), 16)).astype(np.float32)
    stats = LayerStats(torch.from_numpy(matrix), Labels.from_array(labels))
    top = stats.top_indices(60).numpy()
    plain = np.stack([np.lexsort((np.arange(len(column)), -column))[:60] for column in matrix.T], axis=1)
    np.testing.assert_array_equal(top, plain)
    found = stats._candidates[60]
    assert not found.fallback.any() and found.count.min() > 60


@pytest.mark.parametrize("mode", ["compiled", "torch"])
def test_class_sums_of_squares_give_each_class_variance(monkeypatch, mode):
    """Both paths: sum of squares and variance per class as numpy computes them, also after relabelling."""
    monkeypatch.setenv(KERNELS_VARIABLE, mode)
    rng = np.random.default_rng(5)
    matrix = rng.normal(2.0, 3.0, size=(300, 9)).astype(np.float32)
    labels = rng.integers(0, 7, size=300)
    stats = LayerStats(torch.from_numpy(matrix), Labels.from_array(labels))
    wide = matrix.astype(np.float64)
    for c in range(7):
        rows = wide[labels == c]
        np.testing.assert_allclose(stats.class_sum_squares[c].numpy(), (rows**2).sum(0), rtol=1e-12)
        np.testing.assert_allclose(stats.class_variance[c].numpy(), rows.var(0), rtol=1e-9)
    shuffled = rng.permutation(labels)
    relabelled_info = Labels.from_array(shuffled)
    batch = stats.class_statistics([relabelled_info])[0]
    assert batch[3] is None
    relabelled = stats.relabelled(relabelled_info, batch)
    for c in range(7):
        np.testing.assert_allclose(relabelled.class_variance[c].numpy(), wide[shuffled == c].var(0), rtol=1e-9)
    assert not stats.constant_units.any()


def test_a_run_loads_the_kernels_ahead_and_shows_a_wait_that_is_left_on_a_bar(monkeypatch):
    """prepare_kernels compiles (or loads) on a thread; kernels_ready waits for it under a progress bar."""
    from selectivity_eval.core.cli.progress import Reporter
    from selectivity_eval.core.statistics import backend, kernels

    release, warmed, shown = threading.Event(), [], []
    monkeypatch.setattr(kernels, "warm_up", lambda: (release.wait(), warmed.append(True)))
    monkeypatch.setattr(backend, "_warming", None)
    monkeypatch.delenv(KERNELS_VARIABLE, raising=False)
    cpu, threshold = torch.device("cpu"), backend.COMPILED_MIN_ACTIVATIONS
    backend.prepare_kernels(threshold - 1, cpu)  # auto: a chunk this small stays in torch
    backend.prepare_kernels(threshold, torch.device("meta"))  # not a CPU
    assert backend._warming is None
    backend.prepare_kernels(threshold, cpu)
    assert backend._warming.is_alive() and not warmed  # waits for `release`: still loading

    reporter = Reporter(console=Console(file=io.StringIO(), force_terminal=True))
    bar = reporter.steps

    def steps(description, total):
        shown.append(description)
        release.set()  # the warm-up may finish once the bar is up
        return bar(description, total)

    monkeypatch.setattr(reporter, "steps", steps)
    backend.kernels_ready(reporter)
    assert warmed == [True] and not backend._warming.is_alive()
    assert shown == ["Compiling the statistics kernels (numba, first run after an install)"]
    backend.kernels_ready(reporter)  # ready: no second bar
    assert len(shown) == 1


def test_the_warm_up_compiles_every_pass_for_float32(monkeypatch):
    from selectivity_eval.core.cli.progress import Reporter
    from selectivity_eval.core.statistics import backend, kernels

    monkeypatch.setattr(backend, "_warming", None)
    monkeypatch.setenv(KERNELS_VARIABLE, "compiled")
    backend.prepare_kernels(1, torch.device("cpu"))
    backend.kernels_ready(Reporter(quiet=True))
    from selectivity_eval.plugins.measures import detection_kernel, precision_kernel

    on_activations = (kernels._class_pass, kernels._candidate_pass, kernels._light_class_pass, kernels._argmax_pass)
    for kernel in (*on_activations, detection_kernel._detect_pass):
        assert any(str(signature[0]).startswith("array(float32") for signature in kernel.signatures), kernel
    assert precision_kernel._precision_pass.signatures  # on class codes, not activations
    assert {str(signature[0]) for signature in kernels._argmax_pass.signatures} >= {
        "array(float32, 2d, C)",
        "array(float64, 2d, C)",
    }


def test_the_compiled_passes_leave_torchs_thread_count_alone():
    """numba's OpenMP layer resets the thread's OpenMP count when it starts; a process (a dask worker)
    that runs torch on one thread must keep doing so after the kernels ran, or its torch operations
    take both cores and two such workers run three times slower."""
    code = (
        "import torch\n"
        "from selectivity_eval.core.statistics import kernels\n"
        "kernels.warm_up()\n"
        "print(torch.get_num_threads())\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == ["1"]
