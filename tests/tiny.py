"""The tiny study the end-to-end tests search: 32x32 synthetic data, a few images per class,
one short epoch and a short CPU timing, so a search of a few trials takes seconds."""

from __future__ import annotations

from pathlib import Path

_TINY = """
name: tiny
space: edgevit-tiny
resolution: 32
data: {{spec: synthetic, subset: {subset}, val_subset: {val_subset}}}
proxy: {{epochs: {epochs}, batch_size: 10, warmup_epochs: 0, lr: {lr}, min_lr: 0.0{proxy_extra}}}
objectives: [accuracy, latency_ms]
backend: {{name: torch-cpu, threads: 1, budget_s: 0.05, warmup: 1, min_samples: 3, max_samples: 5}}
sampler: random
seed: 0
early_stopping: false
"""


def tiny_text(*, epochs: int = 1, lr: float = 3e-3, subset: int = 3, val_subset: int = 2,
              proxy_extra: str = "") -> str:
    """The recipe's YAML; ``proxy_extra`` adds proxy fields (", nan_check_every: 1")."""
    return _TINY.format(epochs=epochs, lr=lr, subset=subset, val_subset=val_subset,
                        proxy_extra=proxy_extra)


TINY = tiny_text()


def write_tiny(folder: Path, name: str = "tiny.yaml", **options: object) -> Path:
    """``tiny_text(**options)`` written to ``folder / name``."""
    path = folder / name
    path.write_text(tiny_text(**options))
    return path


#: a space of exactly one architecture: every trial of it is the same network (reuse tests)
ONE_ARCH_SPACE = """
resolution: 32
head_dim: 8
stages:
  - {depth: 1, heads: 1, block: conv}
  - {depth: 1, heads: 2, block: conv}
  - {depth: 1, heads: 2, block: lgl, sample_rate: 2}
  - {depth: 1, heads: 4, block: lgl}
"""


def write_one_arch(folder: Path, **options: object) -> Path:
    """The tiny recipe over :data:`ONE_ARCH_SPACE` (written beside it as ``one.yaml``)."""
    (folder / "one.yaml").write_text(ONE_ARCH_SPACE)
    path = folder / "one-arch.yaml"
    path.write_text(tiny_text(**options).replace("space: edgevit-tiny", "space: one.yaml"))
    return path
