"""Blocks and the configurable backbone.

Public API: :func:`build` (ArchConfig → :class:`EdgeBackbone`), :func:`from_official` (the
authors' EdgeViT state dict → our model), :func:`to_official` (its inverse), the registries
(:mod:`edgeexplore.models.registry`) and timm registration of the presets (importing this
package registers ``edgevit_xxs`` / ``edgevit_xs`` / ``edgevit_s`` with ``timm.create_model``).
"""

from __future__ import annotations

# Importing a block or macro module registers its builders; every built-in one is listed here.
from . import (  # noqa: F401
    edgenext,
    edgevit_blocks,
    gcc,
    macros,
    timm_models,
)
from .backbone import EdgeBackbone, EdgeStage, build
from .edgenext_convert import convert_edgenext_state_dict, from_timm_edgenext
from .official import convert_official_state_dict, from_official, official_arch, to_official
from .official_blocks import block_from_official
from .registry import (
    Macro,
    StageContext,
    block_builder,
    macro_builder,
    register_block,
    register_macro,
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
    "macro_builder",
    "official_arch",
    "register_block",
    "register_macro",
    "to_official",
]
