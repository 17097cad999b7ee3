"""timm registration: ``timm.create_model("edgevit_xxs", num_classes=10)`` after
``import edgeexplore``.

Every preset in :data:`edgeexplore.config.PRESETS` whose name timm does not already own is
registered (timm's own ``edgenext_*`` models stay timm's). Keyword arguments understood:
``num_classes``, ``in_chans``, ``drop_path_rate``, ``img_size`` (nominal resolution; any multiple
of 32 works at run time), ``features_only`` / ``out_indices`` (the four stage maps through
``forward_intermediates``). No pretrained weights are published for these names, so
``pretrained=True`` is an error that says so.

A model's ``pretrained_cfg`` describes the model actually built: ``input_size`` and ``pool_size``
follow ``img_size`` and ``in_chans``, ``first_conv`` and ``classifier`` name real parameters.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, is_model, register_model

from ..config import PRESETS, ArchConfig, get_preset, parse_resolution
from ..errors import ConfigError, EdgeExploreError
from .backbone import build, pretrained_cfg_for

_ACCEPTED = {"num_classes", "in_chans", "drop_path_rate", "img_size"}


def _default_cfg(name: str) -> dict[str, Any]:
    # the registry's copy describes the preset at its ImageNet class count
    return pretrained_cfg_for(get_preset(name).replace(num_classes=1000))


def _preset_arch(name: str, **kwargs: Any) -> ArchConfig:
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
    return arch.replace(**changes) if changes else arch


def create_preset(name: str, pretrained: bool = False, **kwargs: Any) -> Any:
    """What ``timm.create_model(name, ...)`` calls for our presets."""
    if pretrained:
        raise EdgeExploreError(
            f"no pretrained weights exist for {name}; create it with pretrained=False, or load "
            "the authors' weights with edgeexplore.models.from_official"
        )
    model = build_model_with_cfg(
        lambda **kw: build(_preset_arch(name, **kw)), name, pretrained=False,
        feature_cfg={"feature_cls": "getter", "out_indices": (0, 1, 2, 3)},
        **kwargs,
    )
    # timm copies the registry's cfg (224, 3 channels); make size and channels those built
    built = (model.model if hasattr(model, "model") else model).arch
    sizes = {k: v for k, v in pretrained_cfg_for(built).items()
             if k in ("input_size", "pool_size", "num_classes")}
    model.pretrained_cfg = model.default_cfg = {**model.pretrained_cfg, **sizes}
    return model


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
