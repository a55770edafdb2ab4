"""Extraction overhead: the bare forward pass against our hooks plus the activation store.

    python benchmarks/bench_extract.py            # AlexNet and MobileNetV2, 224 px, 256 images
    python benchmarks/bench_extract.py --images 64 --repeats 1

Both sides see the same batches from the same DataLoader setup, in one run, alternating, with
random (seeded) weights; the store side writes every layer to a fresh store on disk each time.
Reports the median time of each side and the overhead as a share of the bare forward pass fed
the same channels-last images as ours (``LoadedModel.forward``), and, beside it, a bare pass fed
plain contiguous images, as a script of one's own would be.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader, TensorDataset

from selectivity_eval.core.extraction.extract import ResolvedLayer, extract_activations, readable_items
from selectivity_eval.core.sources.base import LoadedDataset, LoadedModel
from selectivity_eval.core.store.activation_store import ActivationStore

LAYERS = {
    "alexnet": [
        ResolvedLayer("conv1", "features.0", "max", True),
        ResolvedLayer("conv2", "features.3", "max", True),
        ResolvedLayer("conv3", "features.6", "max", True),
        ResolvedLayer("conv4", "features.8", "max", True),
        ResolvedLayer("conv5", "features.10", "max", True),
        ResolvedLayer("fc6", "classifier.1", "max", True),
        ResolvedLayer("fc7", "classifier.4", "max", True),
        ResolvedLayer("fc8", "classifier.6", "max", False),
    ],
    "mobilenet_v2": [
        ResolvedLayer("block3", "features.3", "max", False),
        ResolvedLayer("block7", "features.7", "max", False),
        ResolvedLayer("block14", "features.14", "max", False),
        ResolvedLayer("last_conv", "features.18", "mean", False),
        ResolvedLayer("logits", "classifier.1", "max", False),
    ],
}


def bare(module: torch.nn.Module, dataset, batch_size: int, memory_format: torch.memory_format) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        for inputs, _positions in DataLoader(dataset, batch_size=batch_size, collate_fn=readable_items):
            module(inputs.contiguous(memory_format=memory_format))
    return time.perf_counter() - started


def ours(model: LoadedModel, data: LoadedDataset, layers, batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        store = ActivationStore(Path(directory))
        started = time.perf_counter()
        extract_activations(
            model, data, layers, batch_size=batch_size, device=torch.device("cpu"), store=store,
            keys={layer.label: "bench" for layer in layers},
        )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    torch.manual_seed(0)
    images = torch.rand(args.images, 3, args.size, args.size)
    labels = torch.arange(args.images) % 1000
    dataset = TensorDataset(images, labels)
    data = LoadedDataset(dataset=dataset, labels=labels.numpy(), class_names=[])
    print(f"{args.images} images at {args.size} px, batches of {args.batch_size}, {torch.get_num_threads()} threads")
    for arch, layers in LAYERS.items():
        module = torchvision.models.get_model(arch, weights=None).eval()
        model = LoadedModel(module=module)
        bare(module, dataset, args.batch_size, torch.channels_last)  # warm up
        plain_times, bare_times, our_times = [], [], []
        for _ in range(args.repeats):
            plain_times.append(bare(module, dataset, args.batch_size, torch.contiguous_format))
            bare_times.append(bare(module, dataset, args.batch_size, torch.channels_last))
            our_times.append(ours(model, data, layers, args.batch_size))
        t_plain, t_bare, t_ours = (statistics.median(times) for times in (plain_times, bare_times, our_times))
        print(
            f"{arch:13s} bare forward {t_bare:7.3f} s | hooks + store ({len(layers)} layers) {t_ours:7.3f} s | "
            f"overhead {100 * (t_ours - t_bare) / t_bare:+5.1f}% of the bare pass | a contiguous bare pass "
            f"{t_plain:7.3f} s, {t_plain / t_ours:.2f}x our time"
        )


if __name__ == "__main__":
    main()
