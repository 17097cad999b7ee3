"""Build one of our sibling blocks from an authors' block state dict.

``block_from_official(kind, state_dict, **authors_kwargs)`` takes the constructor arguments of
the authors' class and one of its state dicts and returns the equivalent edgeexplore block with
the weights loaded, so that both give the same outputs (eval mode). Arguments left out are read
off the state dict; arguments given are checked against it.

Key conversion (authors' name → ours):

``sdta`` (EdgeNeXt ``SDTAEncoder``)
    ``pos_embd.token_projection.*`` → ``pos_embed.proj.*``, ``pwconv1.*`` → ``mlp.fc1.*``,
    ``pwconv2.*`` → ``mlp.fc2.*``; ``convs.*``, ``norm_xca``, ``gamma_xca``, ``xca.*``,
    ``norm``, ``gamma`` keep their names.

``gcc`` (EdgeFormer ``gcc_ca`` block; half 1 runs H then W, half 2 W then H)
    ``pre_Norm_1/2`` → ``norm1/2``; ``meta_kernel_1_H``, ``meta_1_H_bias``, ``meta_pe_1_H`` →
    ``gcc1_h.{weight,bias,pe}``; ``*_2_W`` → ``gcc1_w.*``; ``*_1_W`` → ``gcc2_w.*``; ``*_2_H``
    → ``gcc2_h.*``; ``ffn.0/1/4`` → ``ffn.norm/fc1/fc2``; ``ca.fc.0/1/3/4`` →
    ``se.fc1/bn1/fc2/bn2``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .edgenext import SDTABlock
from .gcc import GCCBlock

_SDTA_RENAMES = [
    (r"^pos_embd\.token_projection\.", "pos_embed.proj."),
    (r"^pwconv1\.", "mlp.fc1."),
    (r"^pwconv2\.", "mlp.fc2."),
]

_GCC_RENAMES = [
    (r"^pre_Norm_1\.", "norm1."),
    (r"^pre_Norm_2\.", "norm2."),
    (r"^meta_kernel_1_H$", "gcc1_h.weight"),
    (r"^meta_1_H_bias$", "gcc1_h.bias"),
    (r"^meta_pe_1_H$", "gcc1_h.pe"),
    (r"^meta_kernel_2_W$", "gcc1_w.weight"),
    (r"^meta_2_W_bias$", "gcc1_w.bias"),
    (r"^meta_pe_2_W$", "gcc1_w.pe"),
    (r"^meta_kernel_1_W$", "gcc2_w.weight"),
    (r"^meta_1_W_bias$", "gcc2_w.bias"),
    (r"^meta_pe_1_W$", "gcc2_w.pe"),
    (r"^meta_kernel_2_H$", "gcc2_h.weight"),
    (r"^meta_2_H_bias$", "gcc2_h.bias"),
    (r"^meta_pe_2_H$", "gcc2_h.pe"),
    (r"^ffn\.0\.", "ffn.norm."),
    (r"^ffn\.1\.", "ffn.fc1."),
    (r"^ffn\.4\.", "ffn.fc2."),
    (r"^ca\.fc\.0\.", "se.fc1."),
    (r"^ca\.fc\.1\.", "se.bn1."),
    (r"^ca\.fc\.3\.", "se.fc2."),
    (r"^ca\.fc\.4\.", "se.bn2."),
]

# Names the fixtures' metadata uses for the authors' arguments.
_ALIASES = {
    "sdta": {
        "heads": "num_heads",
        "pos_emb": "use_pos_emb",
        "mlp_ratio": "expan_ratio",
        "layer_scale": "layer_scale_init_value",
    },
    "gcc": {"meta_kernel": "meta_kernel_size", "pos_emb": "use_pe"},
}

#: Arguments that only change training (dropout) and are accepted without effect in eval mode.
_TRAIN_ONLY = {"attn_drop", "drop"}


def _strip(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop a DataParallel ``module.`` prefix, if any."""
    out = {}
    for k, v in state_dict.items():
        out[k.removeprefix("module.")] = v
    return out


def convert_keys(
    state_dict: Mapping[str, Tensor], renames: list[tuple[str, str]]
) -> dict[str, Tensor]:
    """Apply the first matching (pattern, replacement) rename to every key."""
    out = {}
    for key, value in _strip(state_dict).items():
        for pattern, repl in renames:
            new, n = re.subn(pattern, repl, key)
            if n:
                key = new
                break
        out[key] = value
    return out


def load_converted(model: nn.Module, state: Mapping[str, Tensor], what: str) -> nn.Module:
    """Load ``state`` into ``model`` strictly, reshaping same-sized tensors (1×1 conv ↔ linear)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}")
        raise ConfigError(f"{what}: the state dict does not fit the arguments ({'; '.join(parts)})")
    fixed = {}
    for k, v in state.items():
        target = own[k]
        if v.shape != target.shape:
            if v.numel() != target.numel():
                raise ConfigError(
                    f"{what}: {k} has shape {tuple(v.shape)}, expected {tuple(target.shape)}"
                )
            v = v.reshape(target.shape)
        fixed[k] = v
    model.load_state_dict(fixed, strict=True)
    return model


def _check(what: str, name: str, given: Any, found: Any) -> Any:
    if given is not None and found is not None and given != found:
        raise ConfigError(f"{what}: {name}={given!r} but the state dict says {found!r}")
    return given if given is not None else found


def _sdta(sd: dict[str, Tensor], kw: dict[str, Any]) -> nn.Module:
    what = "sdta block"
    if "norm.weight" not in sd or "xca.qkv.weight" not in sd:
        raise ConfigError(
            f"{what}: not an EdgeNeXt SDTAEncoder state dict (no norm / xca.qkv keys)"
        )
    dim = _check(what, "dim", kw.pop("dim", None), int(sd["norm.weight"].shape[0]))
    n_convs = len({k.split(".")[1] for k in sd if k.startswith("convs.")})
    scales = _check(what, "scales", kw.pop("scales", None), n_convs + 1 if n_convs else None)
    heads = _check(
        what,
        "num_heads",
        kw.pop("num_heads", None),
        int(sd["xca.temperature"].shape[0]) if "xca.temperature" in sd else None,
    )
    pos = kw.pop("use_pos_emb", None)
    found_pos = any(k.startswith("pos_embd.") for k in sd)
    pos = _check(what, "use_pos_emb", None if pos is None else bool(pos), found_pos)
    ratio = kw.pop("expan_ratio", None)
    hidden = int(sd["pwconv1.weight"].shape[0]) if "pwconv1.weight" in sd else None
    if ratio is None:
        ratio = hidden / dim if hidden else 4.0
    elif hidden is not None and int(ratio * dim) != hidden:
        raise ConfigError(
            f"{what}: expan_ratio={ratio} gives {int(ratio * dim)} hidden, state dict has {hidden}"
        )
    ls = kw.pop("layer_scale_init_value", None)
    has_gamma = "gamma" in sd
    if ls is None:
        ls = 1e-6 if has_gamma else 0.0
    elif (ls > 0) != has_gamma:
        raise ConfigError(
            f"{what}: layer_scale_init_value={ls} does not match the state dict's layer scales"
        )
    qkv_bias = kw.pop("qkv_bias", None)
    qkv_bias = _check(what, "qkv_bias", qkv_bias, "xca.qkv.bias" in sd)
    drop_path = float(kw.pop("drop_path", 0.0))
    _reject_unknown(what, kw)
    if scales is None or heads is None:
        raise ConfigError(f"{what}: cannot tell scales / num_heads from the state dict; pass them")
    block = SDTABlock(
        dim,
        scales=int(scales),
        num_heads=int(heads),
        mlp_ratio=float(ratio),
        use_pos_emb=pos,
        layer_scale=float(ls),
        qkv_bias=qkv_bias,
        drop_path=drop_path,
    )
    if block.mlp.fc1.out_features != hidden and hidden is not None:
        raise ConfigError(
            f"{what}: cannot reproduce {hidden} hidden units from expan_ratio {ratio}"
        )
    return load_converted(block, convert_keys(sd, _SDTA_RENAMES), what)


def _gcc(sd: dict[str, Tensor], kw: dict[str, Any]) -> nn.Module:
    what = "gcc block"
    if "meta_kernel_1_H" not in sd or "pre_Norm_1.weight" not in sd:
        raise ConfigError(
            f"{what}: not an EdgeFormer gcc_ca state dict (no meta_kernel_1_H / pre_Norm_1)"
        )
    half = int(sd["meta_kernel_1_H"].shape[0])
    dim = _check(what, "dim (total channels)", kw.pop("dim", None), 2 * half)
    meta = _check(
        what,
        "meta_kernel_size",
        kw.pop("meta_kernel_size", None),
        int(sd["meta_kernel_1_H"].shape[2]),
    )
    use_pe = kw.pop("use_pe", None)
    use_pe = _check(what, "use_pe", None if use_pe is None else bool(use_pe), "meta_pe_1_H" in sd)
    bias = kw.pop("bias", None)
    bias = _check(what, "bias", None if bias is None else bool(bias), "meta_1_H_bias" in sd)
    ffn_dim = kw.pop("ffn_dim", None)
    ratio = kw.pop("mlp_ratio", None)  # later ParC-Net blocks give the FFN width as a ratio
    if ffn_dim is None and ratio is not None:
        ffn_dim = int(ratio * dim)
    ffn_dim = _check(what, "ffn_dim", ffn_dim, int(sd["ffn.1.weight"].shape[0]))
    method = kw.pop("instance_kernel_method", "interpolation_bilinear")
    if method != "interpolation_bilinear":
        raise ConfigError(
            f"{what}: instance_kernel_method {method!r} is not supported (only bilinear)"
        )
    if kw.pop("mid_mix", False):
        raise ConfigError(
            f"{what}: mid_mix (channel shuffle between the two GCCs) is not part of gcc_ca"
        )
    ffn_dropout = float(kw.pop("ffn_dropout", 0.0))
    dropout = float(kw.pop("dropout", 0.0))
    drop_path = float(kw.pop("drop_path", 0.0))
    _reject_unknown(what, kw)
    block = GCCBlock(
        dim,
        meta,
        ffn_dim=ffn_dim,
        use_pe=use_pe,
        bias=bias,
        ffn_dropout=ffn_dropout,
        dropout=dropout,
        drop_path=drop_path,
    )
    return load_converted(block, convert_keys(sd, _GCC_RENAMES), what)


def _reject_unknown(what: str, kw: dict[str, Any]) -> None:
    for name in _TRAIN_ONLY:
        kw.pop(name, None)
    if kw:
        raise ConfigError(f"{what}: unknown argument {min(kw)!r}")


_BUILDERS: dict[str, Callable[[dict[str, Tensor], dict[str, Any]], nn.Module]] = {
    "sdta": _sdta,
    "gcc": _gcc,
}


def block_from_official(kind: str, state_dict: Mapping[str, Tensor], **kwargs: Any) -> nn.Module:
    """Our block equivalent to an authors' block, with ``state_dict`` (the authors' names) loaded.

    ``kind`` is ``"sdta"`` (EdgeNeXt ``SDTAEncoder``: ``dim``, ``scales``, ``num_heads``,
    ``use_pos_emb``, ``expan_ratio``, ``layer_scale_init_value``, ``qkv_bias``, ``drop_path``)
    or ``"gcc"`` (EdgeFormer ``gcc_ca``: ``dim`` = total channels, ``meta_kernel_size``,
    ``use_pe``, ``bias``, ``ffn_dim`` or ``mlp_ratio``, ``ffn_dropout``, ``dropout``; only the
    bilinear ``instance_kernel_method`` and ``mid_mix=False`` exist in gcc_ca). Arguments left
    out are read off the state dict; dropout rates only matter in training. The returned block is in
    eval mode, ready to compare against the authors' outputs.
    """
    if kind not in _BUILDERS:
        raise ConfigError(f"unknown official block kind {kind!r} (valid: {', '.join(_BUILDERS)})")
    if not isinstance(state_dict, Mapping):
        raise ConfigError(
            f"expected a state dict (a mapping of tensors), not {type(state_dict).__name__}"
        )
    sd = {k: v for k, v in _strip(state_dict).items() if isinstance(v, Tensor)}
    kw = dict(kwargs)
    for alias, name in _ALIASES[kind].items():
        if alias in kw:
            value = kw.pop(alias)
            if name in kw and kw[name] != value:
                raise ConfigError(
                    f"{kind} block: {alias}={value!r} contradicts {name}={kw[name]!r}"
                )
            kw[name] = value
    with torch.no_grad():
        block = _BUILDERS[kind](sd, kw)
    return block.eval()
