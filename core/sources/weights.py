"""Weights files shared by the model plugins: loading a state dict safely, and a file's sha256."""

from __future__ import annotations

import hashlib
import pickle
from importlib import resources
from pathlib import Path

import torch
from pydantic import Field

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.schemas.params import PluginParams


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a checkpoint file, loaded without executing any pickled code.

    The file holds either a bare state dict or a full checkpoint dict with a ``state_dict`` key.
    """
    if not path.is_file():
        raise UserInputError(f"Weights file {str(path)!r} (model.weights) does not exist.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = [line.strip() for line in str(error).splitlines() if "GLOBAL" in line]
        detail = f" ({found[0].rstrip('.')})" if found else ""
        raise UserInputError(
            f"Weights file {str(path)!r} is refused: it holds pickled Python objects besides tensors, and loading "
            f"them could run code from the file{detail}. Save the weights alone, with "
            "torch.save(model.state_dict(), path) or as a .safetensors file, and give that file."
        ) from None
    except Exception as error:
        raise UserInputError(f"Weights file {str(path)!r} could not be loaded as a state dict: {error}") from None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise UserInputError(f"Weights file {str(path)!r} holds a {type(checkpoint).__name__}, not a state dict.")
    return checkpoint


def file_sha256(path: Path) -> str:
    """The file's sha256 as hex, read in chunks so large checkpoints need no extra memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ShippedWeightsParams(PluginParams):
    """Parameters of a model whose trained weights ship inside the package."""

    weights: str = Field(
        "builtin",
        description="'builtin' (the shipped trained weights), 'none' (random, seeded) or a path to a state dict.",
    )


def package_file(name: str) -> Path:
    """A file shipped in ``selectivity_eval.plugins``."""
    return Path(str(resources.files("selectivity_eval.plugins.models").joinpath(name)))


def load_shipped_weights(module: torch.nn.Module, weights: str, builtin: str, seed: int, what: str) -> dict[str, object]:
    """Fill ``module`` with the shipped file ``builtin``, a file at path ``weights``, or (``none``)
    leave its initialisation, which the caller seeded with ``seed``; returns the weights' identity."""
    if weights == "none":
        return {"weights": weights, "init_seed": seed}
    path = package_file(builtin) if weights == "builtin" else Path(weights).expanduser()
    try:
        module.load_state_dict(load_state_dict(path))
    except RuntimeError as error:
        raise UserInputError(f"Weights file {str(path)!r} does not fit {what}: {error}") from None
    return {"weights": weights, "weights_sha256": file_sha256(path)}
