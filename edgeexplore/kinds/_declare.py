"""The declaration of a block kind or macro layout, and the registries that hold them.

A :class:`BlockKind` is everything the rest of edgeexplore knows about a kind of stage: its
options (defaults, allowed values, when each one changes the network), whether it samples a
sample rate, whether it has attention heads, a whole-stage check, export notes, a description,
and the builder that turns a validated stage into modules. Config validation, search-space
sampling, ``edgeexplore spaces`` and the table in docs/architectures.md all read it; nothing else
lists kinds.

This module imports no torch (config validation runs on every sample); builders receive a
:class:`edgeexplore.models.registry.StageContext` and import their modules when called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError

# Declarations sit below config (which validates with them) and models (whose builders they
# name), so the builders' argument types are named here, not imported: a block builder takes a
# models.registry.StageContext, a macro builder an ArchConfig and returns a registry.Macro.
BlockBuilder = Callable[[Any], list[Any]]
MacroBuilder = Callable[[Any], Any]


@dataclass(frozen=True)
class When:
    """The condition under which an option changes the network, read off an earlier option:
    its value is one of ``values``, or at least ``minimum``."""

    option: str
    values: tuple = ()
    minimum: float | None = None

    def holds(self, options: Mapping[str, Any]) -> bool:
        value = options[self.option]
        if self.minimum is not None:
            return value >= self.minimum
        return value in self.values

    def describe(self) -> str:
        if self.minimum is not None:
            return f"{self.option} ≥ {self.minimum:g}"
        return f"{self.option} " + " or ".join(f"`{v}`" for v in self.values)


@dataclass(frozen=True)
class Option:
    """One option of a block kind: its default, what values are allowed, and when it matters.

    An option that does not matter (``sampled_only`` at sample rate 1, or ``when`` false) is
    reset to its default on validation, so two configs that build the same network hash the same.
    """

    default: Any
    choices: tuple | None = None
    minimum: float | None = None
    help: str = ""
    #: only changes the network when the stage's sample rate is > 1
    sampled_only: bool = False
    when: When | None = None

    def check(self, block: str, name: str, value: Any) -> Any:
        """``value`` as stored (ints become floats for float options), or ConfigError."""
        kind = type(self.default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"block {block!r}: option {name!r} must be true or false, "
                                  f"not {value!r}")
        elif not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(
                f"block {block!r}: option {name!r} must be {kind.__name__}, not {value!r}"
            )
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise ConfigError(f"block {block!r}: option {name!r} is {value!r}; allowed: {allowed}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"block {block!r}: option {name!r} must be >= {self.minimum}, "
                              f"not {value!r}")
        return value

    def matters(self, options: Mapping[str, Any], sample_rate: int) -> bool:
        if self.sampled_only and sample_rate == 1:
            return False
        return self.when is None or self.when.holds(options)


@dataclass(frozen=True)
class BlockKind:
    """A block kind selectable per stage. Declare one with :func:`block_kind`."""

    name: str
    #: one sentence for tables and ablation reports
    help: str
    builder: BlockBuilder
    #: declared order is the order options are asked in a search (a ``when`` reads earlier ones)
    options: Mapping[str, Option] = field(default_factory=dict)
    #: its attention subsamples by the stage's sample rate (otherwise the rate is not searched)
    samples_rate: bool = False
    #: False for attention-free kinds: heads is stored as 1 and never searched
    uses_heads: bool = True
    #: ``fn(stage, options)`` raising ConfigError for what needs the whole stage (depth, width)
    check: Callable[[Any, dict[str, Any]], None] | None = None  # (StageConfig, options)
    #: what to know when exporting it (ONNX, other input sizes)
    export: str = ""

    def __post_init__(self) -> None:
        # A condition must read an option asked before it, or sampling could not decide it.
        seen: set[str] = set()
        for key, opt in self.options.items():
            if opt.when is not None and opt.when.option not in seen:
                raise ValueError(f"block kind {self.name!r}: option {key!r} depends on "
                                 f"{opt.when.option!r}, which must be declared before it")
            seen.add(key)
            if opt.sampled_only and not self.samples_rate:
                raise ValueError(f"block kind {self.name!r}: option {key!r} is sampled_only, "
                                 "but the kind samples no rate (it would never matter)")

    def defaults(self) -> dict[str, Any]:
        return {k: o.default for k, o in self.options.items()}

    def normalise(self, options: Mapping[str, Any], sample_rate: int) -> dict[str, Any]:
        """Every option checked, defaults filled in, and options that change nothing reset."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            raise ConfigError(
                f"block {self.name!r} has no option {unknown[0]!r} (valid options: {valid})"
            )
        out = self.defaults()
        for k, v in options.items():
            out[k] = self.options[k].check(self.name, k, v)
        for k, opt in self.options.items():  # declared order: a reset is seen by later conditions
            if not opt.matters(out, sample_rate):
                out[k] = opt.default
        return out

    def matters(self, key: str, options: Mapping[str, Any], sample_rate: int) -> bool:
        """Whether option ``key`` changes the network, given the (earlier) ``options``."""
        return self.options[key].matters({**self.defaults(), **options}, sample_rate)


@dataclass(frozen=True)
class MacroLayout:
    """The stem, downsamplers and head norms around the stages. Declare with :func:`macro_layout`."""

    name: str
    help: str
    builder: MacroBuilder


_BLOCK_KINDS: dict[str, BlockKind] = {}
_MACROS: dict[str, MacroLayout] = {}

#: live read-only views for lookups (``BLOCKS["lgl"]``); declaring goes through the decorators
BLOCKS: Mapping[str, BlockKind] = MappingProxyType(_BLOCK_KINDS)
MACROS: Mapping[str, MacroLayout] = MappingProxyType(_MACROS)


def block_kind(name: str, *, help: str, options: Mapping[str, Option] | None = None,
               **declaration: Any) -> Callable[[BlockBuilder], BlockBuilder]:
    """Decorator: declare block kind ``name`` with ``fn(ctx) -> list[nn.Module]`` as builder.

    ``declaration`` takes the other :class:`BlockKind` fields (``samples_rate``, ``uses_heads``,
    ``check``, ``export``). The builder contract is in :mod:`edgeexplore.models.registry`.
    """

    def deco(fn: BlockBuilder) -> BlockBuilder:
        kind = BlockKind(name, help, fn, dict(options or {}), **declaration)
        if name in _BLOCK_KINDS:
            raise ValueError(f"block kind {name!r} is already declared")
        _BLOCK_KINDS[name] = kind
        return fn

    return deco


def macro_layout(name: str, *, help: str) -> Callable[[MacroBuilder], MacroBuilder]:
    """Decorator: declare macro layout ``name`` with ``fn(arch) -> Macro`` as builder."""

    def deco(fn: MacroBuilder) -> MacroBuilder:
        if name in _MACROS:
            raise ValueError(f"macro layout {name!r} is already declared")
        _MACROS[name] = MacroLayout(name, help, fn)
        return fn

    return deco


def forget_block_kind(name: str) -> None:
    """Remove a declared block kind (tests that declare a toy kind clean up with this)."""
    _BLOCK_KINDS.pop(name, None)


def get_block_kind(name: str) -> BlockKind:
    try:
        return _BLOCK_KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown block {name!r} (valid blocks: "
                          f"{', '.join(sorted(_BLOCK_KINDS))})") from None


def get_macro(name: str) -> MacroLayout:
    try:
        return _MACROS[name]
    except KeyError:
        raise ConfigError(f"unknown macro layout {name!r} (valid: {', '.join(_MACROS)})") from None
