"""A positive control for localist units: the ``rnn-localist`` model and the ``word-sequences`` data set.

Bowers et al. (2014, 2016) found localist ("grandmother") units in recurrent networks trained to
hold several words in short-term memory at once. This module rebuilds that setting small enough
to train in a minute on a CPU: a simple recurrent network (Elman; 200 logistic units) sees
a list of words, one word per time step, each word as its letters in three slots, and then, on a
recall cue, names the words of the list in order, one per step. Its weights ship with the package
(``rnn_localist.pt``, made by ``python -m selectivity_eval.plugins.models.train_rnn_localist``).

The data set's images are lists and its classes are words: an item is a list read at one recall
step, its class is the word the network recalls there, and its activations are the hidden state
at that step (the last step of the item's input). See examples/rnn_localist/README.md.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.utils.data import TensorDataset

from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.sources.base import DatasetSource, LoadedDataset, LoadedModel, ModelSource
from selectivity_eval.core.sources.weights import ShippedWeightsParams, load_shipped_weights, package_file
from selectivity_eval.schemas.params import PluginParams

LETTERS = "abcdefghij"
SLOTS = 3
N_WORDS = 30
LIST_LENGTH = 4
HIDDEN = 200
INPUT_SIZE = SLOTS * len(LETTERS) + 1  # the letters in their slots, and the recall cue
STEPS = 2 * LIST_LENGTH  # the list, then one recall step per word
BUILTIN_WEIGHTS = "rnn_localist.pt"


def vocabulary() -> list[str]:
    """The 30 words: distinct three-letter strings over the letters a-j, drawn once with seed 0."""
    base = len(LETTERS)
    codes = np.random.default_rng(0).choice(base**SLOTS, N_WORDS, replace=False)
    return ["".join(LETTERS[code // base ** (SLOTS - 1 - slot) % base] for slot in range(SLOTS)) for code in codes]


def word_letters() -> torch.Tensor:
    """(words, slots): each word's letter indices."""
    return torch.tensor([[LETTERS.index(letter) for letter in word] for word in vocabulary()])


def encode(lists: torch.Tensor, recall_steps: torch.Tensor | int = LIST_LENGTH) -> torch.Tensor:
    """Network input (lists, STEPS, INPUT_SIZE) for lists of word indices (lists, LIST_LENGTH).

    Steps 0..L-1 present the words, each as one active input per letter slot; the next
    ``recall_steps`` steps (per list, or for all) carry the recall cue; any steps after those are
    all zero, padding that the network never reads (see ``SerialRecallSRN.forward``).
    """
    n = lists.shape[0]
    x = torch.zeros(n, STEPS, INPUT_SIZE)
    letters = word_letters()[lists]  # (lists, L, slots)
    rows, steps = torch.arange(n).unsqueeze(1), torch.arange(LIST_LENGTH).unsqueeze(0)
    for slot in range(SLOTS):
        x[rows, steps, slot * len(LETTERS) + letters[:, :, slot]] = 1.0
    recall = torch.as_tensor(recall_steps).expand(n).unsqueeze(1)
    x[:, LIST_LENGTH:, -1] = (torch.arange(LIST_LENGTH).unsqueeze(0) < recall).float()
    return x


class SerialRecallSRN(nn.Module):
    """Elman network with logistic hidden units; ``output`` scores the 30 words at each step."""

    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.input = nn.Linear(INPUT_SIZE, hidden)
        self.recurrent = nn.Linear(hidden, hidden, bias=False)
        self.hidden = nn.Identity()  # the hidden state at the last step of each input, for measuring
        self.output = nn.Linear(hidden, N_WORDS)

    def states(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, steps, hidden): the hidden state after every step, starting from all zeros."""
        h = torch.zeros(x.shape[0], self.recurrent.in_features, device=x.device)
        states = []
        for step in range(x.shape[1]):
            h = torch.sigmoid(self.input(x[:, step]) + self.recurrent(h))
            states.append(h)
        return torch.stack(states, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The word scores (batch, words) at each input's last non-zero step, read from ``hidden``."""
        last = (x.abs().sum(-1) > 0).sum(1).clamp(min=1) - 1
        states = self.states(x)
        return self.output(self.hidden(states[torch.arange(x.shape[0], device=x.device), last]))


def random_lists(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, LIST_LENGTH) lists of distinct words, uniformly drawn."""
    return torch.argsort(torch.rand(n, N_WORDS, generator=generator), dim=1)[:, :LIST_LENGTH]


def recall_accuracy(model: SerialRecallSRN, lists: torch.Tensor) -> float:
    """Share of lists recalled entirely correctly, every word in its place."""
    with torch.inference_mode():
        scores = model.output(model.states(encode(lists))[:, LIST_LENGTH:])
    return float((scores.argmax(-1) == lists).all(1).float().mean())


def train(seed: int = 0, steps: int = 6000, batch_size: int = 64, lr: float = 0.01, log=None):
    """Train a ``SerialRecallSRN`` on fresh random lists (seeded); returns it and the loss of every step.

    The loss is the cross-entropy of each recalled word; Adam with a one-cycle learning rate
    schedule and gradients clipped to norm 1.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = SerialRecallSRN()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.1)
    losses = []
    started = time.perf_counter()
    for step in range(steps):
        lists = random_lists(batch_size, generator)
        scores = model.output(model.states(encode(lists))[:, LIST_LENGTH:])
        loss = nn.functional.cross_entropy(scores.reshape(-1, N_WORDS), lists.reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        if log is not None and (step % 500 == 0 or step == steps - 1):
            log(f"step {step:5d}  loss {loss.item():.4f}  {time.perf_counter() - started:.0f} s")
    return model.eval(), losses


def builtin_weights_path() -> Path:
    return package_file(BUILTIN_WEIGHTS)


class RNNLocalist(ModelSource):
    """Recurrent network trained on serial recall of word lists (Bowers et al. 2014): layer hidden."""

    name = "rnn-localist"
    Params = ShippedWeightsParams

    def load(self, *, seed: int) -> LoadedModel:
        torch.manual_seed(seed)
        module = SerialRecallSRN()
        identity = {
            "architecture": "SerialRecallSRN",
            **load_shipped_weights(module, self.params.weights, BUILTIN_WEIGHTS, seed, "the rnn-localist network"),
        }
        return LoadedModel(
            module=module.eval(),
            aliases={},
            class_names=vocabulary(),
            identity=identity,
            example_input=encode(torch.arange(LIST_LENGTH).unsqueeze(0), 1),
        )


class WordSequencesParams(PluginParams):
    position: Literal["all"] | Annotated[int, Field(ge=1, le=LIST_LENGTH)] = Field(
        "all",
        description=(
            "Which recall step is read: 'all' (every word of a list, each while the network recalls it) "
            "or one position 1-4 of the list."
        ),
    )
    lists_per_word: int = Field(20, ge=1, description="Lists for each word and position, its other words drawn at random.")
    list_seed: int = Field(1, description="Seed of the lists (the spec's seed does not change them).")
    correct_only: bool = Field(False, description="Keep only the items whose word the network recalls correctly.")


class WordSequences(DatasetSource):
    """Word lists for rnn-localist; an item's class is the word the network is recalling (30 words)."""

    name = "word-sequences"
    Params = WordSequencesParams

    def load(self, *, seed: int, transform=None) -> LoadedDataset:
        p = self.params
        positions = range(LIST_LENGTH) if p.position == "all" else [p.position - 1]
        generator = torch.Generator().manual_seed(p.list_seed)
        words = torch.arange(N_WORDS).repeat_interleave(p.lists_per_word)
        lists, labels, steps = [], [], []
        for position in positions:
            lists += [self._list_with(int(word), position, generator) for word in words]
            labels.append(words)
            steps.append(torch.full_like(words, position + 1))
        lists, labels, steps = torch.stack(lists), torch.cat(labels), torch.cat(steps)
        inputs = encode(lists, steps)
        if transform is not None:
            inputs = torch.stack([transform(item) for item in inputs])
        digest = hashlib.sha256(lists.numpy().tobytes() + steps.numpy().tobytes()).hexdigest()
        names = vocabulary()
        return LoadedDataset(
            dataset=TensorDataset(inputs, labels),
            labels=labels.numpy(),
            class_names=names,
            identity={"items": len(labels), "sha256": digest},
            describe=lambda i: f"item {i}: recall step {int(steps[i])} of {' '.join(names[w] for w in lists[i].tolist())}",
            correct_only=p.correct_only,
        )

    @staticmethod
    def _list_with(word: int, position: int, generator: torch.Generator) -> torch.Tensor:
        others = torch.randperm(N_WORDS - 1, generator=generator)[: LIST_LENGTH - 1]
        others = others + (others >= word).long()  # any words but `word`
        return torch.cat([others[:position], torch.tensor([word]), others[position:]])


@hookimpl
def register_models(register):
    register(RNNLocalist)


@hookimpl
def register_datasets(register):
    register(WordSequences)
