"""Blocks and the configurable backbone.

Public API: :func:`build` (ArchConfig → :class:`EdgeBackbone`), :func:`from_official` (the
authors' EdgeViT state dict → our model), :func:`to_official` (its inverse), the builder
contract (:mod:`edgeexplore.models.registry`; block kinds are declared in
:mod:`edgeexplore.kinds`) and timm registration of the presets (importing this package
registers ``edgevit_xxs`` / ``edgevit_xs`` / ``edgevit_s`` with ``timm.create_model``).
"""

from __future__ import annotations

from . import timm_models  # noqa: F401  (registers the presets with timm.create_model)
from .backbone import EdgeBackbone, EdgeStage, build
from .edgenext_convert import convert_edgenext_state_dict, from_timm_edgenext
from .fuse import fuse_for_inference
from .official import convert_official_state_dict, from_official, official_arch, to_official
from .official_blocks import block_from_official
from .registry import (
    Macro,
    StageContext,
    block_builder,
    macro_builder,
)

__all__ = [
    "EdgeBackbone",
    "EdgeStage",
    "Macro",
    "StageContext",
    "block_builder",
    "block_from_official",
    "build",
    "convert_edgenext_state_dict",
    "convert_official_state_dict",
    "from_official",
    "from_timm_edgenext",
    "fuse_for_inference",
    "macro_builder",
    "official_arch",
    "to_official",
]
