"""Train the rnn-localist network whose weights ship inside selectivity-eval (plugins/models/rnn_localist.pt).

Seeded and CPU-only (one thread), so the same command makes the same weights:

    python -m selectivity_eval.plugins.models.train_rnn_localist      # writes plugins/models/rnn_localist.pt
    python -m selectivity_eval.plugins.models.train_rnn_localist --seed 1 --output /tmp/rnn.pt

It trains on fresh random lists, prints the share of 2,000 new lists recalled perfectly and the
training time, and then counts the localist units of the hidden layer with the framework's own
localist measure, for the trained network and for the same architecture with random weights, on
the word-sequences data set: all recall steps together, and each position of the list alone.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import selectivity_eval as se
from selectivity_eval.core.extraction.extract import extract_activations, resolve_layers
from selectivity_eval.plugins.models.rnn_localist import (
    LIST_LENGTH,
    RNNLocalist,
    WordSequences,
    random_lists,
    recall_accuracy,
    train,
)
from selectivity_eval.schemas.spec import LayerSpec

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "rnn_localist.pt"


def localist_units(model: se.LoadedModel, position) -> int:
    data = WordSequences(position=position).load(seed=0)
    layers = resolve_layers(model, [LayerSpec(name="hidden")])
    activations = extract_activations(model, data, layers, batch_size=512, device=torch.device("cpu")).activations
    return int(se.compute_measures(activations["hidden"], data.labels, ["localist"])["is_localist"].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=6000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    network, _ = train(seed=args.seed, steps=args.steps, log=print)
    seconds = time.perf_counter() - started
    test_lists = random_lists(2000, torch.Generator().manual_seed(12345))
    print(f"trained in {seconds:.0f} s; lists recalled perfectly: {recall_accuracy(network, test_lists):.4f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save({name: tensor.clone() for name, tensor in network.state_dict().items()}, args.output)
    print(f"weights written to {args.output} ({args.output.stat().st_size / 1024:.0f} KiB)")

    trained = RNNLocalist(weights=str(args.output)).load(seed=0)
    untrained = trained.untrained(seed=0)
    print("localist units in `hidden` (200 units): trained / random weights (seed 0)")
    for position in ["all", *range(1, LIST_LENGTH + 1)]:
        print(f"  position {position!s:>3}: {localist_units(trained, position):3d} / {localist_units(untrained, position):3d}")


if __name__ == "__main__":
    main()
