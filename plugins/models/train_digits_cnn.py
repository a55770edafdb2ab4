"""Train the digits CNN whose weights ship inside selectivity-eval (plugins/models/digits_cnn.pt).

Seeded and CPU-only, so the same command makes the same weights (from an editable install, the
default output is the shipped file in this folder):

    python -m selectivity_eval.plugins.models.train_digits_cnn              # writes plugins/models/digits_cnn.pt
    python -m selectivity_eval.plugins.models.train_digits_cnn --output /tmp/w.pt --epochs 5

It trains on the digits data set's train split and prints the accuracy on the held-out test split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from selectivity_eval.plugins.datasets.digits import digits_arrays
from selectivity_eval.plugins.models.digits_cnn import DigitsCNN

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "digits_cnn.pt"


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    with torch.inference_mode():
        predicted = model(torch.from_numpy(images)).argmax(1).numpy()
    return float((predicted == labels).mean())


def train(seed: int = 0, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3) -> tuple[DigitsCNN, float]:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train_x, train_y = digits_arrays("train")
    test_x, test_y = digits_arrays("test")
    model = DigitsCNN()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(y), generator=generator).split(batch_size):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    return model, accuracy(model, test_x, test_y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, test_accuracy = train(seed=args.seed, epochs=args.epochs)
    print(f"test accuracy: {test_accuracy:.4f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save({name: tensor.clone() for name, tensor in model.state_dict().items()}, args.output)
    print(f"weights written to {args.output}")


if __name__ == "__main__":
    main()
