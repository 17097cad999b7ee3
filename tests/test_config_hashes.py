"""Config hashes are identities in every store: pinned here so refactors cannot move them.

The values were computed before block kinds moved to their declarations (commit c2417fe); a
change in option names, defaults or in which options are reset when they do not matter would
silently change them and orphan stored trials.
"""

import sqlite3
from pathlib import Path

import pytest

from edgeexplore.config import PRESETS, ArchConfig

PRESET_HASHES = {
    "edgevit_xxs": "4cf653f1bfb98746",
    "edgevit_xs": "22b912c1c9a9f434",
    "edgevit_s": "463b8c07171e9d08",
    "edgenext_xx_small": "2ad2efef7bb13228",
    "edgenext_x_small": "9426f812c2cabe2f",
    "edgenext_small": "fcfdcb4c418ac9b6",
    "edgevit_xs_gcc": "76574faa01afac32",
    "edgevit_xs_sdta": "8269cef7706ad48c",
}


@pytest.mark.parametrize("name", sorted(PRESET_HASHES))
def test_preset_hashes_are_pinned(name):
    assert PRESETS[name].hash == PRESET_HASHES[name]


def _variants() -> dict[str, ArchConfig]:
    x = PRESETS["edgevit_xxs"]
    return {
        # rate 1: every lgl option is ignored, so this is still edgevit_xxs
        "4cf653f1bfb98746": x.with_stage(3, options={
            "sampler": "avg", "local_agg": "lsa", "window": 5, "local_prop": "nearest",
            "agg_kernel": 3}),
        # lsa: the LocalAgg kernel is ignored
        "837a64defa27bc09": x.with_stage(0, options={
            "local_agg": "lsa", "window": 4, "agg_kernel": 3, "sampler": "max"}),
        # conv: the LSA window is ignored
        "320d658f3c54e59e": x.with_stage(1, options={
            "local_agg": "conv", "window": 4, "agg_kernel": 3, "local_prop": "bilinear"}),
        "34ec4318161dd4f0": x.with_stage(0, block="sra").with_stage(
            1, block="conv", options={"agg_kernel": 3}),
        # no SDTA block: scales and pos_emb are ignored
        "b456238399e68ab4": PRESETS["edgenext_xx_small"].with_stage(1, options={
            "global_blocks": 0, "scales": 3, "pos_emb": True, "kernel": 5}),
        "09f0d996953e1471": PRESETS["edgevit_xs_gcc"].with_stage(
            1, options={"use_pe": False, "bias": True}),
    }


@pytest.mark.parametrize("expected", sorted(_variants()))
def test_option_canonicalisation_keeps_hashes(expected):
    assert _variants()[expected].hash == expected


def test_stored_architectures_keep_their_hashes():
    db = Path(__file__).parent / "fixtures" / "store-v0.db"
    rows = sqlite3.connect(db).execute("SELECT hash, config FROM architectures").fetchall()
    assert rows
    for stored, config in rows:
        assert ArchConfig.from_json(config).hash == stored
