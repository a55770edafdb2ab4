"""Activation maximisation: many units in one batch against one unit at a time, side by side.

    python benchmarks/bench_am.py                          # 64 units of AlexNet conv4, 128 px, 64 steps
    python benchmarks/bench_am.py --units 16 --steps 16    # a quicker look

Random-weight AlexNet (``torchvision.models.alexnet(weights=None)``, seeded). Both ways run the same
code with the same settings (the gradient-ascent defaults: Fourier parameters, decorrelated colour,
jitter, scale, rotate), differing only in ``batch_size``: all units together, or 1 as Lucent-style
tools do. Prints units per second of each, their ratio, and how far apart the two ways' images and
activations are (see docs/am.md on rounding across batch sizes). Each precision in ``--precisions``
(default float32 and bfloat16, the ``precision`` parameter) is timed both ways.

``--against-lucent`` times torch-lucent itself against the engine instead: the same network, layer,
units, image size, steps, Adam learning rate, Fourier parameters with decorrelated colour,
transforms (8 px of jitter, scale 0.9-1.1, rotate 10 degrees; Lucent draws from lists, the engine
from ranges) and objective (a channel's mean), in float32; Lucent one unit per ``render_vis`` call
as its users run it. It prints units per second each way and, per unit, the activation each final
image reaches, both measured by one forward pass of the same code. ``--budgets 96,128`` also runs
the engine at those step counts and prints how soon it reaches Lucent's final activation on every
unit. Lucent is an optional extra, installed without its old pins: ``pip install --no-deps
torch-lucent`` and ``pip install -e .[bench-lucent]`` (what it imports: tqdm, decorator, kornia,
IPython).

``--lucent-like N`` adds a third way, timed on N units: one unit at a time in a loop written as
Lucent-style tools write it (full forward pass, weight gradients computed), same image
parameters, transforms and steps. It shows what the engine's other savings (stopping at the layer,
no weight gradients) add to batching.
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import selectivity_eval as se
from selectivity_eval.plugins.am.engine import optimise_units, unit_seed, unit_values
from selectivity_eval.plugins.am.image import ImageParameters
from selectivity_eval.plugins.am.input_space import input_space
from selectivity_eval.plugins.am.params import OptimiseParams
from selectivity_eval.plugins.am.transforms import RandomAffine


def timed(model, layer, units, params, device):
    started = time.perf_counter()
    result = optimise_units(model, layer, units, params, seed=0, device=device)
    return time.perf_counter() - started, result


def lucent_like(model, layer, units, params, device) -> float:
    """Seconds for ``units`` one at a time, the way Lucent-style loops run: the whole network each
    step, gradients for every weight, the objective read from a stored module output."""
    space = input_space(model, params)
    network = model.module.to(device).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(True)
    target = dict(network.named_modules())[layer]
    started = time.perf_counter()
    for unit in units:
        generator = torch.Generator().manual_seed(unit_seed(0, layer, unit))
        shape = ImageParameters.shape_of(params.parameterisation, space.channels, space.size)
        initial = torch.randn(shape, generator=generator)[None].to(device)
        image = ImageParameters(params.parameterisation, initial, space.channels, space.size, params.decorrelate)
        affine = RandomAffine([generator], params.steps, space.size, params.jitter, params.scale, params.rotate, device)
        optimiser = torch.optim.Adam(image.parameters(), lr=params.lr)
        stored = {}
        handle = target.register_forward_hook(lambda _m, _i, out: stored.update(out=out))
        index = torch.tensor([unit], device=device)
        for step in range(params.steps):
            optimiser.zero_grad()
            network(space.to_model(affine(image.images(), step)))
            (-unit_values(stored["out"], index, params.objective).sum()).backward()
            optimiser.step()
        handle.remove()
    network.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def reached(network, layer: str, images: torch.Tensor, units: list[int]) -> torch.Tensor:
    """Each unit's channel mean on its own final image ([0, 1] RGB), ImageNet-normalised, float32."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    stored = {}
    handle = dict(network.named_modules())[layer].register_forward_hook(lambda _m, _i, out: stored.update(out=out))
    with torch.no_grad():
        network((images.float() - mean) / std)
    handle.remove()
    return unit_values(stored["out"], torch.tensor(units), "mean")


LUCENT_JITTER = 8
"""Lucent's ``jitter(8)`` shifts an image by 0-7 px one way; the engine's ``jitter: 4`` by up to 4 px
either way, the same 8 px of travel (its ``jitter: 8`` would span 16)."""


def against_lucent(network, model, layer: str, units: list[int], size: int, steps: int, budgets: list[int]) -> None:
    """torch-lucent's render_vis, one unit per call, against the engine's batch, at the same settings.

    The engine also runs at each of ``budgets`` steps, timed before and after Lucent (the slower
    counts), which tells how soon it reaches Lucent's final activation on every unit.
    """
    import kornia
    from kornia.geometry import transform as geometry

    for name in ("get_rotation_matrix2d", "warp_affine"):  # Lucent calls these by kornia's old top-level names
        if not hasattr(kornia, name):
            setattr(kornia, name, getattr(geometry, name))
    from lucent.optvis import param, render, transform

    ours_params = OptimiseParams(
        steps=steps, image_size=size, batch_size=len(units), normalise="imagenet", objective="mean", lr=0.05,
        parameterisation="fourier", decorrelate=True, jitter=LUCENT_JITTER / 2, scale=(0.9, 1.1), rotate=10,
    )
    optimise_units(model, layer, units[:2], ours_params.model_copy(update={"steps": 2}), seed=0, device=torch.device("cpu"))
    runs = sorted({steps, *budgets})

    def engine_runs() -> dict:
        return {
            budget: timed(model, layer, units, ours_params.model_copy(update={"steps": budget}), torch.device("cpu"))
            for budget in runs
        }

    before = engine_runs()
    transforms = [
        transform.jitter(LUCENT_JITTER),
        transform.random_scale([0.9 + 0.01 * i for i in range(21)]),
        transform.random_rotate(list(range(-10, 11))),
    ]
    name = layer.replace(".", "_")
    lucent_images = []
    started = time.perf_counter()
    for unit in units:
        torch.manual_seed(unit)
        final = render.render_vis(
            network, f"{name}:{unit}", lambda: param.image(size, fft=True, decorrelate=True), transforms=transforms,
            thresholds=(steps,), show_image=False, progress=False, fixed_image_size=size,
        )[-1]
        lucent_images.append(torch.from_numpy(final).permute(0, 3, 1, 2))
    lucent_time = time.perf_counter() - started
    # Again after Lucent, as this machine's speed drifts; each budget counts its slower run.
    after = engine_runs()
    ours = {budget: (max(before[budget][0], after[budget][0]), after[budget][1]) for budget in runs}
    network.zero_grad(set_to_none=True)
    lucent_reached = reached(network, layer, torch.cat(lucent_images), units)
    reached_by = {budget: reached(network, layer, result.images, units) for budget, (_, result) in ours.items()}
    n = len(units)
    ours_time = ours[steps][0]
    print(f"  selectivity-eval, {n} units in one batch: {ours_time:8.2f} s  {n / ours_time:8.3f} units/s")
    print(f"  torch-lucent, one unit per render_vis:  {lucent_time:8.2f} s  {n / lucent_time:8.3f} units/s")
    print(f"  units per second, ours / Lucent's: {lucent_time / ours_time:.2f}x (target 4x)")
    print("  activation reached (channel mean on the final image), per unit: unit, ours, Lucent's")
    for unit, a, b in zip(units, reached_by[steps].tolist(), lucent_reached.tolist()):
        print(f"    {unit:5d} {a:10.4g} {b:10.4g}{'' if a >= b else '   (Lucent higher)'}")
    higher = int((reached_by[steps] >= lucent_reached).sum())
    print(f"  ours equal or higher on {higher} of {n} units; medians {reached_by[steps].median().item():.4g} against "
          f"{lucent_reached.median().item():.4g}")
    same = all(torch.equal(before[budget][1].images, after[budget][1].images) for budget in runs)
    print(f"  the engine at each step budget, against Lucent's {steps} steps ({lucent_time:.2f} s); "
          f"the same images both times: {'yes' if same else 'NO'}")
    first_all = None
    for budget, (seconds, _) in ours.items():
        at_least = int((reached_by[budget] >= lucent_reached).sum())
        print(f"    {budget:4d} steps: {seconds:8.2f} s (runs before and after Lucent's: {before[budget][0]:.2f} "
              f"and {after[budget][0]:.2f} s), {lucent_time / seconds:5.2f}x less time, "
              f"equal or higher on {at_least} of {n} units")
        if at_least == n and first_all is None:
            first_all = budget
    if first_all is None:
        print("  no budget reached Lucent's final activation on every unit")
    else:
        print(f"  Lucent's final activation on every unit within {first_all} steps: "
              f"{lucent_time / ours[first_all][0]:.2f}x less time (target 4x)")


def matmul_rate(dtype: torch.dtype, device: torch.device, side: int = 4096) -> float:
    """GFLOP/s of a large square matrix product: about as fast as this machine does arithmetic in ``dtype``."""
    a = torch.randn(side, side, device=device).to(dtype)
    b = torch.randn(side, side, device=device).to(dtype)
    a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(3):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 3 * 2 * side**3 / (time.perf_counter() - started) / 1e9


def flops_per_step(model, layer, params, device) -> int:
    """Floating-point operations of the network (convolutions, matrix products and their gradients)
    in one optimisation step of one image: a two-step run's count less a one-step run's."""
    counts = []
    for steps in (1, 2):
        with FlopCounterMode(display=False) as counter:
            optimise_units(model, layer, [0], params.model_copy(update={"steps": steps, "batch_size": 1}), seed=0, device=device)
        counts.append(counter.get_total_flops())
    return counts[1] - counts[0]


def compare(model, layer, units, batched, device) -> tuple[float, float]:
    """Times ``units`` all in one batch and one at a time, prints both and how far apart they are."""
    single = batched.model_copy(update={"batch_size": 1})
    warm = batched.model_copy(update={"steps": 2})
    optimise_units(model, layer, units[:2], warm, seed=0, device=device)
    optimise_units(model, layer, units[:1], warm.model_copy(update={"batch_size": 1}), seed=0, device=device)
    n = len(units)
    print(f"  {batched.precision}:")
    batch_time, batch_result = timed(model, layer, units, batched, device)
    print(f"    batched ({n} per batch): {batch_time:8.2f} s  {n / batch_time:8.2f} units/s")
    single_time, single_result = timed(model, layer, units, single, device)
    print(f"    one unit at a time:      {single_time:8.2f} s  {n / single_time:8.2f} units/s")
    print(f"    ratio (batched / one at a time): {single_time / batch_time:.1f}x")
    work = flops_per_step(model, layer, batched, device) * n * batched.steps
    dtype = torch.bfloat16 if batched.precision == "bfloat16" else torch.float32
    print(
        f"    the network's arithmetic ({work / 1e12:.2f} TFLOP, counted by torch's FlopCounterMode) runs at "
        f"{work / batch_time / 1e9:.0f} GFLOP/s batched, {work / single_time / 1e9:.0f} GFLOP/s one at a time; "
        f"a 4096x4096 {batched.precision} matrix product here: {matmul_rate(dtype, device):.0f} GFLOP/s"
    )
    pixels = (batch_result.images - single_result.images).abs().flatten(1).amax(1)
    reached = (batch_result.activations - single_result.activations).abs() / single_result.activations.abs()
    print(
        f"    the two ways' images: {int((pixels < 1e-5).sum())} of {n} equal within 1e-5, largest pixel "
        f"difference {pixels.max().item():.2e}; activations reached differ by {reached.median().item():.1e} "
        f"(median), {reached.max().item():.1e} (largest), relative"
    )
    return batch_time, single_time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=64, help="Units of the layer to maximise (default 64).")
    parser.add_argument("--steps", type=int, default=64, help="Gradient-ascent steps (default 64).")
    parser.add_argument("--size", type=int, default=128, help="Image side in pixels (default 128).")
    parser.add_argument("--layer", default="features.8", help="AlexNet module (default features.8 = conv4).")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu).")
    parser.add_argument(
        "--lucent-like", type=int, default=0, metavar="N", help="Also time a Lucent-style loop on N units (0: skip)."
    )
    parser.add_argument(
        "--against-lucent", action="store_true", help="Time torch-lucent against the engine instead (float32, CPU)."
    )
    parser.add_argument(
        "--budgets", default="", help="With --against-lucent, comma-separated step counts to run the engine at too."
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's).")
    parser.add_argument(
        "--precisions", default="float32,bfloat16", help="Comma-separated precisions to time (default both)."
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    network = torchvision.models.alexnet(weights=None).eval()
    model = se.LoadedModel(module=network, example_input=torch.zeros(1, 3, args.size, args.size))
    units = list(range(args.units))
    print(
        f"AlexNet (random weights) {args.layer}, {args.units} units, {args.size} px, {args.steps} steps, "
        f"{device}, {torch.get_num_threads()} threads"
    )
    if args.against_lucent:
        budgets = [int(b) for b in args.budgets.split(",") if b]
        against_lucent(network, model, args.layer, units, args.size, args.steps, budgets)
        return
    times = {}
    for precision in args.precisions.split(","):
        batched = OptimiseParams(
            steps=args.steps, image_size=args.size, batch_size=args.units, normalise="imagenet", precision=precision
        )
        times[precision] = compare(model, args.layer, units, batched, device)
    if "float32" in times and "bfloat16" in times:
        print(
            f"  bfloat16 batched against float32 one unit at a time: "
            f"{times['float32'][1] / times['bfloat16'][0]:.1f}x the units per second"
        )
    if args.lucent_like:
        single = OptimiseParams(steps=args.steps, image_size=args.size, batch_size=1, normalise="imagenet")
        sample = units[: args.lucent_like]
        naive_time = lucent_like(model, args.layer, sample, single, device) * args.units / len(sample)
        print(
            f"  Lucent-style loop, float32 (timed on {len(sample)} units, scaled to {args.units}): {naive_time:8.2f} s  "
            f"{args.units / naive_time:8.2f} units/s; batched is "
            + ", ".join(f"{naive_time / batch_time:.1f}x faster in {name}" for name, (batch_time, _) in times.items())
        )


if __name__ == "__main__":
    main()
