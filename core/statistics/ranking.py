"""Rankings of images by activation, ties by ascending image index (measures.md, Notation)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

SORT_BLOCK_BYTES = 64 * 2**20


def ranked_top_indices(values: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest values of each column, ordered high to low.

    Equal values are ranked by ascending image index, both in which images make the top ``k``
    when a tie straddles the k-th place and in their order within it (measures.md, Notation).
    ``torch.topk`` alone guarantees neither, so its result is repaired on the few columns that need it.
    Returns a (k, units) int64 tensor.
    """
    n = values.shape[0]
    top_values, top_idx = torch.topk(values, k, dim=0, largest=True, sorted=True)
    kth = top_values[-1]
    kept_at_kth = (top_values == kth).sum(0)
    straddling = ((values == kth).sum(0) > kept_at_kth).nonzero().squeeze(1)
    if straddling.numel():
        equal = values[:, straddling] == kth[straddling]
        lower_index_first = torch.arange(n, 0, -1, device=values.device).unsqueeze(1)
        first_equal = torch.topk(torch.where(equal, lower_index_first, 0), k, dim=0).indices
        slots = kept_at_kth[straddling]
        position = torch.arange(k, device=values.device).unsqueeze(1)
        source = (position - (k - slots)).clamp(min=0)
        top_idx[:, straddling] = torch.where(
            position >= k - slots, first_equal.gather(0, source), top_idx[:, straddling]
        )
    by_index = top_idx.sort(dim=0).values
    values_by_index = values.gather(0, by_index)
    order = torch.sort(values_by_index, dim=0, descending=True, stable=True).indices
    return by_index.gather(0, order)


def kth_largest(table: torch.Tensor, k: int) -> torch.Tensor:
    """(units,): the k-th highest value of each column of a (rows, units) table (NaN counts as highest)."""
    if table.device.type == "cpu":
        rows = table.shape[0]
        return torch.from_numpy(np.partition(table.numpy(), rows - k, axis=0)[rows - k])
    return torch.topk(table, k, dim=0).values[-1]


def nonzero_sparse(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``mask.nonzero(as_tuple=True)`` for a contiguous 2-D mask, fast when few entries are set.

    Scans the mask eight bytes at a time and expands only the words that hold a set entry.
    """
    rows, cols = mask.shape
    if cols % 8 or not mask.is_contiguous() or mask.numel() == 0:
        return mask.nonzero(as_tuple=True)
    words = mask.view(-1).view(torch.int64)
    hit_words = words.nonzero().squeeze(1)
    hit_bytes = mask.view(-1).view(-1, 8)[hit_words].nonzero()
    flat = hit_words[hit_bytes[:, 0]] * 8 + hit_bytes[:, 1]
    return flat // cols, flat % cols


@dataclass(frozen=True)
class Candidates:
    """Per unit (row), the images at or above its bound, high activation first, then low image index.

    Only the first ``count`` slots of a unit hold candidates (the rest hold -inf); a ``fallback``
    unit has none here, its bound being too loose or undefined.
    """

    bound: torch.Tensor
    image: torch.Tensor
    value: torch.Tensor
    count: torch.Tensor
    fallback: torch.Tensor


def sorted_columns(columns: torch.Tensor) -> torch.Tensor:
    """(units, images): each column of an (images, units) matrix in ascending order (NaN last), contiguous."""
    n_units = columns.shape[1]
    if columns.device.type != "cpu" or columns.dtype not in (torch.float32, torch.float64):
        out = torch.empty((n_units, columns.shape[0]), dtype=columns.dtype, device=columns.device)
        step = max(1, SORT_BLOCK_BYTES // max(1, columns.shape[0] * columns.element_size()))
        for start in range(0, n_units, step):
            out[start : start + step] = torch.sort(columns[:, start : start + step].T, dim=1).values
        return out
    # numpy's vectorised sort is several times faster than torch's on a CPU and lets go of the
    # GIL: the units are sorted in place, in blocks on as many threads as torch uses. Both sorts
    # put NaN last, and sorted values are the same whichever sort made them. torch transposes a
    # contiguous matrix in tiles (numpy does not, nor torch a column slice: several times slower).
    out = torch.from_numpy(np.empty((n_units, columns.shape[0]), dtype=columns.numpy().dtype))
    out.copy_((columns if columns.is_contiguous() else columns.contiguous()).T)
    threads = max(1, min(torch.get_num_threads(), n_units))
    step = max(1, -(-n_units // threads))
    blocks = [out[start : start + step].numpy() for start in range(0, n_units, step)]
    if threads == 1:
        blocks[0].sort(axis=1)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda block: block.sort(axis=1), blocks))
    return out
