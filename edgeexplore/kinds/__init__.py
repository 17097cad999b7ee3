"""Block kinds and macro layouts: each declared once, next to its builder.

Every public module of this package is a block family: it declares its kinds with
:func:`block_kind` (and layouts with :func:`macro_layout`) on their builder functions, and is
imported here, so declaring a built-in kind means adding one module (plus its tests) and nothing
else. Code outside the package declares a kind the same way, from any module it imports.

Why here and not in ``edgeexplore/models/``: :mod:`edgeexplore.config` validates every sampled
architecture against these declarations and must stay torch-free (``import edgeexplore.models``
loads torch and timm, seconds). So the declarations and builders live in torch-free modules,
and a builder imports its ``nn.Module`` classes from ``edgeexplore.models`` when it is called.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._declare import (
    BLOCKS,
    MACROS,
    BlockKind,
    MacroLayout,
    Option,
    When,
    block_kind,
    forget_block_kind,
    get_block_kind,
    get_macro,
    macro_layout,
)

__all__ = [
    "BLOCKS",
    "MACROS",
    "BlockKind",
    "MacroLayout",
    "Option",
    "When",
    "block_kind",
    "forget_block_kind",
    "get_block_kind",
    "get_macro",
    "macro_layout",
]

# EdgeViT's family first: it declares the default kind, which listings and ablations put first;
# the others follow in file-name order.
_FIRST = "edgevit"
for _name in [_FIRST, *sorted(m.name for m in pkgutil.iter_modules(__path__))]:
    if not _name.startswith("_"):
        importlib.import_module(f"{__name__}.{_name}")
