"""The hybrid search spaces: every sibling block kind is offered, samples are valid and build."""

from __future__ import annotations

from collections import Counter

import optuna
import pytest
import torch

from edgeexplore.config import get_preset
from edgeexplore.models import build
from edgeexplore.search.space import resolve_space

ROOT = "search_spaces"


@pytest.mark.parametrize("name", ["hybrid", "hybrid-tiny"])
def test_every_stage_mixes_the_three_families(name):
    space = resolve_space(f"{ROOT}/{name}.yaml", ".")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    kinds: Counter[str] = Counter()
    for _ in range(120):
        trial = study.ask()
        cfg = space.suggest(trial, num_classes=10)  # raises ConfigError if a sample is invalid
        kinds.update(s.block for s in cfg.stages)
        study.tell(trial, 0.0)
    assert set(kinds) == {"lgl", "sra", "conv", "edgenext", "gcc"}


def test_presets_and_hybrids_lie_inside_the_hybrid_space():
    space = resolve_space(f"{ROOT}/hybrid.yaml", ".")
    for preset in ("edgevit_xxs", "edgevit_xs", "edgevit_xs_gcc", "edgevit_xs_sdta"):
        assert space.why_not(get_preset(preset)) is None, preset


def test_tiny_hybrid_samples_build_and_run():
    space = resolve_space(f"{ROOT}/hybrid-tiny.yaml", ".")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(3):
        trial = study.ask()
        model = build(space.suggest(trial, num_classes=10)).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
        study.tell(trial, 0.0)
