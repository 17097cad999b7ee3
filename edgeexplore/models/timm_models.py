"""timm registration: ``timm.create_model("edgevit_xxs", num_classes=10)`` after
``import edgeexplore``.

Every preset in :data:`edgeexplore.config.PRESETS` whose name timm does not already own is
registered (timm's own ``edgenext_*`` models stay timm's). Keyword arguments understood:
``num_classes``, ``in_chans``, ``drop_path_rate``, ``img_size`` (nominal resolution; any multiple
of 32 works at run time), ``features_only`` / ``out_indices`` (the four stage maps through
``forward_intermediates``). No pretrained weights are published for these names, so
``pretrained=True`` is an error that says so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, is_model, register_model

from ..config import PRESETS, get_preset, parse_resolution
from ..errors import ConfigError, EdgeExploreError
from .backbone import EdgeBackbone, build

_ACCEPTED = {"num_classes", "in_chans", "drop_path_rate", "img_size"}


def _default_cfg(name: str) -> dict[str, Any]:
    h, w = get_preset(name).resolution
    return {
        "url": "", "num_classes": 1000, "input_size": (3, h, w), "pool_size": (h // 32, w // 32),
        "crop_pct": 0.9, "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD, "first_conv": "stem.conv", "classifier": "head",
        "license": "none: architecture only, no pretrained weights",
    }


def _from_preset(name: str, **kwargs: Any) -> EdgeBackbone:
    unknown = sorted(set(kwargs) - _ACCEPTED)
    if unknown:
        accepted = ", ".join(sorted(_ACCEPTED))
        raise ConfigError(f"{name}: unsupported argument {unknown[0]!r} (accepted: {accepted})")
    arch = get_preset(name)
    changes: dict[str, Any] = {}
    for key in ("num_classes", "in_chans", "drop_path_rate"):
        if kwargs.get(key) is not None:
            changes[key] = kwargs[key]
    if kwargs.get("img_size") is not None:
        changes["resolution"] = parse_resolution(kwargs["img_size"])
    return build(arch.replace(**changes) if changes else arch)


def create_preset(name: str, pretrained: bool = False, **kwargs: Any) -> Any:
    """What ``timm.create_model(name, ...)`` calls for our presets."""
    if pretrained:
        raise EdgeExploreError(
            f"no pretrained weights exist for {name}; create it with pretrained=False, or load "
            "the authors' weights with edgeexplore.models.from_official"
        )
    return build_model_with_cfg(
        lambda **kw: _from_preset(name, **kw), name, pretrained=False,
        feature_cfg={"feature_cls": "getter", "out_indices": (0, 1, 2, 3)},
        **kwargs,
    )


def _entrypoint(name: str) -> Callable[..., Any]:
    def entry(pretrained: bool = False, **kwargs: Any) -> Any:
        return create_preset(name, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = f"edgeexplore preset {name}: {get_preset(name).describe()}"
    return entry


#: names registered by this module (presets whose names timm did not already have)
REGISTERED: list[str] = [n for n in PRESETS if not is_model(n)]
# register_model reads the pretrained cfgs from this module's ``default_cfgs``
default_cfgs = generate_default_cfgs({n: _default_cfg(n) for n in REGISTERED})

for _name in REGISTERED:
    setattr(sys.modules[__name__], _name, register_model(_entrypoint(_name)))
