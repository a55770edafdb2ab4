"""The ``torchvision`` model: any torchvision classification architecture, random or with local weights.

Nothing here downloads. Pretrained weights named by their torchvision enum (``IMAGENET1K_V1``,
``DEFAULT``) are read only from the torch hub cache, ``torch.hub.get_dir()/checkpoints/<file>``,
where ``<file>`` is the last part of the enum's URL: the place torchvision itself would have
saved them. ``selectivity-eval weights install FILE`` puts a file there (see docs/models.md).
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from pydantic import Field, ValidationInfo, field_validator

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.sources.base import LoadedModel, ModelSource
from selectivity_eval.core.sources.images import as_rgb
from selectivity_eval.core.sources.layout import CHANNELS_LAST, OutputLayout, tokens
from selectivity_eval.core.sources.weights import file_sha256, load_state_dict
from selectivity_eval.schemas.params import PluginParams

# The layer names of Gale et al. (2019) for torchvision's AlexNet: the conv and linear modules, not
# the ReLUs after them (a spec's `relu: true` gives the post-ReLU values). fc8 gives the logits.
ALEXNET_ALIASES = {
    "conv1": "features.0",
    "conv2": "features.3",
    "conv3": "features.6",
    "conv4": "features.8",
    "conv5": "features.10",
    "fc6": "classifier.1",
    "fc7": "classifier.4",
    "fc8": "classifier.6",
}
ALIASES = {"alexnet": ALEXNET_ALIASES}


def layouts_of(arch: str) -> dict[str, OutputLayout]:
    """ViT's encoder gives (batch, 1 + patches, features) with the class token first; Swin keeps its
    maps (batch, height, width, channels) up to its final norm (its patch-embedding conv is channels-first)."""
    if arch.startswith("vit_"):
        return {"encoder": tokens(1, class_token=True)}
    if arch.startswith("swin_"):
        return {"features": CHANNELS_LAST, "norm": CHANNELS_LAST}
    return {}

# torch.hub's rule: a file name "<name>-<hex>.<ext>" promises a sha256 starting with <hex>.
HASH_PREFIX = re.compile(r"-([a-f0-9]*)\.")
WEIGHTS_NAME = re.compile(r"^[A-Z0-9_]+$|_Weights\.")
# DenseNet checkpoints keep pre-0.4 key names ('norm.1'), which torchvision's loader renames ('norm1').
DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


@lru_cache(maxsize=1)
def architectures() -> tuple[str, ...]:
    """The names of torchvision's classification models (the ``torchvision.models`` namespace)."""
    import torchvision.models

    return tuple(torchvision.models.list_models(module=torchvision.models))


def weights_enum(arch: str):
    """The torchvision weights enum class of ``arch`` (e.g. ``AlexNet_Weights``)."""
    import torchvision.models

    return torchvision.models.get_model_weights(arch)


def weights_names(arch: str) -> list[str]:
    """The weights names ``arch`` accepts, e.g. ['IMAGENET1K_V1', 'DEFAULT']."""
    return list(weights_enum(arch).__members__)


def resolve_weights(arch: str, name: str):
    """The weights enum member ``name`` names (``IMAGENET1K_V1``, ``DEFAULT``, ``AlexNet_Weights.IMAGENET1K_V1``),
    or None when it names none of ``arch``'s weights."""
    enum = weights_enum(arch)
    try:
        return enum.verify(name)
    except (KeyError, TypeError):
        return None


def checkpoint_name(weights) -> str:
    """The file name torch hub stores a weights enum's checkpoint under (the last part of its URL)."""
    return os.path.basename(urlparse(weights.url).path)


def hub_checkpoints_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints``: where torchvision keeps the weights it has downloaded."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def check_hash_prefix(path: Path, sha256: str) -> None:
    """Refuse a file whose name promises another sha256 (torch hub's ``-<hex>.`` naming rule)."""
    match = HASH_PREFIX.search(path.name)
    if match and not sha256.startswith(match.group(1)):
        raise UserInputError(
            f"Weights file {str(path)!r} is not the file its name promises: its sha256 is {sha256}, "
            f"which does not start with {match.group(1)!r}. Replace it with the published file."
        )


def weights_for_file(file_name: str) -> list[tuple[str, str]]:
    """Every (architecture, weights enum member) whose checkpoint file has this name."""
    found = []
    for arch in architectures():
        for member in weights_enum(arch):
            if checkpoint_name(member) == file_name:
                found.append((arch, str(member)))
    return found


def install_weights(source: Path, *, link: bool = False) -> tuple[Path, list[tuple[str, str]]]:
    """Copy (or symlink) a torchvision checkpoint file into the hub cache under its own name.

    The file name must be one that a torchvision weights enum uses, and the file's sha256 must
    match the prefix in that name. Returns the destination and the weights it provides.
    """
    source = source.expanduser()
    if not source.is_file():
        raise UserInputError(f"Weights file {str(source)!r} does not exist (or is not a file).")
    provides = weights_for_file(source.name)
    if not provides:
        raise UserInputError(
            f"{source.name!r} is not the file name of any torchvision weights, so the torchvision plugin "
            "would never look for it. Keep the name the file was published under (the last part of the "
            "weights URL, e.g. 'mobilenet_v2-b0353104.pth'), or give its path as `weights:` in the spec."
        )
    check_hash_prefix(source, file_sha256(source))
    destination = hub_checkpoints_dir() / source.name
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists() or destination.is_symlink():
        if destination.exists() and destination.resolve() == source.resolve():
            return destination, provides
        destination.unlink()
    if link:
        destination.symlink_to(source.resolve())
    else:
        shutil.copyfile(source, destination)
    return destination, provides


class TorchvisionParams(PluginParams):
    arch: str = Field(
        description="A torchvision classification architecture: alexnet, vgg16, resnet50, mobilenet_v2, ..."
    )
    weights: str = Field(
        "none",
        description=(
            "'none' (random, seeded with the run's seed), a torchvision weights name such as IMAGENET1K_V1 or "
            "DEFAULT (read from the torch hub cache only, never downloaded), or a path to a state dict file."
        ),
    )

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        known = architectures()
        if arch in known:
            return arch
        if arch.lower() in known:
            return arch.lower()
        close = difflib.get_close_matches(arch.lower(), known, n=5, cutoff=0.6)
        hint = f"Did you mean {', '.join(close)}?" if close else f"Known architectures: {', '.join(known)}."
        raise ValueError(f"{arch!r} is not a torchvision classification architecture. {hint}")

    @field_validator("weights")
    @classmethod
    def _known_weights(cls, weights: str, info: ValidationInfo) -> str:
        arch = info.data.get("arch")
        if arch is None or weights == "none" or resolve_weights(arch, weights) is not None:
            return weights
        if WEIGHTS_NAME.search(weights) and not Path(weights).expanduser().exists():
            raise ValueError(
                f"{weights!r} is not a weights name of {arch} (it has {', '.join(weights_names(arch))}), "
                "nor an existing file."
            )
        return weights


class ImageNetInput:
    """One image (PIL, or an HxWxC uint8 array) -> the network's normalised input tensor (3, H, W).

    Converts to RGB first (grey or RGBA images), then applies the weights' own transform
    (``weights.transforms()``: resize, centre crop, scale to [0, 1], normalise).
    """

    def __init__(self, weights) -> None:
        self.weights = str(weights)
        self.preset = weights.transforms()
        self.crop_size = int(self.preset.crop_size[0])

    def __call__(self, image: Any) -> torch.Tensor:
        return self.preset(as_rgb(image))

    def __repr__(self) -> str:
        return f"ImageNetInput({self.weights}.transforms() = {self.preset!r})"


def builder_config(arch: str, weights) -> dict[str, Any]:
    """The constructor arguments torchvision's builder sets when it loads ``weights`` itself."""
    config: dict[str, Any] = {"num_classes": len(weights.meta["categories"])}
    if arch in ("googlenet", "inception_v3"):
        config.update(transform_input=True, aux_logits=True, init_weights=False)
    elif arch.startswith("vit_"):
        config["image_size"] = weights.meta["min_size"][0]
    elif arch == "maxvit_t":
        config["input_size"] = weights.meta["min_size"]
    return config


def adapt_state_dict(arch: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Undo the key differences torchvision's own loaders undo (old DenseNet names; DataParallel's module.)."""
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    if arch.startswith("densenet"):
        renamed = {}
        for key, value in state.items():
            match = DENSENET_OLD_KEY.match(key)
            renamed[match.group(1) + match.group(2) if match else key] = value
        state = renamed
    return state


def drop_aux_heads(arch: str, module: torch.nn.Module) -> None:
    """After loading, torchvision drops GoogLeNet's auxiliary heads (Inception v3 keeps its own by default)."""
    if arch == "googlenet":
        module.aux_logits = False
        module.aux1 = None
        module.aux2 = None


class TorchvisionSource(ModelSource):
    """Any torchvision classification network (alexnet, vgg16, resnet50, ...): random or local weights."""

    name = "torchvision"
    Params = TorchvisionParams

    def load(self, *, seed: int) -> LoadedModel:
        import torchvision.models

        arch, weights = self.params.arch, self.params.weights
        named = resolve_weights(arch, weights) if weights != "none" else None
        preprocessing = named or weights_enum(arch).DEFAULT
        identity: dict[str, Any] = {"architecture": arch, "weights": weights}
        if weights == "none":
            torch.manual_seed(seed)
            module = torchvision.models.get_model(arch, weights=None)
            identity["init_seed"] = seed
        elif named is not None:
            path = hub_checkpoints_dir() / checkpoint_name(named)
            if not path.is_file():
                raise UserInputError(
                    f"The {named} weights of {arch} are not in the torch hub cache: put the file "
                    f"{path.name!r} at {str(path)!r} (directory {str(path.parent)!r}). Nothing is downloaded. "
                    f"If you have the file, run `selectivity-eval weights install FILE`; the hub directory is "
                    "torch.hub.get_dir() ($TORCH_HOME/hub, by default ~/.cache/torch/hub)."
                )
            sha256 = file_sha256(path)
            check_hash_prefix(path, sha256)
            module = torchvision.models.get_model(arch, weights=None, **builder_config(arch, named))
            self._load_into(module, path, arch)
            drop_aux_heads(arch, module)
            identity.update(weights_name=str(named), weights_file=str(path), weights_sha256=sha256)
        else:
            path = Path(weights).expanduser()
            module = torchvision.models.get_model(arch, weights=None)
            self._load_into(module, path, arch)
            identity.update(weights_file=str(path), weights_sha256=file_sha256(path))
        transform = ImageNetInput(preprocessing)
        identity["preprocessing"] = f"{preprocessing}.transforms()"
        module.eval()
        return LoadedModel(
            module=module,
            aliases=dict(ALIASES.get(arch, {})),
            transform=transform,
            class_names=list(preprocessing.meta["categories"]),
            identity=identity,
            example_input=torch.zeros(1, 3, transform.crop_size, transform.crop_size),
            layouts=layouts_of(arch),
        )

    @staticmethod
    def _load_into(module: torch.nn.Module, path: Path, arch: str) -> None:
        state = adapt_state_dict(arch, load_state_dict(path))
        try:
            module.load_state_dict(state)
        except RuntimeError as error:
            raise UserInputError(f"Weights file {str(path)!r} does not fit torchvision's {arch}: {error}") from None


@hookimpl
def register_models(register):
    register(TorchvisionSource)
