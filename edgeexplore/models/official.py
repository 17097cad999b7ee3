"""Load weights trained with the authors' EdgeViT code (saic-fi/edgevit) into our backbone.

:func:`from_official` takes the authors' state dict and their constructor's keyword arguments
and returns our model with the weights loaded (strictly: every key must match). The key
conversion is a table of renames, applied per block, that never depends on a particular preset:

==========================================  =================================================
authors' key                                our key
==========================================  =================================================
``patch_embed1.proj`` / ``.norm``             ``stem.conv`` / ``stem.norm``
``patch_embed{i}.proj`` / ``.norm`` (i ≥ 2)   ``stages.{i-1}.downsample.conv`` / ``.norm``
``blocks{i}.{j}.LocalAgg.pos_embed``          ``stages.{i-1}.blocks.{j}.local_agg.cpe``
``….LocalAgg.norm1`` / ``norm2``              ``….local_agg.norm1`` / ``norm2`` (BatchNorm)
``….LocalAgg.conv1`` / ``attn`` / ``conv2``   ``….local_agg.agg.pw_in`` / ``.dw`` / ``.pw_out``
``….LocalAgg.mlp.fc1`` / ``fc2``              ``….local_agg.ffn.fc1`` / ``fc2``
``blocks{i}.{j}.SelfAttn.pos_embed``          ``stages.{i-1}.blocks.{j}.global_attn.cpe``
``….SelfAttn.norm1`` / ``norm2``              ``….global_attn.norm1`` / ``norm2``
``….SelfAttn.attn.qkv`` / ``attn.proj``       ``….global_attn.attn.qkv`` / ``attn.proj``
``….SelfAttn.attn.LocalProp``                 ``….global_attn.attn.prop``
``….SelfAttn.attn.norm``                      ``….global_attn.attn.prop_norm``
``….SelfAttn.mlp.fc1`` / ``fc2``              ``….global_attn.mlp.fc1`` / ``fc2``
``norm`` / ``head``                           ``norm`` / ``head``
==========================================  =================================================

Tensors keep their shapes and values; only names change, so :func:`to_official` is the exact
inverse. A ``module.`` prefix (DistributedDataParallel checkpoints) is stripped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..config import ArchConfig, StageConfig, parse_resolution
from ..errors import ConfigError, EdgeExploreError
from .backbone import EdgeBackbone, build

_LOCAL_AGG = {
    "pos_embed": "cpe", "norm1": "norm1", "norm2": "norm2", "conv1": "agg.pw_in",
    "attn": "agg.dw", "conv2": "agg.pw_out", "mlp.fc1": "ffn.fc1", "mlp.fc2": "ffn.fc2",
}
_SELF_ATTN = {
    "pos_embed": "cpe", "norm1": "norm1", "norm2": "norm2", "attn.qkv": "attn.qkv",
    "attn.proj": "attn.proj", "attn.LocalProp": "attn.prop", "attn.norm": "attn.prop_norm",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
}
_HALVES = {"LocalAgg": ("local_agg", _LOCAL_AGG), "SelfAttn": ("global_attn", _SELF_ATTN)}

_PATCH = re.compile(r"^patch_embed([1-4])\.(proj|norm)\.(.+)$")
_BLOCK = re.compile(r"^blocks([1-4])\.(\d+)\.(LocalAgg|SelfAttn)\.(.+)$")
_OURS_MACRO = re.compile(r"^(?:stem|stages\.([0-3])\.downsample)\.(conv|norm)\.(.+)$")
_OURS_BLOCK = re.compile(r"^stages\.([0-3])\.blocks\.(\d+)\.(local_agg|global_attn)\.(.+)$")

#: the authors' constructor arguments that only shape training (no effect on weights or on
#: eval outputs); accepted and ignored so their config dicts can be passed through unchanged
_TRAINING_ONLY = {"drop_rate", "attn_drop_rate", "pretrained", "pretrained_cfg"}


def _split_param(rest: str, table: Mapping[str, str]) -> tuple[str, str] | None:
    """'attn.LocalProp.weight' → ('attn.LocalProp', 'weight') when the module is in the table."""
    module, _, param = rest.rpartition(".")
    if module in table:
        return module, param
    return None


def _official_to_ours_key(key: str) -> str | None:
    if key.startswith(("norm.", "head.")):
        return key
    m = _PATCH.match(key)
    if m:
        stage, part, param = int(m[1]), m[2], m[3]
        ours = "conv" if part == "proj" else "norm"
        where = "stem" if stage == 1 else f"stages.{stage - 1}.downsample"
        return f"{where}.{ours}.{param}"
    m = _BLOCK.match(key)
    if m:
        ours_half, table = _HALVES[m[3]]
        split = _split_param(m[4], table)
        if split is None:
            return None
        return f"stages.{int(m[1]) - 1}.blocks.{m[2]}.{ours_half}.{table[split[0]]}.{split[1]}"
    return None


def _ours_to_official_key(key: str) -> str | None:
    if key.startswith(("norm.", "head.")):
        return key
    m = _OURS_MACRO.match(key)
    if m:
        stage = int(m[1]) + 1 if m[1] is not None else 1
        part = "proj" if m[2] == "conv" else "norm"
        return f"patch_embed{stage}.{part}.{m[3]}"
    m = _OURS_BLOCK.match(key)
    if m:
        half = "LocalAgg" if m[3] == "local_agg" else "SelfAttn"
        table = {v: k for k, v in _HALVES[half][1].items()}
        split = _split_param(m[4], table)
        if split is None:
            return None
        return f"blocks{int(m[1]) + 1}.{m[2]}.{half}.{table[split[0]]}.{split[1]}"
    return None


def unwrap_checkpoint(obj: Any) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: the object itself, or under 'model'/'state_dict'/
    'model_ema'; a DistributedDataParallel 'module.' prefix is removed."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_ema"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EdgeExploreError(
            "the checkpoint holds no state dict (expected tensors, possibly under 'model' or "
            "'state_dict')"
        )
    return {(k.removeprefix("module.")): v for k, v in obj.items()}


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' key names → ours (see the module docstring); unknown keys are an error."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in unwrap_checkpoint(state_dict).items():
        new = _official_to_ours_key(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise EdgeExploreError(
            f"{len(unknown)} key(s) are not EdgeViT weights: {_abbrev(unknown)}"
        )
    return out


def to_official(
    model_or_state_dict: EdgeBackbone | Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Our state dict → the authors' key names (the exact inverse of the conversion). Only
    models built from official blocks (lgl with conv LocalAgg, pick sampler, deconv) map."""
    sd = (
        model_or_state_dict.state_dict()
        if isinstance(model_or_state_dict, torch.nn.Module)
        else model_or_state_dict
    )
    out, unknown = {}, []
    for key, value in sd.items():
        new = _ours_to_official_key(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise EdgeExploreError(
            f"{len(unknown)} key(s) have no counterpart in the authors' EdgeViT: {_abbrev(unknown)}"
        )
    return out


def _per_stage(name: str, value: Any, cast: type) -> list:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 4:
            raise ConfigError(f"{name} must have 4 entries (one per stage), not {len(value)}")
        return [cast(v) for v in value]
    return [cast(value)] * 4


def _infer_from_weights(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """What the weights alone say about the constructor arguments (all but head_dim)."""
    found: dict[str, Any] = {}
    try:
        found["embed_dim"] = [int(sd[f"patch_embed{i}.proj.weight"].shape[0]) for i in range(1, 5)]
        found["in_chans"] = int(sd["patch_embed1.proj.weight"].shape[1])
    except KeyError:
        pass
    depth = [0, 0, 0, 0]
    for key in sd:
        m = _BLOCK.match(key)
        if m:
            depth[int(m[1]) - 1] = max(depth[int(m[1]) - 1], int(m[2]) + 1)
    if all(depth):
        found["depth"] = depth
        srs, ratios = [], []
        for i in range(1, 5):
            prop = sd.get(f"blocks{i}.0.SelfAttn.attn.LocalProp.weight")
            srs.append(int(prop.shape[-1]) if prop is not None else 1)
            fc1 = sd.get(f"blocks{i}.0.SelfAttn.mlp.fc1.weight")
            if fc1 is not None:
                hidden, dim = int(fc1.shape[0]), int(fc1.shape[1])
                ratio = hidden / dim
                # the authors round the hidden width down: make sure int(dim * ratio) == hidden
                ratios.append(ratio if int(dim * ratio) == hidden else (hidden + 0.5) / dim)
        found["sr_ratios"] = srs
        if len(ratios) == 4:
            found["mlp_ratio"] = ratios
        found["qkv_bias"] = "blocks1.0.SelfAttn.attn.qkv.bias" in sd
    # the authors' model has no head keys when built with num_classes=0 (an Identity head)
    found["num_classes"] = int(sd["head.weight"].shape[0]) if "head.weight" in sd else 0
    return found


def official_arch(
    *,
    depth: Sequence[int],
    embed_dim: Sequence[int],
    head_dim: int,
    mlp_ratio: float | Sequence[float] = 4.0,
    qkv_bias: bool = True,
    sr_ratios: Sequence[int] = (4, 2, 2, 1),
    num_classes: int = 1000,
    img_size: int | Sequence[int] = 224,
    in_chans: int = 3,
    drop_path_rate: float = 0.0,
    qk_scale: float | None = None,
    representation_size: int | None = None,
    norm_layer: Any = None,
    **training_only: Any,
) -> ArchConfig:
    """The ArchConfig of the authors' ``EdgeVit(**kwargs)``.

    ``heads = embed_dim[i] // head_dim`` per stage, as the authors compute it; ``mlp_ratio``
    may be one number or one per stage; ``img_size`` becomes the nominal resolution (our model
    accepts any multiple of 32 anyway); ``drop_path_rate`` is kept for training.
    ``drop_rate`` and ``attn_drop_rate`` are accepted and ignored: they only act in training and
    the authors' presets leave them at 0. A custom ``qk_scale``, a ``representation_size``
    (pre-logits layer) or a ``norm_layer`` other than the default cannot be represented.
    """
    unknown = sorted(set(training_only) - _TRAINING_ONLY)
    if unknown:
        raise ConfigError(f"unknown EdgeViT constructor argument {unknown[0]!r}")
    if qk_scale is not None:
        raise ConfigError("a custom qk_scale is not supported (the scale is head_dim ** -0.5)")
    if representation_size:
        raise ConfigError("representation_size (a pre-logits layer) is not supported")
    if norm_layer is not None:
        raise ConfigError("only the default norm_layer (LayerNorm, eps 1e-6) is supported")
    depths = _per_stage("depth", depth, int)
    widths = _per_stage("embed_dim", embed_dim, int)
    ratios = _per_stage("mlp_ratio", mlp_ratio, float)
    srs = _per_stage("sr_ratios", sr_ratios, int)
    if not isinstance(head_dim, int) or head_dim < 1:
        raise ConfigError(f"head_dim must be a positive integer, not {head_dim!r}")
    stages = []
    for i in range(4):
        heads = widths[i] // head_dim
        if heads < 1:
            raise ConfigError(
                f"stage {i + 1}: embed_dim {widths[i]} is smaller than head_dim {head_dim}"
            )
        try:
            stages.append(StageConfig(
                depth=depths[i], width=widths[i], heads=heads, mlp_ratio=ratios[i],
                sample_rate=srs[i], block="lgl",
            ))
        except ConfigError as e:
            raise ConfigError(f"stage {i + 1}: {e}") from None
    size = img_size if isinstance(img_size, int) else tuple(img_size)
    return ArchConfig(
        stages=tuple(stages), resolution=parse_resolution(size), num_classes=int(num_classes),
        drop_path_rate=float(drop_path_rate), qkv_bias=bool(qkv_bias), in_chans=int(in_chans),
    )


def from_official(state_dict: Mapping[str, Any], **kwargs: Any) -> EdgeBackbone:
    """Our model with the authors' weights loaded.

    ``kwargs`` are the authors' ``EdgeVit`` constructor arguments (``depth``, ``embed_dim``,
    ``head_dim``, ``mlp_ratio``, ``qkv_bias``, ``sr_ratios``, ``num_classes``, ``img_size``,
    ``drop_path_rate``, ...; see :func:`official_arch`). ``head_dim`` is required: the weights
    do not record the number of heads. Arguments left out are read from the weights (depths,
    widths, sample rates, MLP ratios, qkv bias, classes), never guessed. Loading is strict: any
    missing, unexpected or mis-shaped tensor is an error that names them. The model is returned
    in eval mode.
    """
    sd = unwrap_checkpoint(state_dict)
    if "head_dim" not in kwargs:
        raise ConfigError("from_official needs head_dim (the weights do not record the heads)")
    inferred = _infer_from_weights(sd)
    missing = [k for k in ("depth", "embed_dim") if k not in inferred and k not in kwargs]
    if missing:
        raise EdgeExploreError(
            f"these weights do not look like the authors' EdgeViT: their keys do not give the "
            f"{missing[0]} (the authors' keys are patch_embed1.proj.weight, blocks1.0.*, ...); "
            f"if they are, give {' and '.join(missing)} (--depth, --embed-dim)"
        )
    arch = official_arch(**{**inferred, **kwargs})
    model = build(arch)
    load_strict(model, convert_official_state_dict(sd))
    return model.eval()


def load_strict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """``load_state_dict(strict=True)`` with an error that lists what does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mis_shaped = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {_abbrev(missing)}")
    if unexpected:
        problems.append(f"unexpected {_abbrev(unexpected)}")
    if mis_shaped:
        problems.append(f"wrong shape {_abbrev(mis_shaped)}")
    if problems:
        raise EdgeExploreError(
            "the weights do not fit the architecture: " + "; ".join(problems)
        )
    model.load_state_dict(state_dict, strict=True)


def _abbrev(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
