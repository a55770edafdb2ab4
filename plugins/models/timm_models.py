"""The ``timm`` model: any timm classification model by name, random (seeded) or with a local weights file.

Nothing here downloads: the model is always created with ``pretrained=False``, and weights come
only from a file the spec names (``.safetensors``, read by safetensors' own loader, or a
``.pth``/``.pt``/``.bin`` state dict read with ``torch.load(weights_only=True)``; neither runs
code from the file). Preprocessing is the model's own, from its pretrained config
(``timm.data.resolve_data_config`` and ``create_transform``). Needs the ``timm`` extra.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, ValidationInfo, field_validator

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.sources.base import LoadedModel, ModelSource
from selectivity_eval.core.sources.images import as_rgb
from selectivity_eval.core.sources.layout import CHANNELS_LAST, OutputLayout, tokens
from selectivity_eval.core.sources.weights import file_sha256, load_state_dict
from selectivity_eval.schemas.params import PluginParams

SAFETENSORS = (".safetensors",)
PICKLED = (".pth", ".pt", ".bin", ".ckpt")


def timm_module():
    try:
        import timm
    except ImportError:
        raise UserInputError(
            "The timm model plugin needs the timm package: pip install 'selectivity-eval[timm]'."
        ) from None
    return timm


@lru_cache(maxsize=1)
def architectures() -> frozenset[str]:
    return frozenset(timm_module().list_models())


class TimmParams(PluginParams):
    arch: str = Field(description="A timm model name: resnet50, vit_base_patch16_224, convnext_tiny, ... (timm.list_models()).")
    weights: str = Field(
        "none",
        description=(
            "'none' (random, seeded with the run's seed) or the path of a local weights file: .safetensors, or a "
            ".pth/.pt/.bin state dict (loaded with weights_only=True). Hub weights are never downloaded."
        ),
    )
    num_classes: int | None = Field(None, ge=1, description="Classifier outputs; None: the model's default (1000).")
    image_size: int | None = Field(
        None,
        ge=1,
        description="Side of the input images, when not the model's default; models with a fixed input size "
        "(ViTs) are built for it.",
    )

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        known = architectures()
        if arch in known:
            return arch
        close = difflib.get_close_matches(arch, sorted(known), n=5, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else " timm.list_models() lists them."
        raise ValueError(f"{arch!r} is not a timm model name.{hint}")

    @field_validator("weights")
    @classmethod
    def _local_weights(cls, weights: str, info: ValidationInfo) -> str:
        if weights == "none":
            return weights
        path = Path(weights).expanduser()
        if path.suffix.lower() in SAFETENSORS + PICKLED or path.exists():
            return weights
        arch = info.data.get("arch")
        hub_id = timm_module().models.get_pretrained_cfg_value(arch, "hf_hub_id") if arch else None
        where = f"the Hugging Face repo {hub_id}" if hub_id else "the model's Hugging Face repo"
        raise ValueError(
            f"{weights!r} is not a local weights file. The timm plugin never downloads weights: download the file "
            f"yourself (model.safetensors of {where}), put it anywhere, and give its path as `weights:` "
            "(.safetensors, or a .pth/.pt/.bin state dict)."
        )


class TimmInput:
    """One image (PIL, or an HxWxC uint8 array) -> the model's input tensor, by timm's own transform."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.transform = timm_module().data.create_transform(**config)
        self.crop_size = int(config["input_size"][-1])

    def __call__(self, image: Any) -> torch.Tensor:
        return self.transform(as_rgb(image))

    def __repr__(self) -> str:
        return f"TimmInput({self.config!r}: {self.transform!r})"


def layouts_of(module: torch.nn.Module) -> dict[str, OutputLayout]:
    """The layouts of a timm model's outputs: ViT-like models (``num_prefix_tokens``) give tokens with
    their prefix tokens after the patch embedding; NHWC models (Swin) keep maps channels-last; MLP-Mixers
    give tokens without prefix; other models (CNNs) channels-first maps."""
    if hasattr(module, "num_prefix_tokens"):
        prefix = int(module.num_prefix_tokens)
        layouts = {"": tokens(prefix, class_token=bool(getattr(module, "has_class_token", prefix > 0)))}
        patch_embed = getattr(module, "patch_embed", None)
        if patch_embed is not None:
            flat = getattr(patch_embed, "flatten", True)
            layouts["patch_embed"] = tokens(0, class_token=False) if flat else CHANNELS_LAST
        return layouts
    if str(getattr(module, "output_fmt", "")).upper().endswith("NHWC"):
        return {"": CHANNELS_LAST}
    if type(module).__name__ in ("MlpMixer",):
        return {"": tokens(0, class_token=False)}
    return {}


def aliases_of(module: torch.nn.Module, classifier: str | None) -> dict[str, str]:
    """``logits`` for the classifier, and ``stage0``, ``stage1``... for the modules timm's ``feature_info`` lists
    (numbered as timm's ``out_indices``: for ResNets stage0 is the stem, stage4 ``layer4``; for ViTs stageN is ``blocks.N``)."""
    modules = dict(module.named_modules())
    aliases = {}
    for index, info in enumerate(getattr(module, "feature_info", None) or []):
        name = info.get("module") if isinstance(info, dict) else None
        if name in modules:
            aliases[f"stage{index}"] = name
    if classifier in modules:
        aliases["logits"] = classifier
    return aliases


def class_names(num_classes: int) -> list[str] | None:
    """ImageNet's class names (the first of each synset's words) for a 1000-way classifier."""
    if num_classes != 1000:
        return None
    return [description.split(",")[0] for description in timm_module().data.ImageNetInfo().label_descriptions()]


def load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``: safetensors' loader for .safetensors, else ``torch.load(weights_only=True)``."""
    if path.suffix.lower() not in SAFETENSORS:
        return load_state_dict(path)
    if not path.is_file():
        raise UserInputError(f"Weights file {str(path)!r} (model.weights) does not exist.")
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as error:
        raise UserInputError(f"Weights file {str(path)!r} is not a readable .safetensors file: {error}") from None


class TimmSource(ModelSource):
    """Any timm classification model (resnet50, vit_base_patch16_224, convnext_tiny, ...): random or a local file."""

    name = "timm"
    Params = TimmParams

    def load(self, *, seed: int) -> LoadedModel:
        timm = timm_module()
        p = self.params
        kwargs: dict[str, Any] = {}
        if p.num_classes is not None:
            kwargs["num_classes"] = p.num_classes
        fixed_size = timm.models.get_pretrained_cfg_value(p.arch, "fixed_input_size")
        if p.image_size is not None and fixed_size:
            kwargs["img_size"] = p.image_size
        torch.manual_seed(seed)
        try:
            module = timm.create_model(p.arch, pretrained=False, **kwargs)
        except TypeError as error:
            raise UserInputError(f"timm could not build {p.arch!r} with {kwargs}: {error}") from None
        identity: dict[str, Any] = {"architecture": p.arch, "weights": p.weights, "timm": timm.__version__, **kwargs}
        if p.weights == "none":
            identity["init_seed"] = seed
        else:
            path = Path(p.weights).expanduser()
            state = load_weights_file(path)
            try:
                module.load_state_dict(state)
            except RuntimeError as error:
                raise UserInputError(f"Weights file {str(path)!r} does not fit timm's {p.arch}: {error}") from None
            identity.update(weights_file=str(path), weights_sha256=file_sha256(path))
        module.eval()
        overrides = {"input_size": (3, p.image_size, p.image_size)} if p.image_size else {}
        config = timm.data.resolve_data_config(overrides, model=module)
        transform = TimmInput(config)
        identity["preprocessing"] = repr(config)
        num_classes = int(getattr(module, "num_classes", 0) or 0)
        return LoadedModel(
            module=module,
            aliases=aliases_of(module, module.pretrained_cfg.get("classifier")),
            transform=transform,
            class_names=class_names(num_classes),
            identity=identity,
            example_input=torch.zeros(1, *config["input_size"]),
            layouts=layouts_of(module),
        )


@hookimpl
def register_models(register):
    register(TimmSource)
