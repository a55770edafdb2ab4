"""Precision's count of classes in each unit's top set as one compiled (numba) pass, for CPU chunks
the compiled statistics take.

The torch code in ``precision.py`` sorts every unit's top-set classes and finds runs with a dozen
(top_n x units) tensor operations; under 100 label shufflings those are most of the measure's time.
Here each unit counts its top set's classes in a small table and picks the winner by the same rule
(the highest count, then the class met first from the top, or with the gale2019 preset met first
reading up from place N), giving the same class and count. Imported only when
``compiled_kernels`` says the compiled passes are in use.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from selectivity_eval.core.statistics.kernels import _run, _threads


@numba.njit(parallel=True, cache=True, boundscheck=False, nogil=True)
def _precision_pass(top, codes, n_classes, last_place_wins, block, best_class, best_count):  # pragma: no cover
    k, n_units = top.shape
    for b in numba.prange((n_units + block - 1) // block):
        count = np.zeros(n_classes, np.int64)
        place = np.empty(n_classes, np.int64)
        for u in range(b * block, min(n_units, (b + 1) * block)):
            for r in range(k):
                c = codes[top[r, u]]
                if count[c] == 0 or last_place_wins:
                    place[c] = r
                count[c] += 1
            best = -1
            winner = 0
            for r in range(k):
                c = codes[top[r, u]]
                priority = count[c] * (k + 1) + (place[c] if last_place_wins else k - place[c])
                if priority > best:
                    best = priority
                    winner = c
            best_class[u] = winner
            best_count[u] = count[winner]
            for r in range(k):
                count[codes[top[r, u]]] = 0


def winning_class(top: torch.Tensor, labels, last_place_wins: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(class code, count) per unit of the class that wins each unit's top set (``top``: (k, units)
    image indices, high to low), as ``Precision.compute_columns`` picks it."""
    n_units = top.shape[1]
    best_class = np.empty(n_units, dtype=np.int64)
    best_count = np.empty(n_units, dtype=np.int64)
    block = max(64, -(-n_units // _threads()))
    codes = labels.codes.numpy()
    _run(_precision_pass, top.numpy(), codes, labels.n_classes, last_place_wins, block, best_class, best_count)
    return torch.from_numpy(best_class), torch.from_numpy(best_count)


def warm_up() -> None:
    """Compile the pass (or load it from numba's cache) on a tiny top set."""
    from selectivity_eval.core.statistics.labels import Labels

    labels = Labels.from_array(np.array([0, 1, 1, 2]))
    top = torch.tensor([[1, 0], [2, 3]])
    winning_class(top, labels, False)
    winning_class(top, labels, True)
