"""Block kinds are declared once (edgeexplore.kinds) and everything reads the declaration.

The toy kind below is declared from this file alone, the way a new family would be: config
validation, search-space loading and sampling, ``edgeexplore spaces``, the table renderer, the
builder and a whole ``edgeexplore search`` pick it up with no other file touched.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from tiny import tiny_text
from torch import nn

from edgeexplore.cli import main
from edgeexplore.config import BLOCKS, PRESETS, ArchConfig, StageConfig
from edgeexplore.errors import ConfigError
from edgeexplore.kinds import Option, When, block_kind, forget_block_kind
from edgeexplore.kinds._table import markdown_table, readme_section
from edgeexplore.models import build
from edgeexplore.models.registry import StageContext
from edgeexplore.search.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


class DwResBlock(nn.Module):
    """x + pw(dw_k×k(x)): a depthwise conv residual block."""

    def __init__(self, dim: int, kernel: int, dilation: int) -> None:
        super().__init__()
        pad = dilation * (kernel // 2)
        self.dw = nn.Conv2d(dim, dim, kernel, padding=pad, dilation=dilation, groups=dim)
        self.pw = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw(self.dw(x))


@pytest.fixture
def dwres():
    @block_kind(
        "dwres",
        help="toy: depthwise conv residual block",
        options={
            "kernel": Option(3, (3, 5), help="depthwise kernel"),
            # only the 3×3 kernel may be dilated, so the dilation is asked only then
            "dilation": Option(1, (1, 2), when=When("kernel", (3,)), help="dilation"),
        },
        uses_heads=False,
    )
    def build_dwres(ctx: StageContext) -> list[nn.Module]:
        o = ctx.stage.opts
        return [DwResBlock(ctx.stage.width, o["kernel"], o["dilation"]) for _ in ctx.drop_path]

    yield BLOCKS["dwres"]
    forget_block_kind("dwres")


def _toy_arch(**options) -> ArchConfig:
    base = PRESETS["edgevit_xxs"].replace(resolution=(32, 32), num_classes=3)
    return base.with_stage(1, block="dwres", sample_rate=1, options=options)


def test_toy_kind_validates_canonicalises_and_builds(dwres):
    cfg = _toy_arch(kernel=5, dilation=2)
    # the dilation does not matter with kernel 5: reset, so both spellings are one network
    assert cfg.stages[1].opts == {"kernel": 5, "dilation": 1}
    assert cfg.hash == _toy_arch(kernel=5).hash != _toy_arch(kernel=3, dilation=2).hash
    assert cfg.stages[1].heads == 1  # uses_heads=False
    with pytest.raises(ConfigError, match="option 'kernel' is 7; allowed: 3, 5"):
        _toy_arch(kernel=7)
    model = build(_toy_arch(kernel=3, dilation=2)).eval()
    assert isinstance(model.stages[1].blocks[0], DwResBlock)
    assert model.stages[1].blocks[0].dw.dilation == (2, 2)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    # and a JSON round trip finds the declared kind
    assert ArchConfig.from_json(cfg.to_json()) == cfg


def test_toy_kind_is_forgotten_afterwards():
    assert "dwres" not in BLOCKS
    with pytest.raises(ConfigError, match="unknown block 'dwres'"):
        StageConfig(depth=1, width=8, block="dwres")


SPACE = """
name: toy
resolution: 32
defaults: {mlp_ratio: 2.0}
stages:
  - {depth: 1, width: 8, sample_rate: 2}
  - {depth: [1, 2], width: 16, block: {dwres: {kernel: [3, 5], dilation: [1, 2]}, lgl: {}}}
  - {depth: 1, width: 16, block: {dwres: {kernel: 3, dilation: [1, 2]}}}
  - {depth: 1, width: 32}
constraints: {max_params: 5M}
"""

RECIPE = tiny_text().replace("name: tiny", "name: toy").replace("space: edgevit-tiny",
                                                                "space: toy-space.yaml")


def test_toy_kind_in_a_space_is_sampled_only_where_it_matters(dwres, tmp_path):
    path = tmp_path / "toy-space.yaml"
    path.write_text(SPACE)
    space = SearchSpace.load(path)
    assert space.stages[0].block_names() == ["lgl"]  # no block key: the default kind
    # stage 2: lgl (1) + dwres (kernel 5, kernel 3 × dilation 1|2 = 3) = 4, × 2 depths;
    # stage 3: dilation 1|2 = 2
    assert space.size() == 8 * 2
    rows = dict(space.rows())
    assert rows["stage2.block"] == "dwres (kernel {3, 5}; dilation {1, 2}) | lgl"
    assert rows["stage2.sample_rate"] == "1 (lgl)"
    assert "stage3.sample_rate" not in rows  # no block of stage 3 samples a rate
    assert rows["constraint max_params"] == "5000000"

    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        cfg = space.suggest(trial, num_classes=3)
        st = cfg.stages[1]
        asked = {k.split(".")[-1] for k in trial.params if k.startswith("stage2.dwres.")}
        if st.block == "dwres":
            assert asked == ({"kernel", "dilation"} if st.opts["kernel"] == 3 else {"kernel"})
            seen.add((st.opts["kernel"], st.opts["dilation"]))
        assert space.params_for(cfg) == trial.params
        study.tell(trial, 0.0)
    assert seen == {(3, 1), (3, 2), (5, 1)}

    out = _spaces_cli(str(path))
    assert "dwres (kernel {3, 5}; dilation {1, 2})" in out
    listing = _spaces_cli()
    assert "│ dwres " in listing and "kernel=3, dilation=1" in listing
    assert "| `dwres` | `kernel` `3` \\| `5`, default `3`: depthwise kernel<br>`dilation` `1` \\| " \
        "`2`, default `1` (only with kernel `3`): dilation | — | — |" in markdown_table()


def _spaces_cli(*args: str) -> str:
    """``edgeexplore spaces [FILE]`` in this process (the toy kind exists only here)."""
    from click.testing import CliRunner

    from edgeexplore.cli import cli

    result = CliRunner().invoke(cli, ["spaces", *args], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_search_over_the_toy_kind(dwres, tmp_path):
    (tmp_path / "toy-space.yaml").write_text(SPACE)
    recipe = tmp_path / "toy.yaml"
    recipe.write_text(RECIPE)
    db = tmp_path / "ee.db"
    assert main(["search", str(recipe), "--budget", "3", "--storage", str(db), "--quiet"]) == 0
    con = sqlite3.connect(db)
    states = [s for (s,) in con.execute("SELECT state FROM trial_results WHERE study = 'toy'")]
    configs = [json.loads(c) for (c,) in con.execute("SELECT config FROM architectures")]
    con.close()
    assert states.count("complete") == 3
    blocks = {st["block"] for c in configs for st in c["stages"]}
    assert "dwres" in blocks
    for c in configs:
        assert ArchConfig.from_dict(c).stages[2].block == "dwres"


#: the user's guide page that holds the generated block-kind table (it left README.md for docs/)
TABLE_PAGE = ROOT / "docs" / "architectures.md"


def test_docs_table_is_what_the_declarations_render():
    page = TABLE_PAGE.read_text()
    assert readme_section(page) == markdown_table(), (
        "docs/architectures.md's block-kind table is stale: run "
        "`uv run python -m edgeexplore.kinds --write docs/architectures.md`"
    )


def test_write_regenerates_a_stale_docs_table(tmp_path):
    readme = tmp_path / "architectures.md"
    fresh = TABLE_PAGE.read_text()
    readme.write_text(fresh.replace("| `sra` |", "| `sra` (stale) |"))
    subprocess.run([sys.executable, "-m", "edgeexplore.kinds", "--write", str(readme)], check=True)
    assert readme.read_text() == fresh


def test_config_declares_the_builtin_kinds_without_torch():
    code = ("import sys, edgeexplore.config as c; "
            "print(list(c.BLOCKS), list(c.MACROS), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['lgl', 'sra', 'conv', 'edgenext', 'gcc'] ['edgevit', 'edgenext'] False"


def test_declaring_a_taken_name_or_a_condition_on_a_later_option_fails():
    with pytest.raises(ValueError, match="'lgl' is already declared"):
        block_kind("lgl", help="again")(lambda ctx: [])
    with pytest.raises(ValueError, match="depends on 'b', which must be declared before it"):
        block_kind("bad", help="x", options={
            "a": Option(1, (1, 2), when=When("b", (1,))), "b": Option(1, (1, 2))})(lambda c: [])
    assert "bad" not in BLOCKS


def test_space_refuses_a_sample_rate_that_does_not_divide_the_map(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("resolution: [32, 64]\nstages: [{depth: 1, width: 8}, {depth: 1, width: 8},"
                    " {depth: 1, width: 8}, {depth: 1, width: 8, sample_rate: [1, 2],"
                    " block: [conv, sra]}]")
    with pytest.raises(ConfigError, match=r"stages\[3\].sample_rate: 2 does not divide the 1×1 "
                       r"map of stage 4 at 32×32 \(rates that do: 1\)"):
        SearchSpace.load(path)
    # a stage whose blocks sample no rate ignores it, so nothing is refused there
    path.write_text(path.read_text().replace("[conv, sra]", "conv"))
    assert "stage4.sample_rate" not in dict(SearchSpace.load(path).rows())


def test_a_config_whose_rate_does_not_divide_the_map_builds_with_a_warning():
    cfg = PRESETS["edgevit_xxs"].with_stage(3, sample_rate=2)  # 7×7 map at 224
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build(cfg.replace(resolution=(64, 64)))  # 2×2: divides, silent
        assert not caught
        build(cfg)
    assert [str(w.message) for w in caught] == [(
        "stage 4: sample rate 2 does not divide its 7×7 feature map at 224×224; the lgl blocks "
        "pad it")]
