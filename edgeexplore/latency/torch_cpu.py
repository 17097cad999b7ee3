"""``torch-cpu``: eager PyTorch in inference mode on the CPU, at a fixed thread count.

Also the base class of the other in-process backends (``torchscript``, ``onnxruntime``, ``cuda``):
they differ only in how they turn a model into a callable and how they describe the device.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import EdgeExploreError
from .base import (
    Measurement,
    SamplingPolicy,
    check_positive,
    check_threads,
    cpu_description,
    energy_dict,
    resolve_clock,
    sample_loop,
    thread_cpu_timer,
)

#: One intra-op thread by default: on a shared or small machine it is the most reproducible
#: setting (no contention with the OS or other jobs for a second core), and it ranks
#: architectures the way single-big-core mobile benchmarks do. ``threads=N`` changes it.
DEFAULT_THREADS = 1


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads, restoring the process's setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


#: What the backends time (see :func:`deployable`). Part of the cache key, so timings of the
#: model as built, cached by earlier versions, are not mixed with timings of the fused one.
MODEL_FORM = "fused"


def deployable(model: Any) -> Any:
    """What a backend times: a model in its deployable form (:func:`~edgeexplore.models.
    fuse_for_inference`), since that is what would ship; anything else (an exported file's
    path) as it is."""
    from torch import nn

    from ..models.fuse import fuse_for_inference

    return fuse_for_inference(model) if isinstance(model, nn.Module) else model


class TorchCPUBackend:
    """Eager PyTorch on the CPU (``torch.inference_mode``), warm-up then sampling until stable."""

    name = "torch-cpu"
    #: settings besides the sampling policy's; subclasses extend it
    extra_settings: tuple[str, ...] = ()

    def __init__(self, threads: int | None = None, energy: str = "auto", **settings: Any) -> None:
        valid = set(SamplingPolicy.__dataclass_fields__) | set(self.extra_settings)
        unknown = sorted(set(settings) - valid)
        if unknown:
            raise EdgeExploreError(
                f"backend {self.name!r} has no setting {unknown[0]!r} "
                f"(valid: threads, energy, {', '.join(sorted(valid))})"
            )
        self.threads = check_threads(threads if threads is not None else DEFAULT_THREADS)
        if energy not in ("auto", "on", "off"):
            raise EdgeExploreError(f"energy must be 'auto', 'on' or 'off', not {energy!r}")
        self.energy = energy
        policy_kw = {k: v for k, v in settings.items() if k in SamplingPolicy.__dataclass_fields__}
        try:
            self.policy = SamplingPolicy(**policy_kw)
        except TypeError as e:
            raise EdgeExploreError(f"bad sampling setting: {e}") from None
        for k in ("min_samples", "max_samples", "window"):
            check_positive(k, getattr(self.policy, k))
        check_positive("budget_s", self.policy.budget_s, integer=False)
        check_positive("wall_cap", self.policy.wall_cap, integer=False)
        resolve_clock(self.policy.clock, 1)  # validate now, not at the first measurement
        self.options = {k: v for k, v in settings.items() if k in self.extra_settings}

    # -- identity ----------------------------------------------------------------------------
    @property
    def settings(self) -> dict[str, Any]:
        """Everything that changes what is measured (the cache key's settings part)."""
        return {"threads": self.threads, **self.policy.to_dict(), **self.options,
                "model": MODEL_FORM}

    def available(self) -> tuple[bool, str]:
        import torch

        return True, f"{self.describe_device()['cpu']}, torch {torch.__version__}"

    def describe_device(self) -> dict[str, Any]:
        import torch

        return {**cpu_description(), "torch": torch.__version__, "threads": self.threads}

    # -- measuring ---------------------------------------------------------------------------
    def _energy_meter(self) -> tuple[Any, str | None]:
        if self.energy == "off":
            return None, "energy measurement switched off"
        from .energy import cpu_meter

        meter, why = cpu_meter()
        if meter is None and self.energy == "on":
            raise EdgeExploreError(f"energy was requested but is {why}")
        return meter, (None if meter is not None else why)

    def prepare(self, model: Any, example: Any) -> Callable[[], Any]:
        """A zero-argument callable running one inference (subclasses compile/export here)."""
        import torch

        model.eval()

        def run() -> Any:
            with torch.inference_mode():
                return model(example)

        return run

    def make_input(self, input_shape: tuple[int, ...]) -> Any:
        import torch

        # A fixed seed: the same input every time (latency rarely depends on values, but e.g.
        # denormals could make it so, and reproducibility is cheap here).
        g = torch.Generator().manual_seed(0)
        return torch.randn(*input_shape, generator=g)

    def measure(self, model: Any, input_shape: tuple[int, ...]) -> Measurement:
        ok, why = self.available()
        if not ok:
            raise EdgeExploreError(f"backend {self.name!r} is not available: {why}")
        input_shape = tuple(int(d) for d in input_shape)
        t0 = time.perf_counter()
        with torch_threads(self.threads):
            run = self.prepare(deployable(model), self.make_input(input_shape))
            meter, note = self._energy_meter()
            clock = resolve_clock(self.policy.clock, self.threads)
            timer = self.timer() or (thread_cpu_timer(self.sync) if clock == "thread-cpu" else None)
            samples, warm, reason, energies = sample_loop(
                run, self.policy, sync=self.sync, timer=timer, energy=meter
            )
        return Measurement.from_samples(
            self.name, samples, warmup=warm, threads=self.threads, input_shape=input_shape,
            device=self.describe_device(), settings=self.settings, stop_reason=reason,
            energy_j=energy_dict(energies, meter.source) if meter is not None else None,
            energy_note=note, wall_s=time.perf_counter() - t0,
            extra={"clock": "cuda-events" if self.timer() else clock},
        )

    sync: Callable[[], None] | None = None

    def timer(self) -> Callable[[Callable[[], Any]], float] | None:
        """A custom per-call timer (CUDA events), or None for wall-clock time."""
        return None
