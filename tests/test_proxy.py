"""Proxy training: recipe validation, learning, determinism, divergence, early stopping."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch
from torch import nn

from edgeexplore import interrupts
from edgeexplore.data import load_data
from edgeexplore.errors import ConfigError, EdgeExploreError
from edgeexplore.training.proxy import (
    DivergedError,
    ProxyRecipe,
    choose_threads,
    early_stopper,
    evaluate,
    seed_everything,
    set_drop_path,
    should_stop,
    train_proxy,
)


@pytest.fixture(scope="module")
def data():
    # four classes: two textures, each as a disc and as a ring (local texture, global shape)
    return load_data("synthetic:classes=4,train=1280,val=160", seed=0)


def tiny_cnn(num_classes: int = 4) -> nn.Module:
    """Strided convs then a flattening head: sees texture and where it is."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 16, num_classes),
    )


FAST = {"epochs": 4, "batch_size": 64, "lr": 5e-3, "warmup_epochs": 0.5, "label_smoothing": 0.0}


# ---------------------------------------------------------------- recipe


def test_recipe_round_trip_and_defaults():
    recipe = ProxyRecipe.from_dict({"epochs": 3, "lr": "2e-3", "drop_path": 0.1})
    assert recipe.lr == 0.002 and recipe.amp == "auto" and recipe.channels_last == "auto"
    assert ProxyRecipe.from_dict(recipe.to_dict()) == recipe
    assert ProxyRecipe.from_dict(None) == ProxyRecipe()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"epochs": 2, "learning_rate": 1},
            "unknown key 'learning_rate' \\(valid keys: epochs, ",
        ),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"batch_size": 2.5}, "batch_size must be a positive integer"),
        ({"lr": -1}, "lr must be a positive number"),
        ({"lr": float("nan")}, "lr must be a positive number, not nan"),
        ({"weight_decay": float("inf")}, "weight_decay must be a number >= 0, not inf"),
        ({"lr": "fast"}, "lr must be a number"),
        ({"min_lr": 0.1, "lr": 0.01}, "min_lr \\(0.1\\) is above lr"),
        ({"epochs": 2, "warmup_epochs": 2}, "warmup_epochs \\(2\\) must be below epochs"),
        ({"label_smoothing": 1.0}, "label_smoothing must be in"),
        ({"drop_path": -0.1}, "drop_path must be in"),
        ({"amp": "yes"}, "amp must be true, false or 'auto'"),
        ({"amp_dtype": "fp8"}, "amp_dtype must be"),
        ({"max_train_batches": 0}, "max_train_batches must be a positive integer"),
    ],
)
def test_recipe_rejects_bad_values(values, message):
    with pytest.raises(ConfigError, match=message):
        ProxyRecipe.from_dict(values)


def test_recipe_sets_drop_path_on_configs_and_modules():
    import timm

    from edgeexplore.config import get_preset

    cfg = get_preset("edgevit_xxs")
    assert ProxyRecipe(drop_path=0.1).arch_for(cfg).drop_path_rate == 0.1
    assert ProxyRecipe().arch_for(cfg) is cfg
    vit = timm.create_model(
        "vit_tiny_patch16_224",
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=3,
        num_heads=2,
        drop_path_rate=0.05,
    )
    # timm puts no DropPath in the first block (its rate is 0), two in each of the others
    assert set_drop_path(vit, 0.2) == 4
    rates = [b.drop_path1.drop_prob for b in vit.blocks[1:]]
    assert rates == pytest.approx([0.1, 0.2])


# ---------------------------------------------------------------- training


def test_tiny_cnn_learns_the_synthetic_task(data):
    seed_everything(0)
    model = tiny_cnn()
    calls = []
    result = train_proxy(
        model, data, FAST, seed=0, progress=False, on_epoch=lambda e, a: calls.append((e, a))
    )
    assert result.status == "complete" and result.epochs == 4 and len(result.curve) == 4
    assert result.steps == 4 * (1280 // 64)
    assert [c["epoch"] for c in result.curve] == [1, 2, 3, 4] and calls == [
        (c["epoch"], c["val_acc"]) for c in result.curve
    ]
    # chance is 0.25; four epochs on 1,280 images (~2 s) reach about 0.52 (textures; shape later)
    assert result.accuracy > 0.45, result.curve
    assert result.curve[-1]["train_loss"] < result.curve[0]["train_loss"]
    assert result.images_per_second > 0 and result.train_seconds > 0
    assert result.amp is None and result.channels_last is False and result.device == "cpu"
    assert result.accuracy == pytest.approx(evaluate(model, data))


def test_same_seed_same_result_and_other_seed_differs(data):
    recipe = ProxyRecipe(epochs=1, batch_size=32, max_train_batches=6, eval_batch_size=160)
    results = []
    for seed in (5, 5, 6):
        seed_everything(seed)
        results.append(train_proxy(tiny_cnn(), data, recipe, seed=seed, progress=False))
    assert results[0].curve[0]["train_loss"] == results[1].curve[0]["train_loss"]
    assert results[0].accuracy == results[1].accuracy
    assert results[0].curve[0]["train_loss"] != results[2].curve[0]["train_loss"]
    assert results[0].steps == 6


def test_early_stop_callback_stops(data):
    seed_everything(0)
    recipe = ProxyRecipe(epochs=3, batch_size=64, max_train_batches=2)
    result = train_proxy(
        tiny_cnn(), data, recipe, seed=0, progress=False, on_epoch=lambda e, a: e < 2
    )
    assert result.status == "stopped_early" and result.epochs == 2 and result.steps == 4


class NaNAfter(nn.Module):
    """Produces NaN logits from the ``after``-th training call on."""

    def __init__(self, after: int):
        super().__init__()
        self.body, self.calls, self.after = tiny_cnn(), 0, after

    def forward(self, x):
        out = self.body(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.after:
                out = out * float("nan")
        return out


def test_nan_loss_raises_diverged_with_partial_curve(data):
    recipe = ProxyRecipe(epochs=3, batch_size=32, max_train_batches=5, nan_check_every=2)
    with pytest.raises(
        DivergedError, match="diverged: the loss became NaN or infinite in epoch 2 by step 2"
    ) as err:
        train_proxy(NaNAfter(after=7), data, recipe, seed=0, progress=False)
    assert isinstance(err.value, EdgeExploreError)
    assert err.value.epoch == 2 and err.value.result.status == "diverged"
    assert err.value.result.epochs == 1  # the finished epoch is kept


def test_huge_learning_rate_diverges(data):
    seed_everything(0)
    recipe = ProxyRecipe(epochs=2, batch_size=32, lr=1e12, warmup_epochs=0, max_train_batches=8)
    with pytest.raises(DivergedError, match="lower the learning rate"):
        train_proxy(tiny_cnn(), data, recipe, seed=0, progress=False)


def test_amp_and_channels_last_run_on_cpu_when_forced(data):
    seed_everything(0)
    recipe = ProxyRecipe(epochs=1, batch_size=32, max_train_batches=3, amp=True, channels_last=True)
    result = train_proxy(tiny_cnn(), data, recipe, seed=0, progress=True)
    assert result.amp == "bfloat16" and result.channels_last is True
    assert 0 <= result.accuracy <= 1


def test_evaluate_counts_exactly(data):
    class Constant(nn.Module):
        def forward(self, x):
            return torch.tensor([0.0, 0.0, 1.0, 0.0]).expand(len(x), 4)

    expected = (data.val.labels == 2).float().mean().item()
    assert evaluate(Constant(), data, batch_size=37) == pytest.approx(expected)
    assert expected == 0.25  # the validation set is balanced


def test_unknown_device_is_clear(data):
    with pytest.raises(EdgeExploreError, match="device"):
        evaluate(tiny_cnn(), data, device="tpu:0")


# ---------------------------------------------------------------- hopeless-trial stopping


def test_should_stop_against_completed_curves():
    completed = [[0.3, 0.5], [0.4, 0.6], [0.5, 0.7], [0.6, 0.8]]
    # 25% quantile at epoch 1 of [0.3, 0.4, 0.5, 0.6] is 0.375
    assert should_stop(1, 0.35, completed) is True
    assert should_stop(1, 0.40, completed) is False
    assert should_stop(2, 0.52, completed) is True  # quantile 0.575
    assert should_stop(3, 0.0, completed) is False  # nobody reached epoch 3
    # checked only at doubling epochs, against the best accuracy reached so far
    long = [[0.3, 0.5, 0.4, 0.6], [0.4, 0.6, 0.5, 0.7], [0.5, 0.7, 0.6, 0.8], [0.6, 0.8, 0.7, 0.9]]
    assert should_stop(3, 0.0, long) is False  # epoch 3 is not a checkpoint
    assert should_stop(4, 0.64, long) is True  # best-so-far quantile at 4 is 0.675
    assert should_stop(4, 0.7, long) is False
    assert should_stop(2, 0.5, long, min_epoch=2) is True and should_stop(6, 0.0, long, min_epoch=2) is False
    assert should_stop(1, 0.0, completed[:3]) is False  # too few completed trials
    assert should_stop(1, 0.0, completed, min_epoch=2) is False
    dict_curves = [[{"epoch": 1, "val_acc": a[0]}] for a in completed]
    assert should_stop(1, 0.35, dict_curves) is True
    with pytest.raises(ConfigError, match="quantile"):
        should_stop(1, 0.3, completed, quantile=1.5)
    on_epoch = early_stopper(completed, quantile=0.5)
    assert on_epoch(1, 0.2) is False and on_epoch(1, 0.9) is True
    # a dip after a good epoch does not stop the trial: its best so far counts
    on_epoch = early_stopper(long, quantile=0.25)
    assert on_epoch(1, 0.6) is True and on_epoch(2, 0.2) is True


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_ctrl_c_swallowed_by_a_finaliser_still_stops_training(data):
    """CPython ignores a KeyboardInterrupt raised inside __del__ or a weakref callback; the
    remembered Ctrl-C must still stop the next training step instead of the whole run."""

    class Finaliser:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the handler runs here, and its exception is ignored

    with interrupts.guard():
        Finaliser()  # collected at once: "Exception ignored in ... __del__"
        with pytest.raises(KeyboardInterrupt):
            train_proxy(tiny_cnn(), data, FAST, progress=False)
    interrupts.check()  # leaving the guard forgets the request


# ---------------------------------------------------------------- threads


@pytest.mark.parametrize(("limit", "usable", "busy", "threads"), [
    (8, 4, 0.0, 4),   # an idle machine: every usable core
    (8, 4, 1.0, 3),   # one core kept busy by someone else
    (8, 4, 1.2, 3),   # a core 80% idle still counts
    (8, 4, 1.3, 2),   # one 70% idle does not: its thread would stall the others
    (2, 4, 0.0, 2),   # never more than torch's setting (OMP_NUM_THREADS, a worker's share)
    (2, 2, 1.9, 1),   # the case: 2 cores, one busy -> 1 thread, not 2
    (8, 2, 7.5, 1),   # at least one
])
def test_choose_threads(limit, usable, busy, threads):
    assert choose_threads(limit, usable, busy) == threads


def test_busy_cores_reads_the_usable_cpus(monkeypatch):
    from edgeexplore.training import proxy

    samples = iter([(1000, 500), (1400, 700)])  # half of the jiffies idle over the interval
    seen = []

    def cpu_times(cpus):
        seen.append(cpus)
        return next(samples)

    assert proxy._cpu_times(None)[0] > 0  # the real /proc/stat parses
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5, 7})
    monkeypatch.setattr(proxy, "_cpu_times", cpu_times)
    assert proxy.busy_cores(interval=0) == (4, 2.0)
    assert seen == [{0, 2, 5, 7}] * 2


class _StallsOnce(nn.Module):
    """tiny_cnn whose 8th training forward pass waits as a descheduled OpenMP thread would:
    far longer than any step before it, however loaded the machine running the test is."""

    def __init__(self):
        super().__init__()
        self.net, self.calls = tiny_cnn(), []

    def forward(self, x):
        if self.training:
            self.calls.append(time.perf_counter())
            if len(self.calls) == 8:
                gaps = [b - a for a, b in zip(self.calls, self.calls[1:])]
                time.sleep(min(30.0, 30 * max(gaps)))
        return self.net(x)


def test_a_stalled_step_goes_on_with_one_thread(data, monkeypatch):
    from edgeexplore.training import proxy

    monkeypatch.setattr(proxy, "busy_cores", lambda: (4, 0.0))  # an idle 4-core machine
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        res = train_proxy(_StallsOnce(), data, {**FAST, "epochs": 1}, progress=False)
        assert res.threads == 2 and res.threads_reduced_at is not None
        assert res.threads_reduced_at <= 8  # at the stall (or earlier, on a loaded machine)
        assert torch.get_num_threads() == 2  # the caller's setting is restored
        calm = train_proxy(tiny_cnn(), data, {**FAST, "epochs": 1}, device="cpu", progress=False)
        assert calm.threads == 2
    finally:
        torch.set_num_threads(before)
    monkeypatch.setattr(proxy, "busy_cores", lambda: (2, 1.9))  # the other core is taken
    torch.set_num_threads(2)
    try:
        assert train_proxy(tiny_cnn(), data, {**FAST, "epochs": 1}, progress=False).threads == 1
    finally:
        torch.set_num_threads(before)
