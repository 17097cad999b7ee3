"""EdgeNeXt checkpoints (timm's or the authors') → an edgeexplore EdgeNeXt model.

Key conversion (timm name → ours; the authors' names are first mapped to timm's layout):

* ``stem.0`` / ``stem.1`` → ``stem.conv`` / ``stem.norm``
* ``stages.{i}.downsample.0`` / ``.1`` → ``stages.{i}.downsample.norm`` / ``.conv``
* ``stages.{i}.blocks.{j}.*`` keep their names (``conv_dw``, ``norm``, ``mlp.fc1/fc2``,
  ``gamma``, ``convs``, ``norm_xca``, ``gamma_xca``, ``xca.*``), except
  ``pos_embd.token_projection`` → ``pos_embed.proj``
* ``head.norm`` → ``head_norm``, ``head.fc`` → ``head``

The authors' names: ``downsample_layers.0`` (stem), ``downsample_layers.{i}`` (downsamplers),
``stages.{i}.{j}`` (blocks), ``dwconv``, ``pwconv1/2``, top-level ``norm`` and ``head``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from ..config import ArchConfig, StageConfig, resolve_arch
from ..errors import ConfigError
from .backbone import EdgeBackbone, build
from .official_blocks import load_converted

_AUTHORS_TO_TIMM = [
    (r"^downsample_layers\.0\.", "stem."),
    (r"^downsample_layers\.(\d+)\.", r"stages.\1.downsample."),
    (r"^stages\.(\d+)\.(\d+)\.", r"stages.\1.blocks.\2."),
    (r"^norm\.", "head.norm."),
    (r"^head\.", "head.fc."),
]
_BLOCK_RENAMES = [
    (r"\.dwconv\.", ".conv_dw."),
    (r"\.pwconv1\.", ".mlp.fc1."),
    (r"\.pwconv2\.", ".mlp.fc2."),
    (r"\.pos_embd\.token_projection\.", ".pos_embed.proj."),
]
_TIMM_TO_OURS = [
    (r"^stem\.0\.", "stem.conv."),
    (r"^stem\.1\.", "stem.norm."),
    (r"^stages\.(\d+)\.downsample\.0\.", r"stages.\1.downsample.norm."),
    (r"^stages\.(\d+)\.downsample\.1\.", r"stages.\1.downsample.conv."),
    (r"^head\.norm\.", "head_norm."),
    (r"^head\.fc\.", "head."),
]


def _first(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def convert_edgenext_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a timm (or authors') EdgeNeXt state dict to edgeexplore's key names."""
    for wrapper in ("model_ema", "model", "state_dict"):
        inner = state_dict.get(wrapper)
        if isinstance(inner, Mapping):
            state_dict = inner
            break
    authors = any(k.startswith("downsample_layers.") for k in state_dict)
    out = {}
    for key, value in state_dict.items():
        if not isinstance(value, Tensor):
            continue
        key = key.removeprefix("module.")
        if authors:
            key = _first(key, _AUTHORS_TO_TIMM)
        for pattern, repl in _BLOCK_RENAMES:
            key = re.sub(pattern, repl, key)
        out[_first(key, _TIMM_TO_OURS)] = value
    return out


def edgenext_arch_from_state_dict(
    state_dict: Mapping[str, Tensor], resolution: tuple[int, int] = (256, 256)
) -> ArchConfig:
    """The ArchConfig of an EdgeNeXt checkpoint, read off its tensor shapes (ours, timm's or
    the authors' names): widths, depths, kernels, SDTA count, heads, scales, position encoding,
    MLP ratio, layer scale and class count."""
    sd = state_dict if "stem.conv.weight" in state_dict else convert_edgenext_state_dict(state_dict)
    if "stem.conv.weight" not in sd:
        raise ConfigError("not an EdgeNeXt state dict (no stem conv)")
    stages: list[dict] = []
    for i in range(4):
        prefix = f"stages.{i}.blocks."
        ids = sorted({int(k[len(prefix) :].split(".")[0]) for k in sd if k.startswith(prefix)})
        if not ids:
            raise ConfigError(f"the EdgeNeXt state dict has no blocks in stage {i + 1}")
        sdta = [j for j in ids if f"{prefix}{j}.xca.qkv.weight" in sd]
        conv = [j for j in ids if f"{prefix}{j}.conv_dw.weight" in sd]
        width = int(sd[f"{prefix}{ids[0]}.norm.weight"].shape[0])
        hidden = int(sd[f"{prefix}{ids[0]}.mlp.fc1.weight"].shape[0])
        opts: dict = {"global_blocks": len(sdta)}
        opts["layer_scale"] = 1e-6 if f"{prefix}{ids[0]}.gamma" in sd else 0.0
        if conv:
            opts["kernel"] = int(sd[f"{prefix}{conv[0]}.conv_dw.weight"].shape[-1])
        heads = 1
        if sdta:
            first = f"{prefix}{sdta[0]}."
            heads = int(sd[first + "xca.temperature"].shape[0])
            opts["scales"] = 1 + len(
                {k.split(".")[5] for k in sd if k.startswith(first + "convs.")}
            )
            opts["pos_emb"] = first + "pos_embed.proj.weight" in sd
        stages.append(
            {
                "depth": len(ids),
                "width": width,
                "heads": heads,
                "mlp_ratio": hidden / width,
                "block": "edgenext",
                "options": opts,
            }
        )
    # Heads do not matter without SDTA blocks; the authors give every stage the same number,
    # so reuse it there and the presets' configs (and hashes) come back exactly.
    shared = next((st["heads"] for st in stages if st["options"]["global_blocks"]), 1)
    for st in stages:
        if not st["options"]["global_blocks"] and st["width"] % shared == 0:
            st["heads"] = shared
    head = sd.get("head.weight")
    qkv_bias = any(k.endswith("xca.qkv.bias") for k in sd) or not any(
        k.endswith("xca.qkv.weight") for k in sd
    )
    return ArchConfig(
        stages=tuple(StageConfig(**st) for st in stages),
        resolution=resolution,
        macro="edgenext",
        num_classes=int(head.shape[0]) if head is not None else 0,
        in_chans=int(sd["stem.conv.weight"].shape[1]),
        qkv_bias=qkv_bias,
    )


def from_timm_edgenext(
    state_dict: Mapping[str, Tensor], arch: str | ArchConfig | None = None
) -> EdgeBackbone:
    """Our EdgeNeXt model (eval mode) with a timm ``edgenext_*`` (or authors') state dict loaded.

    ``arch`` is a preset name or an ArchConfig with the "edgenext" macro; None reads the
    architecture off the checkpoint (:func:`edgenext_arch_from_state_dict`). The class count is
    always taken from the checkpoint's classifier.
    """
    if arch is None:
        cfg = edgenext_arch_from_state_dict(state_dict)
        return load_converted(
            build(cfg), convert_edgenext_state_dict(state_dict), "EdgeNeXt checkpoint"
        ).eval()
    cfg = resolve_arch(arch)
    if cfg.macro != "edgenext":
        raise ConfigError(f"an EdgeNeXt checkpoint needs the 'edgenext' macro, not {cfg.macro!r}")
    sd = convert_edgenext_state_dict(state_dict)
    head = sd.get("head.weight")
    num_classes = int(head.shape[0]) if head is not None else 0
    if num_classes != cfg.num_classes:
        cfg = cfg.replace(num_classes=num_classes)
    model = build(cfg)
    return load_converted(model, sd, "EdgeNeXt checkpoint").eval()
