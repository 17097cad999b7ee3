"""The backend protocol, the :class:`Measurement` record and the statistics every backend reports.

A backend never returns a bare number: it returns every sample it took plus robust statistics
(median, percentiles, IQR, coefficient of variation) and how the samples were taken (warm-up
count, threads, why sampling stopped), so a reader can judge how far to trust a latency.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..errors import EdgeExploreError

if TYPE_CHECKING:
    from ..store import Store


class BackendUnavailable(EdgeExploreError):
    """The backend cannot run here (missing library, no GPU, no command configured...)."""


@dataclass(frozen=True)
class Stats:
    """Robust summary of a list of samples (latencies in ms or energies in J)."""

    median: float
    mean: float
    std: float
    min: float
    max: float
    p10: float
    p25: float
    p75: float
    p90: float
    iqr: float
    cv: float
    count: int

    @classmethod
    def from_samples(cls, samples: list[float] | np.ndarray) -> Stats:
        a = np.asarray(samples, dtype=float)
        if a.size == 0:
            raise EdgeExploreError("no samples to summarise")
        if not np.all(np.isfinite(a)):
            raise EdgeExploreError("samples contain NaN or infinity")
        p10, p25, p50, p75, p90 = np.percentile(a, [10, 25, 50, 75, 90])
        mean = float(a.mean())
        # Sample standard deviation (ddof=1): the samples estimate a population of runs.
        std = float(a.std(ddof=1)) if a.size > 1 else 0.0
        return cls(
            median=float(p50), mean=mean, std=std, min=float(a.min()), max=float(a.max()),
            p10=float(p10), p25=float(p25), p75=float(p75), p90=float(p90),
            iqr=float(p75 - p25), cv=std / mean if mean > 0 else 0.0, count=int(a.size),
        )


@dataclass
class Measurement:
    """Every sample of one timing run and its statistics (latency per batch, in milliseconds)."""

    backend: str
    samples_ms: list[float]
    median_ms: float
    mean_ms: float
    std_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    cv: float
    count: int
    warmup: int
    threads: int | None
    batch: int
    input_shape: tuple[int, ...]
    device: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    #: energy per inference (joules): ``{"samples_j": [...], "median_j": ..., ..., "source": ...}``
    energy_j: dict[str, Any] | None = None
    #: why energy is missing, when it is ("not available here: ...")
    energy_note: str | None = None
    #: "stable" (running median settled), "budget" (time budget spent), "max_samples", "predicted"
    stop_reason: str = "stable"
    #: seconds the measurement itself took (warm-up, export and compilation included)
    wall_s: float = 0.0
    #: True when read back from the latency cache instead of measured now
    cached: bool = False
    #: backend-specific facts (e.g. the lut backend's error against measurement)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_samples(
        cls,
        backend: str,
        samples_ms: list[float],
        *,
        warmup: int,
        threads: int | None,
        input_shape: tuple[int, ...],
        **kw: Any,
    ) -> Measurement:
        s = Stats.from_samples(samples_ms)
        return cls(
            backend=backend, samples_ms=[float(x) for x in samples_ms], median_ms=s.median,
            mean_ms=s.mean, std_ms=s.std, p10_ms=s.p10, p90_ms=s.p90, iqr_ms=s.iqr, cv=s.cv,
            count=s.count, warmup=warmup, threads=threads, batch=int(input_shape[0]),
            input_shape=tuple(int(d) for d in input_shape), **kw,
        )

    @property
    def per_item_ms(self) -> float:
        """Median latency divided by the batch size."""
        return self.median_ms / max(self.batch, 1)

    @property
    def stats(self) -> Stats:
        return Stats.from_samples(self.samples_ms)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        kw["input_shape"] = tuple(kw.get("input_shape", ()))
        return cls(**kw)

    def summary(self) -> str:
        """One line for logs: median, spread and sample count."""
        return (
            f"{self.backend}: median {self.median_ms:.3f} ms (p10 {self.p10_ms:.3f}, "
            f"p90 {self.p90_ms:.3f}, CV {self.cv:.1%}, n={self.count}, batch {self.batch})"
        )


def energy_dict(samples_j: list[float], source: str) -> dict[str, Any]:
    """Energy per inference, with the same statistics as latency."""
    s = Stats.from_samples(samples_j)
    return {
        "samples_j": [float(x) for x in samples_j], "median_j": s.median, "mean_j": s.mean,
        "p10_j": s.p10, "p90_j": s.p90, "iqr_j": s.iqr, "cv": s.cv, "count": s.count,
        "source": source,
    }


@runtime_checkable
class LatencyBackend(Protocol):
    """What a latency backend provides. Third-party backends need only these four members
    (plus, optionally, a ``settings`` dict that identifies its configuration in the cache)."""

    name: str

    def available(self) -> tuple[bool, str]:
        """``(True, short device description)`` or ``(False, why not)``."""
        ...

    def describe_device(self) -> dict[str, Any]:
        """CPU model, cores, threads, GPU name, library versions: whatever identifies the device."""
        ...

    def measure(self, model: Any, input_shape: tuple[int, ...]) -> Measurement:
        """Time ``model`` on inputs of ``input_shape`` (batch first)."""
        ...


@runtime_checkable
class StoreBackend(LatencyBackend, Protocol):
    """A backend that keeps tables of its own in the store (the lut backend's unit timings).

    :func:`~edgeexplore.latency.measure_arch` hands it the store it caches measurements in,
    before the first ``measure``, so both live in one file.
    """

    def use_store(self, store: Store) -> None:
        """Keep this backend's tables in ``store`` from now on."""
        ...


# -- sampling ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingPolicy:
    """How long to sample: warm up, then repeat until the running median is stable.

    Sampling stops at the first of: ``max_samples`` samples; the running median changing by less
    than ``rel_tol`` (relative) over the last ``window`` samples once ``min_samples`` are in; or
    ``budget_s`` seconds of sampled time (at least 3 samples are always taken). Sampled time is
    the sum of the samples, in the clock's own seconds: with the thread-CPU clock on a busy
    machine a measurement gets as many samples as on an idle one (the same quality) and takes
    longer, up to ``wall_cap`` × ``budget_s`` of wall time. The defaults cost about 1-2 s per
    EdgeViT-sized model on one idle CPU thread, cheap enough for every search trial.
    """

    warmup: int = 3
    warmup_s: float = 0.1
    min_samples: int = 10
    max_samples: int = 300
    budget_s: float = 1.5
    #: hard limit on sampling wall time, as a multiple of ``budget_s``
    wall_cap: float = 3.0
    window: int = 10
    rel_tol: float = 0.005
    #: "wall" (perf_counter), "thread-cpu" (CPU time of the calling thread) or "auto"
    #: (thread-cpu when the backend runs on one thread, else wall); see :func:`resolve_clock`
    clock: str = "auto"

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> SamplingPolicy:
        names = {f.name for f in fields(cls)}
        return cls(**{k: settings[k] for k in names if k in settings})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CLOCKS = ("auto", "wall", "thread-cpu")


def resolve_clock(clock: str, threads: int | None) -> str:
    """The clock a backend really uses.

    On a machine shared with other jobs, wall-clock time includes every slice the scheduler gave
    to someone else, which is not the model's latency and differs from run to run. With one
    compute thread all the work happens on the calling thread, so that thread's CPU time is the
    latency an idle machine would show, minus the waits; ``auto`` uses it then. With several
    threads CPU time would sum the threads, so ``auto`` falls back to wall time.
    """
    if clock not in CLOCKS:
        raise EdgeExploreError(f"clock must be one of {', '.join(CLOCKS)}, not {clock!r}")
    if clock == "auto":
        return "thread-cpu" if threads == 1 else "wall"
    return clock


def thread_cpu_timer(
    sync: Callable[[], None] | None = None,
) -> Callable[[Callable[[], Any]], float]:
    def timed(fn: Callable[[], Any]) -> float:
        t0 = time.thread_time_ns()
        fn()
        if sync is not None:
            sync()
        return (time.thread_time_ns() - t0) / 1e6

    return timed


def running_median_stable(medians: list[float], window: int, rel_tol: float) -> bool:
    """True when the last ``window`` running medians lie within ``rel_tol`` of the latest one."""
    if len(medians) < window:
        return False
    recent = medians[-window:]
    last = recent[-1]
    return last > 0 and (max(recent) - min(recent)) / last <= rel_tol


def sample_loop(
    run: Callable[[], Any],
    policy: SamplingPolicy,
    *,
    sync: Callable[[], None] | None = None,
    timer: Callable[[Callable[[], Any]], float] | None = None,
    energy: Any = None,
) -> tuple[list[float], int, str, list[float] | None]:
    """Warm up ``run``, then sample it per :class:`SamplingPolicy`.

    Returns (samples in ms, warm-up count, stop reason, energy samples in J or None). ``timer``
    (e.g. CUDA events) times one call and returns ms; by default wall-clock ``perf_counter``
    around the call and ``sync``. ``energy`` is an :class:`~edgeexplore.latency.energy.EnergyMeter`
    read before and after each sample.
    """

    def wall(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        return (time.perf_counter() - t0) * 1e3

    timer = timer or wall
    gc_was_enabled = gc.isenabled()
    # A collection in the middle of a sample is noise that has nothing to do with the model.
    # (No gc.collect() first: with torch and timm loaded a full collection takes ~1 s.)
    gc.disable()
    try:
        warm, t_start = 0, time.perf_counter()
        while warm < policy.warmup or time.perf_counter() - t_start < policy.warmup_s:
            timer(run)
            warm += 1
            if warm >= max(policy.warmup, 1) * 50:
                break
        samples: list[float] = []
        energies: list[float] | None = [] if energy is not None else None
        medians: list[float] = []
        reason = "max_samples"
        t0 = time.perf_counter()
        while len(samples) < policy.max_samples:
            e0 = energy.read_j() if energy is not None else 0.0
            samples.append(timer(run))
            if energies is not None:
                energies.append(energy.read_j() - e0)
            medians.append(float(np.median(samples)))
            n = len(samples)
            settled = running_median_stable(medians, policy.window, policy.rel_tol)
            if n >= policy.min_samples and settled:
                reason = "stable"
                break
            if n >= 3 and (sum(samples) >= policy.budget_s * 1e3 or
                           time.perf_counter() - t0 >= policy.budget_s * policy.wall_cap):
                reason = "budget"
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples, warm, reason, energies


# -- device description --------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo, else platform)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), not all the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_description() -> dict[str, Any]:
    usable = usable_cores()
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


#: device keys that change without the device changing (they stay out of the fingerprint)
_VOLATILE = {"threads_in_use", "note"}


def device_fingerprint(device: dict[str, Any]) -> str:
    """16 hex digits identifying a device description (CPU/GPU model, cores, library versions)."""
    stable = {k: v for k, v in device.items() if k not in _VOLATILE}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]


def shape_str(shape: tuple[int, ...]) -> str:
    """An input shape as the store keys it: ``"1x3x224x224"``."""
    return "x".join(str(int(d)) for d in shape)


def settings_json(settings: dict[str, Any]) -> str:
    """Canonical JSON of backend settings (the cache key's settings part)."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)


#: More than a few threads per usable core only oversubscribes this CPU (--threads 99999 was an
#: OpenMP out-of-memory abort); a command backend times another device whose cores we cannot
#: count, so it gets a flat cap instead.
THREADS_PER_CORE_CAP = 4
REMOTE_THREADS_CAP = 1024


def check_threads(value: Any, *, local: bool = True) -> int:
    """A positive thread count within the cap (per usable core here, or flat for a remote device)."""
    check_positive("threads", value)
    cap = THREADS_PER_CORE_CAP * usable_cores() if local else REMOTE_THREADS_CAP
    if value > cap:
        why = (f"{THREADS_PER_CORE_CAP} per usable core of this machine" if local
               else "the cap for a command backend")
        raise EdgeExploreError(f"threads must be at most {cap} ({why}), not {value}")
    return value


def check_positive(name: str, value: Any, *, integer: bool = True, allow_none: bool = False) -> Any:
    """Validate a numeric setting with a one-sentence error."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, int) and not isinstance(value, bool) if integer else (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    )
    if not ok or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise EdgeExploreError(f"{name} must be {kind}, not {value!r}")
    return value
