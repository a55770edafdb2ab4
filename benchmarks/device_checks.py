"""What CI (CPU only) cannot check, in one short script for a session that is lent a GPU.

    python benchmarks/device_checks.py                  # on cuda: checks, then the two issue benchmarks
    python benchmarks/device_checks.py --device cpu     # the same checks here, to try the script
    python benchmarks/device_checks.py --no-benchmarks  # checks only

Each check prints PASS or FAIL with what it measured; the exit code is the number of failures.
1. The four measures on the device equal the CPU's (classes and flags exactly, values to 1e-9) on
   ReLU'd Gaussian and small-integer activations, where ties are common.
2. The digits example study run with ``device:`` set to the device gives the CPU run's units.csv,
   up to the float rounding of the device's convolutions (figures printed).
3. AM on the device, in float32 and bfloat16: every digit logit's image beats every real digit
   and is classified as its digit.
Then, unless ``--no-benchmarks``, it runs bench_measures.py and bench_am.py on the device.

On a machine whose Python already holds torch and the scientific stack (the lent H200 does, torch
2.11 there, pydantic not), install what is missing from carried wheels and then this package
with ``pip install --no-deps .`` before running the script.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch
import yaml

import selectivity_eval as se
from selectivity_eval.core.outputs.results import read_units_csv
from selectivity_eval.plugins.datasets.digits import digits_arrays
from selectivity_eval.plugins.models.digits_cnn import DigitsCNNSource

HERE = Path(__file__).resolve().parent
FOUR = ["localist", "precision", "ccmas", "topclass"]
TINY_AM = {"steps": 48, "lr": 0.1, "jitter": 0, "scale": [1.0, 1.0], "rotate": 0}


def report(name: str, ok: bool, detail: str) -> int:
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
    return 0 if ok else 1


def measures_match(device: str) -> int:
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(100), 50))
    cases = {
        "ReLU'd Gaussian": np.maximum(rng.standard_normal((5000, 512), dtype=np.float32), 0),
        "small integers": rng.integers(0, 4, size=(5000, 512)).astype(np.float32),
    }
    failures = 0
    for name, matrix in cases.items():
        on_cpu = se.compute_measures(matrix, labels, FOUR, device="cpu")
        on_device = se.compute_measures(matrix, labels, FOUR, device=device)
        differing = []
        for column, expected in on_cpu.items():
            got = on_device[column]
            same = np.allclose(got, expected, rtol=1e-9, atol=1e-12, equal_nan=True) if expected.dtype.kind == "f" else np.array_equal(got, expected)
            if not same:
                differing.append(column)
        failures += report(f"measures on {device}, {name}", not differing, f"columns differing from the CPU: {differing or 'none'}")
    return failures


def run_study(spec: dict, output: Path) -> subprocess.CompletedProcess:
    path = output.with_suffix(".yaml")
    path.write_text(yaml.safe_dump({**spec, "output": str(output)}))
    command = [sys.executable, "-m", "selectivity_eval", "run", str(path), "-q"]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def study_matches(device: str) -> int:
    spec = yaml.safe_load(files("selectivity_eval.core.spec").joinpath("digits.yaml").read_text())
    spec["report"] = False
    with tempfile.TemporaryDirectory() as directory:
        runs = {}
        for where in ("cpu", device):
            completed = run_study({**spec, "device": where}, Path(directory) / f"on-{where}")
            if completed.returncode != 0:
                return report(f"digits study on {where}", False, completed.stderr[-2000:])
            runs[where] = read_units_csv(Path(directory) / f"on-{where}" / "units.csv")
    cpu, other = runs["cpu"], runs[device]
    agree, total, worst = 0, 0, 0.0
    for layer, columns in cpu.items():
        for column, cells in columns.items():
            theirs = other[layer][column]
            try:
                a, b = np.array(cells, dtype=float), np.array(theirs, dtype=float)
            except ValueError:
                agree += sum(x == y for x, y in zip(cells, theirs))
                total += len(cells)
                continue
            finite = np.isfinite(a) & np.isfinite(b)
            if column.endswith(("_class", "_count")):
                agree += int((a == b).sum())
                total += len(a)
            elif finite.any():
                worst = max(worst, float(np.max(np.abs(a[finite] - b[finite]) / np.maximum(np.abs(a[finite]), 1e-6))))
    share = agree / max(total, 1)
    return report(
        f"digits study on {device} against the CPU",
        share >= 0.99 and worst < 1e-2,
        f"{share:.2%} of class, flag and count cells equal; largest relative difference of a value {worst:.1e}",
    )


def am_beats_the_data(device: str) -> int:
    model = DigitsCNNSource().load(seed=0)
    images, _ = digits_arrays("all")
    captured = []
    logits = dict(model.module.named_modules())["classifier.3"]
    handle = logits.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    with torch.inference_mode():
        model.module(torch.from_numpy(images))
    handle.remove()
    data_max = captured[0].amax(0).numpy()
    failures = 0
    for precision in ("float32", "bfloat16"):
        result = se.maximise(model, "fc2", list(range(10)), device=device, precision=precision, **TINY_AM)
        beats = bool((result.activations.numpy() > data_max).all())
        classified = result.top1.tolist() == list(range(10))
        failures += report(
            f"AM on {device}, {precision}",
            beats and classified,
            f"images beat every real digit: {beats}; classified as their digits: {classified} ({result.top1.tolist()})",
        )
        model.module.to("cpu")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--no-benchmarks", action="store_true")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch sees no CUDA device here; use --device cpu to try the checks on the CPU")
    print(f"torch {torch.__version__}, device {args.device}", flush=True)
    failures = measures_match(args.device) + study_matches(args.device) + am_beats_the_data(args.device)
    if not args.no_benchmarks:
        for script, extra in (("bench_measures.py", []), ("bench_am.py", ["--lucent-like", "4"])):
            print(f"\n$ python benchmarks/{script} --device {args.device} {' '.join(extra)}", flush=True)
            subprocess.run([sys.executable, str(HERE / script), "--device", args.device, *extra], check=False)
    sys.exit(failures)


if __name__ == "__main__":
    main()
