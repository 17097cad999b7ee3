"""Full training (``edgeexplore train``), resume and ``edgeexplore evaluate`` on a tiny ImageFolder.

The model is EdgeViT-XXS at 32×32 with 3 classes; a run of 2 epochs is 6 optimizer steps, so the
file stays well under two minutes on 2 busy CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeexplore.cli import main
from edgeexplore.training import checkpoint as ckpt
from edgeexplore.training.evaluate import evaluate_checkpoint, load_for_eval

# every timm part switched on, so the test covers the loop that binds them
TINY_RECIPE = """
epochs: 2
batch_size: 8
lr: 0.02
lr_base_batch: 512
warmup_epochs: 0.5
ema: true
ema_decay: 0.9
mixup: 0.8
cutmix: 1.0
reprob: 0.25
drop_path: 0.1
accum_steps: 1
workers: 0
"""


def make_folder(root: Path, classes: int = 3, train: int = 8, val: int = 4) -> Path:
    """Images whose class is their dominant colour: learnable in a few steps."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
                pixels[..., c % 3] += 150  # more than 3 classes share colours
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = make_folder(root / "data")
    recipe = root / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    return root, data, recipe


def train_args(data: Path, recipe: Path, out: Path) -> list[str]:
    # one loader worker process (none where there is one CPU): resume must be bit-for-bit with them
    return ["train", "edgevit_xxs", "--data", f"folder:{data}", "--recipe", str(recipe),
            "--resolution", "32", "--workers", "1", "-o", str(out)]


@pytest.fixture(scope="module")
def full_run(workspace):
    """An uninterrupted 2-epoch run."""
    root, data, recipe = workspace
    out = root / "full"
    assert main(train_args(data, recipe, out)) == 0
    return out


def test_train_writes_checkpoints_and_logs(full_run):
    lines = [json.loads(x) for x in (full_run / "log.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert lines[-1]["updates"] == 6  # 24 images / batch 8 × 2 epochs
    assert lines[-1]["val"]["images"] == 12 and lines[-1]["val_ema"]["images"] == 12
    state = ckpt.load(full_run / "last.pt")
    assert state["epoch"] == 2 and state["arch"]["num_classes"] == 3
    assert state["arch"]["resolution"] == [32, 32]
    assert state["ema"] is not None and state["recipe"]["epochs"] == 2
    best = ckpt.load(full_run / "best.pt")
    assert best["epoch"] == state["best"]["epoch"]
    results = json.loads((full_run / "results.json").read_text())
    assert results["finished"] and results["epochs_done"] == 2


def test_resume_is_bit_for_bit(workspace, full_run):
    root, data, recipe = workspace
    out = root / "resumed"
    assert main([*train_args(data, recipe, out), "--stop-after", "1"]) == 0
    assert ckpt.load(out / "last.pt")["epoch"] == 1
    assert main(["train", "--resume", "-o", str(out)]) == 0
    a, b = ckpt.load(full_run / "last.pt"), ckpt.load(out / "last.pt")
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs after resume"
    exp_a = a["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(exp_a, b["optimizer"]["state"][0]["exp_avg"])
    log_a = (full_run / "log.jsonl").read_text().splitlines()
    log_b = (out / "log.jsonl").read_text().splitlines()
    assert json.loads(log_a[1])["train_loss"] == json.loads(log_b[1])["train_loss"]


def test_evaluate_uses_ema_and_matches_training_log(full_run, workspace, capsys):
    _, data, _ = workspace
    m = evaluate_checkpoint(full_run / "last.pt", f"folder:{data}", batch_size=5, workers=0)
    assert m["weights"] == "ema" and m["images"] == 12
    last = json.loads((full_run / "log.jsonl").read_text().splitlines()[-1])
    assert m["top1"] == pytest.approx(last["val_ema"]["top1"])
    assert m["loss"] == pytest.approx(last["val_ema"]["loss"], rel=1e-4)
    # naming the architecture the run trained is accepted (its drop path and classes differ)
    named = evaluate_checkpoint(full_run / "last.pt", f"folder:{data}", arch="edgevit_xxs",
                                workers=0)
    assert named["top1"] == m["top1"]
    raw = evaluate_checkpoint(full_run / "last.pt", f"folder:{data}", use_ema=False, workers=0)
    assert raw["weights"] == "model"
    assert raw["loss"] == pytest.approx(last["val"]["loss"], rel=1e-4)
    code, out, _ = run_cli(["evaluate", str(full_run / "best.pt"), "--data", f"folder:{data}",
                            "--workers", "0", "--format", "json"], capsys)
    row = json.loads(out)[0]
    assert code == 0 and row["weights"] == "ema" and row["top3"] >= row["top1"]


def test_evaluate_converted_state_dict(full_run, workspace, tmp_path):
    """A plain state dict with its ArchConfig JSON beside it, as ``convert`` writes them."""
    _, data, _ = workspace
    loaded = load_for_eval(full_run / "last.pt")
    torch.save(loaded.model.state_dict(), tmp_path / "w.pt")
    (tmp_path / "w.json").write_text(loaded.arch.to_json())
    m = evaluate_checkpoint(tmp_path / "w.pt", f"folder:{data}", workers=0, crop_pct=0.875)
    ref = evaluate_checkpoint(full_run / "last.pt", f"folder:{data}", workers=0)
    assert m["weights"] == "converted" and m["loss"] == pytest.approx(ref["loss"], rel=1e-5)


def test_evaluate_timm_edgenext_weights(tmp_path):
    """timm's EdgeNeXt state dict: the architecture is read off the weights."""
    import timm

    data = make_folder(tmp_path / "d", classes=3, train=1, val=2)
    model = timm.create_model("edgenext_xx_small", num_classes=3)
    torch.save(model.state_dict(), tmp_path / "edgenext.pth")
    m = evaluate_checkpoint(tmp_path / "edgenext.pth", f"folder:{data}", resolution=64,
                            workers=0)
    assert m["weights"] == "timm-edgenext" and m["images"] == 6


@pytest.mark.slow
def test_torchrun_two_cpu_processes(workspace, tmp_path):
    """DDP with gloo: the ranks draw different images and end with identical weights."""
    _, data, recipe = workspace
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--standalone", "-m", "edgeexplore", "train", "edgevit_xxs",
         "--data", f"folder:{data}", "--recipe", str(recipe), "--resolution", "32",
         "--epochs", "1", "--batch-size", "4", "-o", str(out),
         "--storage", str(tmp_path / "ddp.db")],
        check=False, capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "log.jsonl").read_text())
    ranks = record["data"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["digest"] != ranks[1]["digest"]  # different image sets
    assert ranks[0]["images"] == ranks[1]["images"] == 12  # 24 images split in two
    results = json.loads((out / "results.json").read_text())
    assert results["world_size"] == 2
    assert results["weights_digest"][0] == results["weights_digest"][1]
    assert proc.stdout.count("epoch 1/1") == 1  # only rank 0 logs
    # every rank runs the pipeline (they agree on reuse); only rank 0 records
    import sqlite3

    con = sqlite3.connect(tmp_path / "ddp.db")
    rows = con.execute("SELECT state, epochs_done, output FROM trainings").fetchall()
    con.close()
    assert rows == [("complete", 1, str(out))]


# ---------------------------------------------------------------- bad input, one sentence each


def test_missing_val_folder(tmp_path, workspace, capsys):
    _, _, recipe = workspace
    data = make_folder(tmp_path / "d")
    for f in (data / "val").rglob("*.png"):
        f.unlink()
    for d in sorted((data / "val").iterdir()):
        d.rmdir()
    (data / "val").rmdir()
    code, _, err = run_cli(train_args(data, recipe, tmp_path / "o"), capsys)
    assert code == 1 and "must hold train/ and val/" in err and "Traceback" not in err


def test_evaluate_checkpoint_of_another_architecture(full_run, workspace, capsys):
    _, data, _ = workspace
    code, _, err = run_cli(["evaluate", str(full_run / "last.pt"), "--data", f"folder:{data}",
                            "--arch", "edgevit_xs", "--workers", "0"], capsys)
    assert code == 1 and "not of --arch edgevit_xs" in err and err.count("\n") == 1


def test_evaluate_state_dict_that_does_not_fit(full_run, workspace, tmp_path, capsys):
    _, data, _ = workspace
    torch.save(load_for_eval(full_run / "last.pt").model.state_dict(), tmp_path / "xxs.pt")
    code, _, err = run_cli(["evaluate", str(tmp_path / "xxs.pt"), "--data", f"folder:{data}",
                            "--arch", "edgevit_xs", "--workers", "0"], capsys)
    assert code == 1 and "does not fit" in err and "Traceback" not in err


def test_recipe_with_unknown_key(tmp_path, workspace, capsys):
    _, data, _ = workspace
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nlearning_rate: 0.1\n")
    code, _, err = run_cli(train_args(data, bad, tmp_path / "o"), capsys)
    assert code == 1 and "unknown key 'learning_rate'" in err
    assert not (tmp_path / "o").exists()


def test_resume_of_finished_run(full_run, capsys):
    code, _, err = run_cli(["train", "--resume", "-o", str(full_run)], capsys)
    assert code == 1 and "already finished its 2 epochs" in err


def test_unknown_preset(tmp_path, workspace, capsys):
    _, data, recipe = workspace
    code, _, err = run_cli(["train", "edgevit_xxxl", "--data", f"folder:{data}",
                            "--recipe", str(recipe), "-o", str(tmp_path / "o")], capsys)
    assert code == 1 and "'edgevit_xxxl' is neither a preset" in err


def test_existing_run_needs_resume(full_run, workspace, capsys):
    _, data, recipe = workspace
    code, _, err = run_cli(train_args(data, recipe, full_run), capsys)
    assert code == 1 and "pass --resume" in err


def test_shipped_recipes_scale_the_learning_rate():
    from edgeexplore.training.recipe import load_recipe

    deit = load_recipe("edgevit")
    assert deit.ema and deit.mixes
    assert deit.scaled_lr(world_size=8) == pytest.approx(2e-3)  # 5e-4 × 8 × 256 / 512
    edgenext = load_recipe("edgenext")
    assert edgenext.ema and edgenext.accum_steps == 2 and not edgenext.mixes
    assert edgenext.resolution == (256, 256)
    assert edgenext.scaled_lr(world_size=8) == pytest.approx(6e-3)  # 8 × 256 × 2 = 4096


def test_gradient_accumulation_steps_once_per_two_batches(workspace, tmp_path):
    from edgeexplore.config import get_preset
    from edgeexplore.training.full import train
    from edgeexplore.training.recipe import load_recipe

    _, data, recipe = workspace
    r = load_recipe(recipe).replace(epochs=1, warmup_epochs=0, batch_size=4, accum_steps=2,
                                    resolution=32)
    summary = train(get_preset("edgevit_xxs"), f"folder:{data}", tmp_path / "acc", r,
                    log=lambda _: None)
    record = json.loads((tmp_path / "acc" / "log.jsonl").read_text())
    assert summary["finished"] and record["updates"] == 3  # 24 images / (4 × 2)


def test_trial_architecture_from_the_store(tmp_path, workspace, capsys):
    import shutil

    from sqlalchemy import select

    from edgeexplore.commands.train import resolve_train_arch
    from edgeexplore.store.db import session_scope
    from edgeexplore.store.schema import Architecture

    store = tmp_path / "store.db"
    shutil.copy(Path(__file__).parent / "fixtures" / "store-v0.db", store)
    cfg = resolve_train_arch("trial:tiny/1", str(store))
    with session_scope(str(store)) as s:
        assert cfg.hash in set(s.scalars(select(Architecture.hash)))
    _, data, recipe = workspace
    code, _, err = run_cli(["train", "trial:tiny/99", "--storage", str(store), "--data",
                            f"folder:{data}", "--recipe", str(recipe), "-o",
                            str(tmp_path / "o")], capsys)
    assert code == 1 and "no trial number 99" in err


def test_a_full_training_is_recorded_reused_and_shown_beside_the_proxy(tmp_path, workspace,
                                                                         capsys):
    import shutil
    import sqlite3

    store = tmp_path / "store.db"
    shutil.copy(Path(__file__).parent / "fixtures" / "store-v0.db", store)
    _, _, recipe = workspace
    # the study's 10 classes at 32x32: the network trained is the trial's own (same hash)
    data = make_folder(tmp_path / "data10", classes=10, train=2, val=1)
    s = ["--storage", str(store)]

    def train(n: int, out: str, *extra: str) -> tuple[int, str, str]:
        return run_cli(["train", f"trial:tiny/{n}", "--data", f"folder:{data}", "--recipe",
                        str(recipe), "--resolution", "32", "-o", str(tmp_path / out), *s,
                        *extra], capsys)

    code, out, _ = train(0, "t0")
    assert code == 0 and "epoch 2/2" in out
    con = sqlite3.connect(store)
    rows = con.execute("SELECT arch_hash, kind, state, epochs, epochs_done, best_top1, "
                       "final_top1, checkpoint FROM trainings").fetchall()
    con.close()
    summary = json.loads((tmp_path / "t0" / "results.json").read_text())
    (arch, kind, state, epochs, done, best, final, checkpoint), = rows
    assert (arch, kind, state, epochs, done) == ("6a92d3cd91427464", "full", "complete", 2, 2)
    assert best == pytest.approx(summary["best"]["top1"] / 100)
    assert final is not None and checkpoint == str(tmp_path / "t0" / "best.pt")

    # the same architecture, recipe, data and seed: reused, nothing trained, nothing written
    code, out, _ = train(0, "again")
    assert code == 0 and "reused training 1" in out and not (tmp_path / "again").exists()
    code, out, _ = train(0, "forced", "--force")
    assert code == 0 and "epoch 2/2" in out

    code, out, _ = run_cli(["trials", "show", "1", "--format", "json", *s], capsys)
    shown = json.loads(out)
    assert shown["metrics"]["full_accuracy"] == pytest.approx(shown["trainings"][0]["best_top1"])
    assert [t["state"] for t in shown["trainings"]] == ["complete", "complete"]
    code, out, _ = run_cli(["trials", "list", "--format", "json", *s], capsys)
    by_id = {r["id"]: r["full_accuracy"] for r in json.loads(out)}
    assert by_id[1] == shown["metrics"]["full_accuracy"] and by_id[2] is None

    # a front over full accuracy: trial 2 then 1 trained in full; trial 3 is left out, said so
    assert train(1, "t1")[0] == 0
    code, out, _ = run_cli(["pareto", "--study", "tiny", "--objectives",
                            "full_accuracy:max,latency_ms:min", *s], capsys)
    assert code == 0 and "1 complete trial left out: no value for full_accuracy" in out
    code, out, _ = run_cli(["pareto", "--study", "tiny", "--objectives",
                            "full_accuracy:max,latency_ms:min", "--format", "json", *s], capsys)
    doc = json.loads(out)
    assert doc["left_out"] == 1 and {r["id"] for r in doc["front"]} <= {1, 2}
