"""The ablation table in the paper's form, as a rich table, CSV, JSON or Markdown.

One row per variant: params (M), FLOPs (G), latency (ms), top-1 mean ± std over seeds, the
difference from the baseline and whether it holds across seeds (paired t-test over the seeds both
have, plus how many seeds moved the same way).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..tabular import to_csv
from .stats import PairedTest, mean, paired_test, std

FORMATS = ("table", "csv", "json", "markdown")
#: significance level of the "holds" column
ALPHA = 0.05


def as_percent(acc: float) -> float:
    """Accuracies are stored as fractions in [0, 1]; tables show percent."""
    return acc * 100.0


@dataclass
class VariantRow:
    name: str
    baseline: bool
    description: str
    adjustment: str
    depths: list[int]
    widths: list[int]
    params: int
    flops: int
    rel_error: float
    latency_ms: float | None
    #: seed → top-1 accuracy (fraction) of the runs that completed
    accuracies: dict[int, float] = field(default_factory=dict)
    #: seed → state of runs that did not complete (diverged, failed, running)
    incomplete: dict[int, str] = field(default_factory=dict)
    test: PairedTest | None = None

    @property
    def n(self) -> int:
        return len(self.accuracies)

    @property
    def mean(self) -> float | None:
        return as_percent(mean(list(self.accuracies.values()))) if self.accuracies else None

    @property
    def std(self) -> float | None:
        return as_percent(std(list(self.accuracies.values()))) if self.accuracies else None

    @property
    def diff(self) -> float | None:
        """Mean paired difference from the baseline, in percentage points."""
        if self.test is None or self.test.n == 0:
            return None
        return as_percent(self.test.mean_diff)

    def holds(self) -> str:
        """'yes' (p < ALPHA), 'no', or '' (baseline / too few seeds)."""
        if self.test is None or self.test.n < 2:
            return ""
        return "yes" if self.test.holds(ALPHA) else "no"

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.name,
            "baseline": self.baseline,
            "description": self.description,
            "adjustment": self.adjustment,
            "depths": self.depths,
            "widths": self.widths,
            "params": self.params,
            "flops": self.flops,
            "flops_rel_error": self.rel_error,
            "latency_ms": self.latency_ms,
            "accuracy_per_seed": {
                str(k): as_percent(v) for k, v in sorted(self.accuracies.items())
            },
            "incomplete_seeds": {str(k): v for k, v in sorted(self.incomplete.items())},
            "top1_mean": self.mean,
            "top1_std": self.std,
            "diff_vs_baseline": self.diff,
            "paired_test": None if self.test is None else self.test.to_dict(),
            "holds": self.holds() or None,
        }


@dataclass
class AblationReport:
    name: str
    component: str
    flops_target: int
    tolerance: float
    resolution: tuple[int, int]
    data: dict[str, Any]
    recipe: dict[str, Any]
    backend: str | None
    seeds: list[int]
    rows: list[VariantRow]
    #: runs this invocation found already done / trained now / total asked for
    reused: int = 0
    trained: int = 0
    total: int = 0

    def compute_tests(self) -> None:
        """Fill each row's paired test against the baseline over the seeds both completed."""
        base = next((r for r in self.rows if r.baseline), None)
        for r in self.rows:
            if base is None or r is base:
                r.test = None
                continue
            common = sorted(set(r.accuracies) & set(base.accuracies))
            r.test = paired_test(
                [r.accuracies[s] for s in common], [base.accuracies[s] for s in common]
            )

    # -- formats --------------------------------------------------------------------------------
    COLUMNS = (
        "variant",
        "depths",
        "params (M)",
        "FLOPs (G)",
        "latency (ms)",
        "top-1 (%)",
        "Δ top-1",
        "p (paired t)",
        "seeds agree",
        "holds",
    )

    def _cells(self, r: VariantRow) -> list[str]:
        def f(v: float | None, spec: str) -> str:
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            return "—" if missing else format(v, spec)

        top1 = "—" if r.mean is None else f"{r.mean:.2f} ± {r.std:.2f}"
        if r.incomplete:
            top1 += f" ({r.n}/{r.n + len(r.incomplete)} seeds)"
        if r.baseline:
            diff, p, agree = "baseline", "", ""
        else:
            diff = f(r.diff, "+.2f")
            p = "" if r.test is None or r.test.n < 2 else f(r.test.p, ".3f")
            agree = ""
            if r.test is not None and r.test.n:
                if r.test.wins == r.test.losses:
                    agree = f"split {r.test.wins}/{r.test.n}"
                else:
                    sign = "↑" if r.test.wins > r.test.losses else "↓"
                    agree = f"{max(r.test.wins, r.test.losses)}/{r.test.n} {sign}"
        return [
            r.name + (" *" if r.baseline else ""),
            ",".join(map(str, r.depths)),
            f(r.params / 1e6, ".3f"),
            f(r.flops / 1e9, ".4f"),
            f(r.latency_ms, ".2f"),
            top1,
            diff,
            p,
            agree,
            r.holds(),
        ]

    def caption(self) -> str:
        h, w = self.resolution
        data = str(self.data.get("spec", "?"))
        if self.data.get("subset"):
            data += f" ({self.data['subset']}/class"
            data += (
                f", val {self.data['val_subset']}/class)" if self.data.get("val_subset") else ")"
            )
        return (
            f"{self.name}: {self.component} at {self.flops_target / 1e9:.4g} GFLOPs "
            f"±{self.tolerance:.0%}, {h}x{w}, data {data}, "
            f"{self.recipe.get('epochs', '?')} epochs, seeds {','.join(map(str, self.seeds))}"
        )

    def render(self, console: Any) -> None:
        """Print as a rich table (the terminal form)."""
        from rich.table import Table

        table = Table(title=self.caption(), title_justify="left")
        for c in self.COLUMNS:
            table.add_column(c, justify="left" if c in ("variant", "depths") else "right")
        for r in self.rows:
            table.add_row(*self._cells(r))
        console.print(table)
        console.print(
            "* baseline. Δ top-1: mean paired difference from the baseline (points); "
            f"holds: paired t-test p < {ALPHA} over the seeds both completed."
        )

    def to_records(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.rows]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "component": self.component,
            "flops_target": self.flops_target,
            "tolerance": self.tolerance,
            "resolution": list(self.resolution),
            "data": self.data,
            "recipe": self.recipe,
            "backend": self.backend,
            "seeds": self.seeds,
            "runs": {"total": self.total, "reused": self.reused, "trained": self.trained},
            "variants": self.to_records(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def to_csv(self) -> str:
        fields = [
            "variant",
            "baseline",
            "adjustment",
            "depths",
            "widths",
            "params",
            "flops",
            "flops_rel_error",
            "latency_ms",
            "top1_mean",
            "top1_std",
            "diff_vs_baseline",
            "p_value",
            "sign_p",
            "wins",
            "losses",
            "holds",
            "n_seeds",
        ]
        seed_cols = [f"top1_seed{s}" for s in self.seeds]
        rows = []
        for r in self.rows:
            t = r.test
            values = [
                r.name,
                r.baseline,
                r.adjustment,
                ",".join(map(str, r.depths)),
                ",".join(map(str, r.widths)),
                r.params,
                r.flops,
                f"{r.rel_error:.5f}",
                _num(r.latency_ms),
                _num(r.mean),
                _num(r.std),
                _num(r.diff),
                "" if t is None or t.n < 2 else _num(t.p),
                "" if t is None else _num(t.sign_p),
                "" if t is None else t.wins,
                "" if t is None else t.losses,
                r.holds(),
                r.n,
            ] + [
                _num(as_percent(r.accuracies[s])) if s in r.accuracies else ""
                for s in self.seeds
            ]
            rows.append(dict(zip(fields + seed_cols, values)))
        # the program's one CSV rule (baseline reads true/false, never Python's True)
        return to_csv(rows, fields + seed_cols)

    def to_markdown(self) -> str:
        lines = [f"**{self.caption()}**", ""]
        lines.append("| " + " | ".join(self.COLUMNS) + " |")
        lines.append(
            "|" + "|".join("---" if i < 2 else "---:" for i in range(len(self.COLUMNS))) + "|"
        )
        for r in self.rows:
            cells = [c.replace("|", "\\|") for c in self._cells(r)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.append(f"\\* baseline; holds: paired t-test over seeds, p < {ALPHA}.")
        return "\n".join(lines) + "\n"

    def format(self, fmt: str) -> str:
        if fmt == "csv":
            return self.to_csv()
        if fmt == "json":
            return self.to_json() + "\n"
        if fmt == "markdown":
            return self.to_markdown()
        raise ValueError(f"no text form for {fmt!r}")


def _num(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.6g}"
