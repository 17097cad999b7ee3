"""The EdgeViT paper's ablation protocol, automated: ``edgeexplore ablate COMPONENT``.

* :mod:`.variants`: the built-in components (local-agg, sampler, local-prop, global-attn, block)
  and user-defined variant lists from YAML;
* :mod:`.matching`: FLOPs matching by depth (then width) adjustment;
* :mod:`.runner`: planning, latency, training over seeds, resume and reuse through the store;
* :mod:`.report`: the paper-style table (rich, CSV, JSON, Markdown) with paired tests;
* :mod:`.stats`: mean ± std, paired t-test, sign test;
* the ``ablations`` / ``ablation_variants`` / ``ablation_runs`` tables are in
  :mod:`edgeexplore.store.ablations`.
"""

from .matching import (
    DEFAULT_TOLERANCE,
    CachedCost,
    CostPoint,
    MatchResult,
    default_target,
    format_flops,
    match_flops,
    parse_flops,
)
from .report import FORMATS, AblationReport, VariantRow
from .runner import (
    QUICK,
    QUICK_BASE,
    AblationSettings,
    Plan,
    load_report,
    plan_ablation,
    run_ablation,
)
from .stats import PairedTest, paired_test, sign_test, t_sf_two_sided
from .variants import Component, Variant, builtin_names, get_component, load_component

__all__ = [
    "DEFAULT_TOLERANCE",
    "FORMATS",
    "QUICK",
    "QUICK_BASE",
    "AblationReport",
    "AblationSettings",
    "CachedCost",
    "Component",
    "CostPoint",
    "MatchResult",
    "PairedTest",
    "Plan",
    "Variant",
    "VariantRow",
    "builtin_names",
    "default_target",
    "format_flops",
    "get_component",
    "load_component",
    "load_report",
    "match_flops",
    "paired_test",
    "parse_flops",
    "plan_ablation",
    "run_ablation",
    "sign_test",
    "t_sf_two_sided",
]
