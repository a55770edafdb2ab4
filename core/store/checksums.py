"""Checksums of the activation store's files: xxh3-128 per 64 MiB chunk of a file's bytes, and sealed JSON.

xxh3 hashes about 8 GiB/s on one core here (blake2b 0.4, sha256 1.0; ``benchmarks/bench_store.py``),
so verifying a cached layer costs a small fraction of measuring it. Chunks let a checkpoint extend
the checksums of a growing file by hashing only its new bytes. A sealed JSON file carries the
checksum of its own content, so an edited or bit-flipped record is detected, not trusted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from selectivity_eval.core.errors import StoreCorruption
from selectivity_eval.core.outputs import atomic

CHUNK_BYTES = 64 * 1024 * 1024
SEAL = "checksum"


def _bytes_of(path: Path) -> np.ndarray:
    return np.memmap(path, dtype=np.uint8, mode="r") if Path(path).stat().st_size else np.zeros(0, np.uint8)


def chunk_checksums(path: Path, length: int | None = None, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Checksums of the first ``length`` bytes of ``path`` (all by default), one per chunk.

    With ``previous`` (an earlier result for a shorter prefix of the same file), its whole chunks
    are kept and only the rest is read.
    """
    data = _bytes_of(path)
    length = int(data.size if length is None else length)
    kept: list[str] = []
    if previous is not None:
        kept = list(previous["chunks"][: int(previous["length"]) // CHUNK_BYTES])
    chunks = kept + [
        xxhash.xxh3_128_hexdigest(data[start : min(start + CHUNK_BYTES, length)])
        for start in range(len(kept) * CHUNK_BYTES, length, CHUNK_BYTES)
    ]
    del data
    return {"length": length, "chunks": chunks}


def verify_file(path: Path, expected: dict[str, Any], *, whole: bool) -> None:
    """Raise StoreCorruption naming ``path`` unless its bytes match ``expected`` (``whole``: and its size)."""
    try:
        size = path.stat().st_size
    except OSError:
        raise StoreCorruption(f"{path} is missing") from None
    length = int(expected["length"])
    if size < length or (whole and size != length):
        raise StoreCorruption(f"{path} is truncated or resized ({size:,} bytes, {length:,} expected)")
    found = chunk_checksums(path, length)["chunks"]
    bad = [index for index, (a, b) in enumerate(zip(found, expected["chunks"])) if a != b]
    if bad or len(found) != len(expected["chunks"]):
        first = bad[0] if bad else min(len(found), len(expected["chunks"]))
        raise StoreCorruption(f"{path} fails its checksum (bytes from {first * CHUNK_BYTES:,} on)")


def _digest(content: dict[str, Any]) -> str:
    return xxhash.xxh3_128_hexdigest(json.dumps(content, sort_keys=True, default=str).encode())


def write_sealed(path: Path, content: dict[str, Any]) -> None:
    """``content`` as JSON with its own checksum, written atomically."""
    atomic.write_text(path, json.dumps({**content, SEAL: _digest(content)}, indent=2, default=str))


def read_sealed(path: Path) -> dict[str, Any]:
    """A sealed JSON file's content; StoreCorruption naming it when it is unreadable or altered."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        seal = data.pop(SEAL)
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as error:
        raise StoreCorruption(f"{path} cannot be read ({type(error).__name__})") from None
    if seal != _digest(data):
        raise StoreCorruption(f"{path} fails its checksum")
    return data
