"""A process that extracts the digits CNN's layers into an activation store, for the store's two-process tests.

    python tests/store_writer.py STORE [--hold GATE]

Checkpoints after every batch. With ``--hold``, after its first batch it creates ``GATE.started``
and waits until ``GATE`` exists (so a test can start a second process, or kill this one, while it
holds the store's lock). Prints one JSON line: the cache states and each layer's values digest.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import xxhash

from selectivity_eval.core.extraction import extract
from selectivity_eval.core.extraction.extract import ResolvedLayer, extract_activations
from selectivity_eval.core.store.activation_store import ActivationStore
from selectivity_eval.plugins.datasets.digits import Digits
from selectivity_eval.plugins.models.digits_cnn import DigitsCNN, DigitsCNNSource

LAYERS = [ResolvedLayer("conv2", "features.2", "max", False), ResolvedLayer("fc1", "classifier.1", "max", True)]
KEYS = {"conv2": "k-conv2", "fc1": "k-fc1"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--hold")
    args = parser.parse_args()
    extract.CHECKPOINT_SECONDS = -1.0
    if args.hold:
        gate = Path(args.hold)
        original = DigitsCNN.forward
        calls = []

        def held(self, x):
            if len(calls) == 1:
                Path(f"{gate}.started").touch()
                while not gate.exists():
                    time.sleep(0.05)
            calls.append(len(x))
            return original(self, x)

        DigitsCNN.forward = held
    model = DigitsCNNSource({}).load(seed=0)
    data = Digits({"split": "test"}).load(seed=0)
    extraction = extract_activations(
        model, data, LAYERS, batch_size=64, device=torch.device("cpu"), store=ActivationStore(Path(args.store)), keys=KEYS
    )
    digests = {label: xxhash.xxh3_128_hexdigest(values.tobytes()) for label, values in extraction.activations.items()}
    print(json.dumps({"cache": extraction.cache, "digests": digests}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
