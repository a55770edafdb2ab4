"""The paper's whole study, end to end through the CLI, and where its time, memory and disk go.

    python benchmarks/bench_study.py                        # 50,000 images: 1,000 classes x 50, 300-500 px
    python benchmarks/bench_study.py --images 2000 --classes 40
    python benchmarks/bench_study.py --images 2000 --classes 40 --executor dask
    python benchmarks/bench_study.py --images 2000 --classes 40 --kill-resume

Generates (seeded, cached under ``--cache``) an ImageNet-validation folder with the devkit's
ground truth (tests/study_layout.py, shared with the tests), then runs ``selectivity-eval run`` on
the paper's spec: AlexNet with random weights, conv1-conv5 and fc6-fc8, the four measures and
detection, ``--permutations`` label shufflings, the report, AM on ``--am-units`` units each of
conv5 and fc8. Prints each stage's wall time (from run.json), its share of the run, the peak
resident memory of the run's process during it (sampled every 0.1 s from this process), and the
disk used by the activation store. In the same run it times a bare forward pass over the same
images: the same data set plugin, decoding, preprocessing, DataLoader workers and batch size, and
``LoadedModel.forward``, with no hooks, no store and no measures. Every image file is read once
before anything is timed, so that neither the study nor the bare pass reads from disk while the
other finds the files in the page cache (here the first extraction over 8,000 images not read
for hours took 136 s, the same one right after 112 s).
``--bare-passes 2`` times the bare pass before and after the study and compares against their
mean and against the one after alone, since a pass over the same images varies from run to run
on a shared machine (by 10% over several runs here, and 41% once).

``--executor dask`` runs the same spec on a local cluster of ``--dask-workers`` processes, then in
process, and compares their wall times and units.csv. ``--kill-resume`` then runs the same spec
again, killed with SIGKILL once the store holds about half of the images, and reruns that; it
prints the resume figures and checks units.csv byte for byte against the uninterrupted study.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests/study_layout.py: the generator the tests use too

from tests.study_layout import imagenet_val_layout, study_spec  # noqa: E402

CLI = [sys.executable, "-c", "from selectivity_eval.core.cli.app import main; main()"]
STAGES = ("load", "extract", "measures", "untrained_baseline", "am", "report")
GiB = 2**30


class Sampler:
    """The resident memory of a process (and its children: DataLoader workers), sampled on a thread."""

    def __init__(self, pid: int, every: float = 0.1):
        self.samples: list[tuple[float, int, int]] = []  # (time, main process RSS, with its children)
        self._process = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            try:
                main = self._process.memory_info().rss
                children = sum(child.memory_info().rss for child in self._process.children(recursive=True))
            except psutil.Error:
                return
            self.samples.append((time.perf_counter(), main, main + children))
            self._stop.wait(every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, stop: float) -> tuple[int, int]:
        inside = [(main, total) for at, main, total in self.samples if start <= at <= stop]
        return (max(m for m, _ in inside), max(t for _, t in inside)) if inside else (0, 0)


def run_study(spec: dict, directory: Path, *, kill_at: int | None = None) -> dict:
    """Run the spec through the CLI; with ``kill_at``, SIGKILL it once the store holds that many images."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    started = time.perf_counter()
    process = subprocess.Popen([*CLI, "run", str(path), "--quiet"], stderr=subprocess.PIPE, text=True)
    sampler = Sampler(process.pid)
    killed_at = None
    while process.poll() is None:
        if kill_at is not None:
            done = [json.loads(p.read_text())["rows_done"] for p in Path(spec["output"]).glob("activations/*/progress.json")
                    if p.stat().st_size]
            if done and min(done) >= kill_at:
                process.send_signal(signal.SIGKILL)
                killed_at = min(done)
        time.sleep(0.1)
    ended = time.perf_counter()
    sampler.stop()
    stderr = process.stderr.read()
    if kill_at is None and process.returncode != 0:
        raise SystemExit(f"the study failed ({process.returncode}):\n{stderr}")
    return {"wall": ended - started, "started": started, "ended": ended, "sampler": sampler, "killed_at": killed_at}


def disk_bytes(directory: Path) -> int:
    return sum(path.stat().st_blocks * 512 for path in directory.rglob("*") if path.is_file())


def stage_table(run: dict, output: Path) -> dict[str, float]:
    """Print each stage's time, share, peak memory; return the timings."""
    record = json.loads((output / "run.json").read_text())
    every = {**record["timings_s"], **({"report": record["report_s"]} if "report_s" in record else {})}
    timings = {stage: every[stage] for stage in STAGES if stage in every}
    # Stages run in this order and end just before the process exits; place them back from the end.
    windows, stop = {}, run["ended"]
    for stage in reversed(list(timings)):
        windows[stage] = (stop - timings[stage], stop)
        stop -= timings[stage]
    other = run["wall"] - sum(timings.values())
    print(f"  {'stage':<12}{'wall s':>9}{'share':>8}{'peak RSS GiB':>14}{'with workers':>14}")
    for stage, seconds in timings.items():
        main, total = run["sampler"].peak(*windows[stage])
        print(f"  {stage:<12}{seconds:9.1f}{seconds / run['wall']:8.1%}{main / GiB:14.2f}{total / GiB:14.2f}")
    print(f"  {'other':<12}{other:9.1f}{other / run['wall']:8.1%}   (interpreter start, imports, writing results)")
    print(f"  {'whole run':<12}{run['wall']:9.1f}{1:8.1%}{max(m for _, m, _ in run['sampler'].samples) / GiB:14.2f}")
    store = output / "activations"
    largest = max((path.stat().st_size for path in store.glob("*/values.npy")), default=0)
    print(f"  activation store: {disk_bytes(store) / GiB:.3f} GiB on disk; largest layer matrix {largest / GiB:.3f} GiB")
    return timings


def read_through(folder: Path) -> tuple[int, float]:
    """Read every file under ``folder`` once (into the page cache); returns bytes and seconds."""
    started = time.perf_counter()
    total = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with path.open("rb") as handle:
                while chunk := handle.read(2**20):
                    total += len(chunk)
    return total, time.perf_counter() - started


def bare_forward(spec: dict) -> float:
    """Seconds of the bare forward pass over the spec's images: same plugins, decoding, workers, batches."""
    from torch.utils.data import DataLoader

    from selectivity_eval.core.extraction.extract import readable_items
    from selectivity_eval.core.registry.manager import get_registry

    registry = get_registry()
    model_params = {k: v for k, v in spec["model"].items() if k != "plugin"}
    data_params = {k: v for k, v in spec["dataset"].items() if k != "plugin"}
    model = registry.get("model", spec["model"]["plugin"])(model_params).load(seed=spec["seed"])
    data = registry.get("dataset", spec["dataset"]["plugin"])(data_params).load(seed=spec["seed"], transform=model.transform)
    loader = DataLoader(data.dataset, batch_size=spec["batch_size"], shuffle=False, num_workers=data.num_workers,
                        collate_fn=readable_items)
    model.module.eval()
    started = time.perf_counter()
    with torch.inference_mode():
        for inputs, _positions in loader:
            model.forward(inputs)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000, help="Images (default 50,000).")
    parser.add_argument("--classes", type=int, default=None, help="Classes (default: images / 50, at most 1,000).")
    parser.add_argument("--sides", type=int, nargs=2, default=(300, 500), help="Image sides drawn from (300 500).")
    parser.add_argument("--permutations", type=int, default=100, help="Label shufflings (default 100).")
    parser.add_argument("--am-units", type=int, default=16, help="AM units each of conv5 and fc8 (0: no AM).")
    parser.add_argument("--am-steps", type=int, default=256, help="AM steps (default 256, the method's).")
    parser.add_argument("--am-size", type=int, default=None, help="AM image side (default: the model's, 224).")
    parser.add_argument("--workers", type=int, default=None, help="Decoding workers (default: the data set's).")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="Images per batch (default 128, which keeps extraction within the memory target; the spec default is 256).")
    parser.add_argument("--no-report", action="store_true", help="Leave the report out of the study.")
    parser.add_argument("--no-bare-pass", action="store_true", help="Leave out the bare forward pass (Dask or resume only).")
    parser.add_argument("--bare-passes", type=int, choices=(1, 2), default=1,
                        help="Bare passes: 1 after the study, or 2, one before and one after it (compared by their mean).")
    parser.add_argument("--executor", choices=("local", "dask"), default="local")
    parser.add_argument("--dask-workers", type=int, default=2)
    parser.add_argument("--kill-resume", action="store_true", help="Also kill a run at half of extraction and resume.")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "selectivity-eval-bench",
                        help="Where generated layouts are kept between runs.")
    parser.add_argument("--keep", type=Path, default=None,
                        help="Keep the runs' outputs here (a rerun of a kept study reuses its activations).")
    args = parser.parse_args(argv)
    classes = args.classes or max(1, min(1000, args.images // 50))

    started = time.perf_counter()
    images, devkit = imagenet_val_layout(args.cache, args.images, classes, sides=tuple(args.sides))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{args.images} images of {classes} classes, sides {args.sides[0]}-{args.sides[1]} px "
          f"(layout ready in {time.perf_counter() - started:.1f} s: {images.parent}); {cores} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f} at the start, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-study-"))
    try:
        def spec_for(name: str, **changes) -> dict:
            spec = study_spec(images, devkit, work / name / "run", permutations=args.permutations,
                              am_units=args.am_units, am_steps=args.am_steps, am_size=args.am_size,
                              workers=args.workers, batch_size=args.batch_size)
            spec.update(changes)
            return spec

        spec = spec_for("study", **({"report": False} if args.no_report else {}))
        size, seconds = read_through(images)
        print(f"Read the {size / GiB:.2f} GiB of images once ({seconds:.1f} s), so every timed pass finds them in the page cache")
        bare_passes = []
        if not args.no_bare_pass and args.bare_passes == 2:
            bare_passes.append(bare_forward(spec))
            print(f"bare forward pass before the study: {bare_passes[0]:.1f} s")
        if args.executor == "dask":
            spec["executor"] = {"kind": "dask", "local_cluster": {"workers": args.dask_workers}}
        print(f"\nThe study ({args.executor}): {args.permutations} shufflings, AM on {args.am_units} units each of "
              f"conv5 and fc8 ({args.am_steps} steps, {args.am_size or 224} px)")
        study = run_study(spec, work / "study")
        timings = stage_table(study, Path(spec["output"]))
        if not args.no_bare_pass:
            bare_passes.append(bare_forward(spec))
            bare = sum(bare_passes) / len(bare_passes)
            without_am = study["wall"] - timings.get("am", 0.0)
            passes = " and ".join(f"{seconds:.1f} s" for seconds in bare_passes)
            if len(bare_passes) > 1:
                passes += f" (before and after the study; mean {bare:.1f} s)"
            print(f"  bare forward pass, same images, decoding and batches: {passes} "
                  f"({args.images / bare:.1f} images/s); extraction {timings['extract'] / bare:.2f}x it; "
                  f"the whole run without AM {without_am / bare:.2f}x it (target 1.15x)")
            if len(bare_passes) > 1:
                after = bare_passes[-1]
                print(f"  against the pass after the study alone: extraction {timings['extract'] / after:.2f}x, "
                      f"the whole run without AM {without_am / after:.2f}x")

        largest = max((path.stat().st_size for path in Path(spec["output"]).glob("activations/*/values.npy")), default=0)
        peak = max(main for _, main, _ in study["sampler"].samples)
        print(f"  peak resident memory {peak / GiB:.2f} GiB; the largest layer's matrix plus 1 GiB is "
              f"{(largest + GiB) / GiB:.2f} GiB (target)")

        if args.executor == "dask":
            local = spec_for("local", **({"report": False} if args.no_report else {}))
            local_run = run_study(local, work / "local")
            same = (Path(local["output"]) / "units.csv").read_bytes() == (Path(spec["output"]) / "units.csv").read_bytes()
            print(f"  the same spec in process: {local_run['wall']:.1f} s; dask {study['wall'] / local_run['wall']:.2f}x it "
                  f"(target 1.3x); units.csv byte-identical: {same}")

        if args.kill_resume:  # the study above is the uninterrupted run: the same spec, killed once, then rerun
            killed_spec = spec_for("killed", **({"report": False} if args.no_report else {}))
            killed = run_study(killed_spec, work / "killed", kill_at=args.images // 2)
            resumed = run_study(killed_spec, work / "killed")
            output = Path(killed_spec["output"])
            cache = json.loads((output / "run.json").read_text())["activation_cache"]
            same = (output / "units.csv").read_bytes() == (Path(spec["output"]) / "units.csv").read_bytes()
            total = killed["wall"] + resumed["wall"]
            print(f"\nKill and resume: uninterrupted {study['wall']:.1f} s (the study above); killed after "
                  f"{killed['wall']:.1f} s with {killed['killed_at']} images checkpointed; rerun {resumed['wall']:.1f} s "
                  f"({sorted(set(cache.values()))}); killed + rerun {total / study['wall']:.2f}x the uninterrupted run "
                  f"(target 1.1x); units.csv byte-identical: {same}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
