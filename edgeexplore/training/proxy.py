"""Proxy training: a short, seeded AdamW run whose validation accuracy ranks architectures.

The recipe (:class:`ProxyRecipe`) is AdamW without weight decay on norms and biases (timm's
``create_optimizer_v2``), a linear warm-up into a cosine decay updated every step (timm's
``CosineLRScheduler``), label smoothing (timm's ``LabelSmoothingCrossEntropy``), stochastic
depth, and -- on CUDA -- mixed precision and channels-last tensors.

The loop is kept lean so proxy throughput stays within 10% of a bare forward/backward loop: data
are uint8 tensors augmented on the device in one gather, the loss is accumulated on the device
and checked for NaN/inf only every ``nan_check_every`` steps (one host sync), and the scheduler
and progress bar do host-side work only.

Hopeless-trial early stopping (:func:`should_stop`, :func:`early_stopper`) is a pure function of
accuracy curves, because Optuna cannot prune multi-objective studies; the study loop decides
where to call it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from .. import interrupts
from ..data import DataBundle, TensorSplit, augment_batch, normalise_batch
from ..data.bundle import num_batches
from ..errors import ConfigError, EdgeExploreError, dataclass_values

#: In-memory datasets up to this size are copied to the GPU once per run.
DEVICE_COPY_LIMIT = 2 * 2**30
STATUSES = ("complete", "stopped_early", "diverged")


class DivergedError(EdgeExploreError):
    """The training loss became NaN or infinite; ``result`` holds the curve so far."""

    def __init__(self, message: str, epoch: int, step: int, result: ProxyResult | None = None):
        super().__init__(message)
        self.epoch, self.step, self.result = epoch, step, result


def _auto_flag(name: str, value: Any) -> bool | str:
    if value in ("auto", True, False):
        return value
    raise ConfigError(f"proxy recipe: {name} must be true, false or 'auto', not {value!r}")


@dataclass
class ProxyRecipe:
    """Settings of a proxy training run (epochs and learning rates are per run, not per step)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    #: stochastic-depth rate; None keeps the model's own. For ArchConfig models use
    #: :meth:`arch_for` before building, since blocks built with rate 0 have no DropPath module.
    drop_path: float | None = None
    amp: bool | str = "auto"  # auto: on CUDA only
    amp_dtype: str = "auto"  # bfloat16 | float16 | auto (bfloat16 where the GPU supports it)
    channels_last: bool | str = "auto"  # auto: on CUDA only
    grad_clip: float | None = None
    #: cap on training batches per epoch (None: the whole training split)
    max_train_batches: int | None = None
    eval_batch_size: int = 256
    augment: bool = True
    #: steps between NaN/inf checks of the loss (each check is one host-device sync)
    nan_check_every: int = 20

    def __post_init__(self) -> None:
        def positive(name: str, integer: bool = True, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            kind = int if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind) or not value > 0 \
                    or not math.isfinite(value):
                what = "a positive integer" if integer else "a positive number"
                raise ConfigError(f"proxy recipe: {name} must be {what}, not {value!r}")

        for name in ("epochs", "batch_size", "eval_batch_size", "nan_check_every"):
            positive(name)
        positive("max_train_batches", allow_none=True)
        positive("lr", integer=False)
        positive("grad_clip", integer=False, allow_none=True)
        for name in ("min_lr", "weight_decay", "warmup_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
                    or not math.isfinite(value):
                raise ConfigError(f"proxy recipe: {name} must be a number >= 0, not {value!r}")
        if self.min_lr > self.lr:
            raise ConfigError(f"proxy recipe: min_lr ({self.min_lr}) is above lr ({self.lr})")
        if self.warmup_epochs >= self.epochs and self.epochs > 1:
            raise ConfigError(
                f"proxy recipe: warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs})"
            )
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(
                f"proxy recipe: label_smoothing must be in [0, 1), not {self.label_smoothing!r}"
            )
        if self.drop_path is not None and not 0 <= self.drop_path < 1:
            raise ConfigError(f"proxy recipe: drop_path must be in [0, 1), not {self.drop_path!r}")
        self.amp = _auto_flag("amp", self.amp)
        self.channels_last = _auto_flag("channels_last", self.channels_last)
        if self.amp_dtype not in ("auto", "bfloat16", "float16"):
            raise ConfigError(
                f"proxy recipe: amp_dtype must be 'auto', 'bfloat16' or 'float16', not {self.amp_dtype!r}"
            )
        if not isinstance(self.augment, bool):
            raise ConfigError(f"proxy recipe: augment must be true or false, not {self.augment!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ProxyRecipe:
        """Build from a mapping (a study YAML's ``proxy:`` section); unknown keys are an error."""
        return cls(**dataclass_values(cls, values, "proxy recipe"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def arch_for(self, cfg: Any) -> Any:
        """``cfg`` (an ArchConfig) with this recipe's drop-path rate, if the recipe sets one."""
        if self.drop_path is None or cfg.drop_path_rate == self.drop_path:
            return cfg
        return cfg.replace(drop_path_rate=self.drop_path)


@dataclass
class ProxyResult:
    """The outcome of :func:`train_proxy`; ``curve`` has one dict per finished epoch."""

    accuracy: float
    best_accuracy: float
    curve: list[dict[str, float]]
    train_seconds: float
    eval_seconds: float
    images_per_second: float
    status: str
    epochs: int
    steps: int
    seed: int
    device: str
    amp: str | None
    channels_last: bool
    recipe: dict[str, Any] = field(default_factory=dict)
    #: intra-op threads chosen for a CPU run (None on a GPU), see :func:`choose_threads`
    threads: int | None = None
    #: the update after which a stalled step made the run go on with one thread, if one did
    threads_reduced_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (call it before building a model for identical weights)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}: {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EdgeExploreError(f"device {device} requested but CUDA is not available here")
        if device.index is None:  # "cuda" and "cuda:0" must compare equal to tensors' devices
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def autocast_dtype(amp: bool | str, amp_dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of an ``amp`` / ``amp_dtype`` setting (proxy and full recipes alike):
    bf16 where the GPU has it, else fp16; None for full precision. ``auto`` is on CUDA only."""
    enabled = amp if amp != "auto" else device.type == "cuda"
    if not enabled:
        return None
    if amp_dtype == "float16":
        return torch.float16
    if amp_dtype == "bfloat16" or device.type != "cuda" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def use_channels_last(channels_last: bool | str, device: torch.device) -> bool:
    """A ``channels_last`` setting resolved: ``auto`` is on CUDA only."""
    return channels_last if channels_last != "auto" else device.type == "cuda"


def set_drop_path(model: nn.Module, rate: float) -> int:
    """Rescale the model's timm ``DropPath`` modules so the deepest has ``rate``, keeping the
    model's own depth schedule (usually linear); returns how many modules were set.

    Blocks a model built with rate 0 have no DropPath module at all, which is why
    :meth:`ProxyRecipe.arch_for` exists for our own models.
    """
    from timm.layers import DropPath

    paths = [m for m in model.modules() if isinstance(m, DropPath)]
    top = max((float(m.drop_prob) for m in paths), default=0.0)
    for i, module in enumerate(paths):
        if top > 0:
            module.drop_prob = rate * float(module.drop_prob) / top
        else:  # no schedule to keep: rise linearly with depth
            module.drop_prob = rate * i / max(1, len(paths) - 1)
    return len(paths)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                   params: Iterable[nn.Parameter], clip: float | None) -> None:
    """One update from the gradients ``backward`` left: clipped to norm ``clip`` when set (after
    unscaling), then stepped through the fp16 ``scaler`` when there is one. The backward pass
    before it is ``(loss if scaler is None else scaler.scale(loss)).backward()``."""
    if clip:
        if scaler is not None:
            scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(params, clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def cross_entropy(label_smoothing: float) -> nn.Module:
    """The classification loss of hard labels: timm's label-smoothing loss, or plain CE at 0."""
    from timm.loss import LabelSmoothingCrossEntropy

    if label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=label_smoothing)
    return nn.CrossEntropyLoss()


def _on_device(split: Any, device: torch.device) -> Any:
    if (
        device.type == "cuda"
        and isinstance(split, TensorSplit)
        and split.nbytes <= DEVICE_COPY_LIMIT
    ):
        return split.to(device)
    return split


def _norm_tensors(data: DataBundle, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
    inv_std = 1.0 / torch.tensor(data.std, device=device).view(1, 3, 1, 1)
    return mean, inv_std


# ---------------------------------------------------------------- evaluation


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    data: DataBundle,
    split: str = "val",
    batch_size: int = 256,
    device: str | torch.device | None = None,
    amp: bool | str = "auto",
    channels_last: bool | str = "auto",
) -> float:
    """Top-1 accuracy (0..1) of ``model`` on a split of ``data``; one host sync in all."""
    dev = resolve_device(device)
    recipe = ProxyRecipe(amp=amp, channels_last=channels_last, eval_batch_size=batch_size)
    return _evaluate(model, data, getattr(data, split), recipe, dev)


def _evaluate(
    model: nn.Module, data: DataBundle, split: Any, recipe: ProxyRecipe, device: torch.device
) -> float:
    was_training = model.training
    model.eval()
    model.to(device)
    dtype = autocast_dtype(recipe.amp, recipe.amp_dtype, device)
    cl = use_channels_last(recipe.channels_last, device)
    mean, inv_std = _norm_tensors(data, device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    with torch.inference_mode():
        for x, y in split.batches(recipe.eval_batch_size, device=device):
            x = normalise_batch(x, mean, inv_std, cl)
            with torch.autocast(
                device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                logits = model(x)
            correct += (logits.argmax(dim=1) == y).sum()
    model.train(was_training)
    return correct.item() / max(1, len(split))


# ---------------------------------------------------------------- threads
#
# Each intra-op OpenMP region ends at a barrier, so a step is as slow as its slowest thread: on a
# machine whose cores other processes keep busy, a thread that loses its core stalls the others
# (two threads on two cores, one of them busy, stalled a 48 s quickstart trial for over ten
# minutes). So a CPU run takes only the cores that are free when it starts, and goes on with one
# thread if a step later takes far longer than the ones before it.

#: a step this many times slower than the median of the recent ones is a stall, not noise
STALL_FACTOR = 10.0
#: steps timed before a stall can be judged (the first ones include one-off allocations)
STALL_MIN_STEPS = 5


def choose_threads(limit: int, usable: int, busy: float) -> int:
    """Intra-op threads for training: the ``usable`` cores that others leave free (``busy`` is the
    cores' worth of CPU they use; a core counts as free when at least three quarters of it is
    idle), never more than ``limit`` (torch's setting: OMP_NUM_THREADS or a search worker's
    share of the cores), and at least one."""
    return max(1, min(limit, math.floor(usable - busy + 0.25)))


def _cpu_times(cpus: set[int] | None) -> tuple[int, int]:
    """(total, idle) jiffies of ``cpus`` (all when None) from /proc/stat."""
    total = idle = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            if cpus is not None and int(name[3:]) not in cpus:
                continue
            ticks = [int(x) for x in fields[:8]]  # user .. steal; guest time is inside user
            total += sum(ticks)
            idle += ticks[3] + ticks[4]  # idle + iowait
    return total, idle


def busy_cores(interval: float = 0.1) -> tuple[int, float]:
    """(usable cores, cores' worth of CPU that other processes use now) for this process.

    Sampled from /proc/stat over ``interval`` seconds while this process sleeps; without it
    (not Linux), the 1-minute load average less this process."""
    try:
        cpus: set[int] | None = os.sched_getaffinity(0)
    except AttributeError:
        cpus = None
    usable = len(cpus) if cpus else os.cpu_count() or 1
    try:
        t0, i0 = _cpu_times(cpus)
        time.sleep(interval)
        t1, i1 = _cpu_times(cpus)
    except (OSError, ValueError):
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        return usable, max(0.0, load - 1.0)
    if t1 <= t0:
        return usable, 0.0
    return usable, usable * (1.0 - (i1 - i0) / (t1 - t0))


class _Threads:
    """The thread policy of one CPU run (see above); restores torch's setting on exit."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.before = torch.get_num_threads()
        self.chosen: int | None = None
        self.reduced_at: int | None = None
        self.recent: list[float] = []

    def __enter__(self) -> Self:
        if self.device.type == "cpu":
            # one thread allowed is one thread chosen: skip the 0.1 s sample of the cores
            self.chosen = choose_threads(self.before, *busy_cores()) if self.before > 1 else 1
            torch.set_num_threads(self.chosen)
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.before)

    def step_took(self, seconds: float, update: int) -> None:
        if self.chosen is None or self.chosen == 1 or self.reduced_at is not None:
            return
        if len(self.recent) >= STALL_MIN_STEPS and (
                seconds > STALL_FACTOR * statistics.median(self.recent)):
            torch.set_num_threads(1)
            self.reduced_at = update
            return
        self.recent = [*self.recent[-49:], seconds]


# ---------------------------------------------------------------- training


def train_proxy(
    model: nn.Module,
    data: DataBundle,
    recipe: ProxyRecipe | Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    on_epoch: Callable[[int, float], bool | None] | None = None,
    progress: bool = True,
    curve: list[dict[str, float]] | None = None,
) -> ProxyResult:
    """Train ``model`` on ``data`` with ``recipe`` and return its validation accuracy curve.

    ``on_epoch(epoch, val_acc)`` is called after each epoch (epochs count from 1); returning
    False stops the run with status ``"stopped_early"`` (None or True continue). A NaN or
    infinite loss raises :class:`DivergedError` carrying the partial result. The same seed on the
    same machine (and the same initial weights: see :func:`seed_everything`) gives the same result.
    ``curve``, when given, is the list each finished epoch is appended to: the caller still holds
    the curve so far when the run is interrupted (Ctrl-C) or raises.
    """
    if recipe is None:
        recipe = ProxyRecipe()
    elif not isinstance(recipe, ProxyRecipe):
        recipe = ProxyRecipe.from_dict(recipe)
    device = resolve_device(device)
    seed_everything(seed)
    dtype = autocast_dtype(recipe.amp, recipe.amp_dtype, device)
    cl = use_channels_last(recipe.channels_last, device)
    model.to(device)
    if cl:
        model.to(memory_format=torch.channels_last)
    if recipe.drop_path is not None:
        set_drop_path(model, recipe.drop_path)

    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    train_split = _on_device(data.train, device)
    val_split = _on_device(data.val, device)
    n_train = len(train_split)
    drop_last = n_train >= recipe.batch_size  # a ragged last batch only when there is one batch
    steps_per_epoch = num_batches(n_train, recipe.batch_size, drop_last)
    if recipe.max_train_batches is not None:
        steps_per_epoch = min(steps_per_epoch, recipe.max_train_batches)
    total_steps = steps_per_epoch * recipe.epochs
    warmup_steps = min(round(recipe.warmup_epochs * steps_per_epoch), total_steps - 1)

    optimizer = create_optimizer_v2(
        model, opt="adamw", lr=recipe.lr, weight_decay=recipe.weight_decay, filter_bias_and_bn=True
    )
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=max(2, total_steps - warmup_steps),  # timm warns about a 1-step cosine
        lr_min=recipe.min_lr,
        warmup_t=warmup_steps,
        warmup_lr_init=min(recipe.min_lr, recipe.lr * 0.01),
        warmup_prefix=True,
        t_in_epochs=False,
    )
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    criterion = cross_entropy(recipe.label_smoothing)
    mean, inv_std = _norm_tensors(data, device)
    generator = torch.Generator().manual_seed(seed)
    amp_name = str(dtype).removeprefix("torch.") if dtype is not None else None

    curve = [] if curve is None else curve
    train_seconds = eval_seconds = 0.0
    images = updates = 0
    status = "complete"

    def result(final_status: str) -> ProxyResult:
        accs = [c["val_acc"] for c in curve]
        return ProxyResult(
            accuracy=accs[-1] if accs else 0.0,
            best_accuracy=max(accs) if accs else 0.0,
            curve=curve,
            train_seconds=round(train_seconds, 4),
            eval_seconds=round(eval_seconds, 4),
            images_per_second=round(images / train_seconds, 2) if train_seconds > 0 else 0.0,
            status=final_status,
            epochs=len(curve),
            steps=updates,
            seed=seed,
            device=str(device),
            amp=amp_name,
            channels_last=cl,
            recipe=recipe.to_dict(),
            threads=threads.chosen,
            threads_reduced_at=threads.reduced_at,
        )

    def diverged(epoch: int, step: int) -> DivergedError:
        return DivergedError(
            f"training diverged: the loss became NaN or infinite in epoch {epoch} by step {step} "
            f"of {steps_per_epoch} (lr={recipe.lr:g}); lower the learning rate or set grad_clip",
            epoch,
            step,
            result("diverged"),
        )

    threads = _Threads(device)
    with progress_bar(progress) as bar, threads:
        task = bar.add_task("proxy training", total=total_steps)
        for epoch in range(1, recipe.epochs + 1):
            model.train()
            loss_sum = torch.zeros((), device=device)
            started = time.perf_counter()
            step = 0
            batches = train_split.batches(
                recipe.batch_size,
                shuffle=True,
                generator=generator,
                drop_last=drop_last,
                device=device,
            )
            for x, y in batches:
                interrupts.check()  # a Ctrl-C swallowed by a finaliser still stops the run
                step_started = time.perf_counter()
                if recipe.augment:
                    x = augment_batch(x, data.crop_padding, data.hflip, generator)
                x = normalise_batch(x, mean, inv_std, cl)
                with torch.autocast(
                    device.type, dtype=dtype or torch.float32, enabled=dtype is not None
                ):
                    loss = criterion(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                (loss if scaler is None else scaler.scale(loss)).backward()
                optimizer_step(optimizer, scaler, model.parameters(), recipe.grad_clip)
                updates += 1
                step += 1
                images += len(y)
                threads.step_took(time.perf_counter() - step_started, updates)
                scheduler.step_update(updates)
                loss_sum += loss.detach()
                # NaN/inf stays non-finite in the running sum, so a periodic check suffices
                if step % recipe.nan_check_every == 0 and not torch.isfinite(loss_sum):
                    train_seconds += time.perf_counter() - started
                    raise diverged(epoch, step)
                bar.advance(task)
                if step >= steps_per_epoch:
                    break
            train_loss = (loss_sum / max(1, step)).item()  # also waits for the device
            train_seconds += time.perf_counter() - started
            if not math.isfinite(train_loss):
                raise diverged(epoch, step)
            started = time.perf_counter()
            val_acc = _evaluate(model, data, val_split, recipe, device)
            eval_seconds += time.perf_counter() - started
            curve.append(
                {
                    "epoch": epoch,
                    "train_loss": round(train_loss, 6),
                    "val_acc": val_acc,
                    "lr": optimizer.param_groups[0]["lr"],
                    "seconds": round(train_seconds + eval_seconds, 4),
                }
            )
            bar.update(task, description=f"epoch {epoch}/{recipe.epochs} · val acc {val_acc:.3f}")
            if on_epoch is not None and on_epoch(epoch, val_acc) is False:
                status = "stopped_early" if epoch < recipe.epochs else "complete"
                break
    return result(status)


def progress_bar(enabled: bool) -> Any:
    """A transient bar over an epoch's batches, the same for proxy and full training: the epoch
    lines stay, the bar goes; off where the output is not a terminal (logs and pipes get lines)."""
    import sys

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), transient=True,
                    disable=not (enabled and sys.stdout.isatty()))


# ---------------------------------------------------------------- hopeless-trial early stopping


def _best_until(curve: Any, epoch: int) -> float | None:
    """Best accuracy up to ``epoch`` (1-based) of a ProxyResult, a list of curve dicts or of
    floats; None when the curve did not reach ``epoch``."""
    if isinstance(curve, ProxyResult):
        curve = curve.curve
    accs = {}
    for i, point in enumerate(curve):
        if isinstance(point, Mapping):
            accs[int(point.get("epoch", i + 1))] = float(point["val_acc"])
        else:
            accs[i + 1] = float(point)
    if epoch not in accs:
        return None
    return max(a for e, a in accs.items() if e <= epoch)


def is_rung(epoch: int, min_epoch: int = 1) -> bool:
    """Whether ``epoch`` is a checkpoint of the hopeless-trial rule: min_epoch × 1, 2, 4, ..."""
    if epoch < min_epoch or epoch % max(1, min_epoch):
        return False
    ratio = epoch // max(1, min_epoch)
    return ratio & (ratio - 1) == 0


def should_stop(
    epoch: int,
    acc: float,
    completed_curves: Iterable[Any],
    quantile: float = 0.25,
    min_trials: int = 4,
    min_epoch: int = 1,
) -> bool:
    """True when a trial is hopeless: at a checkpoint epoch (``min_epoch`` × 1, 2, 4, ...), its
    best accuracy so far (``acc``) is below the ``quantile`` of the best accuracies that
    completed trials had reached by the same epoch.

    Checking only at doubling epochs and comparing best-so-far values keeps the rule from
    pruning ordinary trials on one noisy validation epoch: tested every epoch against the raw
    curve, a 25% quantile stopped most average trials of a CIFAR-10 study. ``completed_curves``
    holds the curves of finished trials of the same study (and proxy recipe): ProxyResults,
    lists of curve dicts or lists of per-epoch accuracies. Nothing is stopped while fewer than
    ``min_trials`` completed trials reached ``epoch``, so the first trials always run to the end.
    """
    if not 0 < quantile < 1:
        raise ConfigError(f"early stopping: quantile must be in (0, 1), not {quantile!r}")
    if not is_rung(epoch, min_epoch):
        return False
    peers = [a for a in (_best_until(c, epoch) for c in completed_curves) if a is not None]
    if len(peers) < max(1, min_trials):
        return False
    return acc < float(np.quantile(peers, quantile))


def early_stopper(
    completed_curves: Sequence[Any], quantile: float = 0.25, min_trials: int = 4, min_epoch: int = 1
) -> Callable[[int, float], bool]:
    """An ``on_epoch`` callback for :func:`train_proxy` built on :func:`should_stop`; it tracks
    the trial's best accuracy so far."""
    curves = list(completed_curves)
    best = 0.0

    def on_epoch(epoch: int, acc: float) -> bool:
        nonlocal best
        best = max(best, acc)
        return not should_stop(epoch, best, curves, quantile, min_trials, min_epoch)

    return on_epoch


# ---------------------------------------------------------------- throughput reference


def bare_loop_throughput(
    model: nn.Module,
    data: DataBundle,
    recipe: ProxyRecipe,
    steps: int = 30,
    warmup: int = 3,
    device: str | torch.device | None = None,
) -> float:
    """Images per second of a bare forward/backward/step loop on one fixed, pre-normalised batch
    with the same model, batch size, optimizer, loss, AMP and memory format as
    :func:`train_proxy`: the ceiling the proxy's ``images_per_second`` is compared against."""
    from timm.optim import create_optimizer_v2

    dev = resolve_device(device)
    dtype = autocast_dtype(recipe.amp, recipe.amp_dtype, dev)
    cl = use_channels_last(recipe.channels_last, dev)
    model.to(dev).train()
    if cl:
        model.to(memory_format=torch.channels_last)
    x, y = next(data.train.batches(recipe.batch_size, device=dev))
    mean, inv_std = _norm_tensors(data, dev)
    x = normalise_batch(x, mean, inv_std, cl)
    optimizer = create_optimizer_v2(
        model, opt="adamw", lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    criterion = cross_entropy(recipe.label_smoothing)
    scaler = torch.amp.GradScaler(dev.type) if dtype == torch.float16 else None
    started = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            _sync(dev)
            started = time.perf_counter()
        with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        (loss if scaler is None else scaler.scale(loss)).backward()
        optimizer_step(optimizer, scaler, model.parameters(), None)
    _sync(dev)
    return steps * len(y) / (time.perf_counter() - started)
