"""``edgeexplore presets`` and ``edgeexplore convert``: the model zoo from the command line.

Thin wrappers over :mod:`edgeexplore.config` (presets) and :mod:`edgeexplore.models.official`
(loading the authors' checkpoints). torch is imported inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from ..config import PRESET_HELP, PRESETS
from ..errors import ConfigError, EdgeExploreError
from .options import format_option, json_alias
from .output import Column, emit


def _count_params(name: str) -> int | None:
    """Parameters of a preset, counted on the meta device (no memory, no initialisation)."""
    import torch

    from ..models import build

    try:
        with torch.device("meta"):
            model = build(PRESETS[name])
    except EdgeExploreError:
        return None  # a preset whose block kind is not built in this checkout
    return sum(p.numel() for p in model.parameters())


PRESET_COLUMNS = [
    Column("name"), Column("params", show=lambda n: "?" if n is None else f"{n:,}", right=True),
    Column("resolution", "input"), Column("description"), Column("stages"),
]


@click.command("presets")
@format_option()
@json_alias
def presets_cmd(fmt: str) -> None:
    """List the named architectures (usable wherever a PRESET|CONFIG.json is asked for)."""
    rows = []
    for name, arch in PRESETS.items():
        rows.append({
            "name": name,
            "params": _count_params(name),
            "resolution": "x".join(map(str, arch.resolution)),
            "description": PRESET_HELP.get(name, ""),
            "stages": arch.describe(),
        })
    emit(rows, fmt, PRESET_COLUMNS, title="edgeexplore presets")


def _int_list(value: str | None, name: str) -> list[int] | None:
    if value is None:
        return None
    try:
        items = [int(v) for v in value.replace(" ", "").split(",")]
    except ValueError:
        raise ConfigError(f"--{name} must be comma-separated integers, not {value!r}") from None
    return items


def _ratio(value: str | None) -> float | list[float] | None:
    if value is None:
        return None
    try:
        items = [float(v) for v in value.replace(" ", "").split(",")]
    except ValueError:
        raise ConfigError(f"--mlp-ratio must be a number or 4 numbers, not {value!r}") from None
    return items[0] if len(items) == 1 else items


def _load_checkpoint(path: Path) -> Any:
    import torch

    if not path.is_file():
        raise EdgeExploreError(f"{path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a corrupt file
        # torch's text for a pickle holding other objects is six lines that end by suggesting
        # weights_only=False, i.e. running the file's code: name the object in one sentence.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:
            raise EdgeExploreError(
                f"{path} holds a Python object ({found[1]}), not only weights; convert reads "
                "plain checkpoints and never runs code from a file") from None
        raise EdgeExploreError(
            f"{path} is not a PyTorch checkpoint (torch.load cannot read it)") from None


@click.command("convert")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--preset", default=None, help="Take head_dim from this preset (e.g. edgevit_xxs).")
@click.option("--head-dim", type=int, default=None,
              help="The authors' head_dim (heads = embed_dim // head_dim); needed unless --preset.")
@click.option("--depth", default=None, metavar="D1,D2,D3,D4",
              help="Blocks per stage (default: read from the weights).")
@click.option("--embed-dim", default=None, metavar="W1,W2,W3,W4",
              help="Widths (default: read from the weights).")
@click.option("--mlp-ratio", default=None, metavar="R|R1,R2,R3,R4",
              help="MLP ratio, one or per stage (default: read from the weights).")
@click.option("--sr-ratios", default=None, metavar="R1,R2,R3,R4",
              help="Sample rates (default: read from the weights).")
@click.option("--qkv-bias/--no-qkv-bias", default=None,
              help="Whether qkv has a bias (default: read from the weights).")
@click.option("--num-classes", type=int, default=None,
              help="Classifier outputs (default: read from the weights).")
@click.option("--img-size", default=None, help="Nominal input size, N or HxW (default 224).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write our state dict (default: CHECKPOINT_edgeexplore.pt); the "
                   "ArchConfig goes beside it as .json.")
def convert_cmd(
    checkpoint: Path, preset: str | None, head_dim: int | None, depth: str | None,
    embed_dim: str | None, mlp_ratio: str | None, sr_ratios: str | None,
    qkv_bias: bool | None, num_classes: int | None, img_size: str | None, output: Path | None,
) -> None:
    """Convert a checkpoint trained with the authors' EdgeViT code into an edgeexplore model.

    The state dict may sit at the top level or under "model" / "state_dict". Options are the
    authors' constructor arguments; what is left out is read from the weights, except head_dim.
    Writes our state dict (torch.save) and the architecture as JSON, which every other command
    accepts as CONFIG.json.

    \b
    Example:
      edgeexplore convert edgevit_xxs_official.pth --head-dim 36 -o xxs.pt
    """
    import torch

    from ..config import get_preset, parse_resolution
    from ..models import from_official

    kwargs: dict[str, Any] = {}
    if preset is not None:
        arch = get_preset(preset)
        if arch.macro != "edgevit" or any(st.block != "lgl" for st in arch.stages):
            raise ConfigError(f"--preset {preset} is not one of the authors' EdgeViTs; convert "
                              "reads EdgeViT checkpoints (e.g. --preset edgevit_xxs)")
        kwargs["head_dim"] = arch.stages[0].head_dim
    if head_dim is not None:
        kwargs["head_dim"] = head_dim
    if "head_dim" not in kwargs:
        raise ConfigError("give --head-dim (or --preset): the weights do not record the heads")
    given = {
        "depth": _int_list(depth, "depth"),
        "embed_dim": _int_list(embed_dim, "embed-dim"),
        "mlp_ratio": _ratio(mlp_ratio),
        "sr_ratios": _int_list(sr_ratios, "sr-ratios"),
        "qkv_bias": qkv_bias,
        "num_classes": num_classes,
        "img_size": parse_resolution(img_size) if img_size is not None else None,
    }
    kwargs.update({k: v for k, v in given.items() if v is not None})
    out = output or checkpoint.with_name(checkpoint.stem + "_edgeexplore.pt")
    if out.resolve() == checkpoint.resolve():  # the authors' weights must survive a typo
        raise ConfigError(f"--output {out} is the checkpoint being converted; choose another name")
    if not out.resolve().parent.is_dir():  # like every other --output: a typo creates nothing
        raise ConfigError(f"--output {out}: folder {out.resolve().parent} does not exist")
    model = from_official(_load_checkpoint(checkpoint), **kwargs)
    config_path = out.with_suffix(".json")
    try:
        torch.save(model.state_dict(), out)
        config_path.write_text(model.arch.to_json(indent=1) + "\n")
    except OSError as e:
        raise EdgeExploreError(
            f"cannot write {e.filename}: {e.strerror} (choose another --output)"
        ) from None
    params = sum(p.numel() for p in model.parameters())
    click.echo(f"converted {checkpoint} ({params:,} parameters)")
    click.echo(f"  architecture {model.arch.hash}: {model.arch.describe()}")
    click.echo(f"  weights -> {out}")
    click.echo(f"  config  -> {config_path}")


COMMANDS = [presets_cmd, convert_cmd]
