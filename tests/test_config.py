"""ArchConfig: validation, canonical JSON and hashing."""

import json

import pytest

from edgeexplore.config import PRESETS, ArchConfig, StageConfig, parse_resolution, resolve_arch
from edgeexplore.errors import ConfigError


def test_json_roundtrip_and_stable_hash():
    cfg = PRESETS["edgevit_xs"]
    again = ArchConfig.from_json(cfg.to_json())
    assert again == cfg and again.hash == cfg.hash
    # key order and defaults spelled out do not change the identity
    data = json.loads(cfg.to_json(indent=2))
    data["stages"][0]["options"] = {"sampler": "pick"}
    assert ArchConfig.from_dict(dict(reversed(list(data.items())))).hash == cfg.hash


def test_hash_changes_with_the_network():
    cfg = PRESETS["edgevit_xxs"]
    assert cfg.with_stage(0, options={"sampler": "avg"}).hash != cfg.hash
    assert cfg.with_stage(2, depth=4).hash != cfg.hash
    # a sampler on a stage without sparse attention builds the same network
    assert cfg.with_stage(3, options={"sampler": "avg"}).hash == cfg.hash


def test_preset_heads_follow_head_dim():
    assert [s.heads for s in PRESETS["edgevit_xs"].stages] == [1, 2, 5, 8]
    assert [s.heads for s in PRESETS["edgevit_xxs"].stages] == [1, 2, 4, 8]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"width": 100, "heads": 3}, "stage 3: width 100 is not divisible by 3 heads"),
        ({"depth": 0}, "stage 3: depth must be at least 1"),
        ({"block": "nope"}, "stage 3: unknown block 'nope'"),
        ({"options": {"sampler": "median"}}, "option 'sampler' is 'median'"),
        ({"options": {"samplr": "avg"}}, "has no option 'samplr'"),
        ({"mlp_ratio": float("nan")}, "mlp_ratio must be a positive number, not nan"),
        ({"mlp_ratio": float("inf")}, "mlp_ratio must be a positive number, not inf"),
        ({"width": 2, "heads": 1, "mlp_ratio": 0.25}, "leaves the MLP no hidden units"),
        ({"width": 10**12, "heads": 1}, "width 1000000000000 is more than a stage may have"),
        ({"depth": 1000}, "depth 1000 is more than a stage may have"),
        ({"options": ["sampler", "avg"]}, "options must be a mapping"),
    ],
)
def test_validation_messages(change, message):
    with pytest.raises(ConfigError, match=message):
        PRESETS["edgevit_xxs"].with_stage(2, **change)


def test_resolution_rules():
    assert parse_resolution("256x192") == (256, 192)
    assert parse_resolution(224) == (224, 224)
    with pytest.raises(ConfigError, match="multiples of 32"):
        parse_resolution(100)
    with pytest.raises(ConfigError, match="a side is larger than 4096"):
        parse_resolution("3200000")


def test_from_dict_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'stagez'"):
        ArchConfig.from_dict({"stagez": []})
    binary = tmp_path / "weights.pth"
    binary.write_bytes(b"\x80\xff\x00 not text")
    with pytest.raises(ConfigError, match="weights.pth is not a JSON text file"):
        ArchConfig.load(binary)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        resolve_arch(str(bad))
    with pytest.raises(ConfigError, match="neither a preset"):
        resolve_arch("edgevit_xxxl")
    with pytest.raises(ConfigError, match="4 stages"):
        ArchConfig(stages=(StageConfig(1, 8),))
