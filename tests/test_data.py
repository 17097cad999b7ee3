"""Data loading: the synthetic task, ImageFolder trees, the CIFAR-10 archive, the caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeexplore.data import (
    augment_batch,
    clear_memory_cache,
    load_data,
    normalise_batch,
    parse_spec,
    synthetic,
)
from edgeexplore.errors import ConfigError, EdgeExploreError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Decoded-tensor caches go to a temporary folder, never to ~/.cache or the repository."""
    monkeypatch.setenv("EDGEEXPLORE_CACHE", str(tmp_path_factory.mktemp("cache")))
    clear_memory_cache()


# ---------------------------------------------------------------- specs


def test_parse_spec_kinds_and_options():
    assert parse_spec("synthetic") == ("synthetic", None, {})
    assert parse_spec("synthetic:classes=4,train=400,val=80") == (
        "synthetic",
        None,
        {"classes": 4, "train": 400, "val": 80},
    )
    with pytest.raises(ConfigError, match="resolution 'abc' is not N or HxW"):
        parse_spec("synthetic:resolution=abc")
    assert parse_spec("folder:/data/imnet,subset=10,resolution=64") == (
        "folder",
        "/data/imnet",
        {"subset": 10, "resolution": "64"},
    )
    assert parse_spec("cifar10:mode=memory") == ("cifar10", None, {"mode": "memory"})
    assert parse_spec("synthetic:hint=0.25")[2] == {"hint": 0.25}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("imagenet", "unknown data kind 'imagenet'"),
        ("synthetic:colours=3", "unknown option 'colours' for synthetic; valid: classes"),
        ("synthetic:classes=ten", "'classes' must be an integer"),
        ("synthetic:train=0", "'train' must be positive"),
        ("synthetic:hint=2", "'hint' must be between 0 and 1"),
        ("synthetic:hint=some", "'hint' must be a number"),
        ("synthetic:/tmp/x", "expected key=value"),
        ("folder:", "give the folder"),
        ("cifar10:mode=fast", "mode must be one of auto, memory, stream"),
        ("", "non-empty string"),
    ],
)
def test_bad_specs_are_clear(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(spec)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="classes must be between 2 and 30"):
        load_data("synthetic:classes=31")
    with pytest.raises(ConfigError, match="resolution"):
        load_data("synthetic", resolution="big")
    with pytest.raises(ConfigError, match="subset must be a positive"):
        load_data("synthetic", subset=0)


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_balanced_and_seeded():
    a = load_data("synthetic:classes=6,train=600,val=120", seed=3)
    clear_memory_cache()
    b = load_data("synthetic:classes=6,train=600,val=120", seed=3)
    c = load_data("synthetic:classes=6,train=600,val=120", seed=4)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.val.labels, b.val.labels)
    assert not torch.equal(a.train.images, c.train.images)
    assert a.train.images.shape == (600, 3, 32, 32) and a.train.images.dtype == torch.uint8
    assert a.train.labels.bincount().tolist() == [100] * 6
    assert a.val.labels.bincount().tolist() == [20] * 6
    # train and validation images are different draws
    assert not torch.equal(a.train.images[:120], a.val.images)
    assert a.num_classes == 6 and a.class_names[:2] == ["hstripes-disc", "hstripes-ring"]
    assert a.hflip is False  # a flip turns diagonal stripes into anti-diagonal ones: another class
    # statistics are real: not all one colour, in a plausible range
    assert all(0.3 < m < 0.7 for m in a.mean) and all(0.15 < s < 0.45 for s in a.std)


def test_synthetic_classes_are_texture_times_shape():
    pairs = synthetic.class_pairs(10)
    assert len(set(pairs)) == 10
    # up to 12 classes: every texture as a disc and as a ring, so shape alone splits each couple
    assert pairs == [(t, s) for t in range(5) for s in range(2)]
    assert synthetic.class_names(12)[-1] == "dots-ring"
    assert synthetic.class_names(30)[-1] == "dots-cross" and len(set(synthetic.class_pairs(30))) == 30
    d = load_data("synthetic:classes=4", subset=5, val_subset=2, resolution=64)
    assert d.train.images.shape == (20, 3, 64, 64) and len(d.val) == 8
    assert d.resolution == (64, 64) and d.crop_padding == 8


def test_synthetic_ring_has_a_hole_and_disc_none():
    """The key object's shape is real: a ring leaves its centre to the background, a disc not."""
    u, v = np.meshgrid(np.arange(-12, 12.5, 0.5), np.arange(-12, 12.5, 0.5))
    disc = synthetic._shape(0, u, v, 10.0, 4.0)
    ring = synthetic._shape(1, u, v, 10.0, 4.0)
    centre = (np.abs(u) < 1) & (np.abs(v) < 1)
    assert disc[centre].all() and not ring[centre].any()
    assert ring.sum() < disc.sum() and (ring <= disc).all()


def test_synthetic_hint_colours_key_object():
    """With hint=1 every key object's foreground sits near its texture's hint colour."""
    plain = load_data("synthetic:classes=2,train=200,val=2,hint=0", seed=0)
    hinted = load_data("synthetic:classes=2,train=200,val=2,hint=1", seed=0)
    assert plain.info["hint"] == 0 and hinted.info["hint"] == 1

    def near(bundle, colour):  # share of pixels within the hint jitter of ``colour``
        ref = torch.tensor(colour).view(1, 3, 1, 1) * 255
        close = ((bundle.train.images.float() - ref).abs() <= 0.15 * 255 + 30).all(dim=1)
        return close.float().mean().item()

    # 2 classes are hstripes disc / ring: texture 0 (red-ish hint) only
    assert near(hinted, synthetic.HINT_COLOURS[0].tolist()) > 1.3 * near(
        plain, synthetic.HINT_COLOURS[0].tolist()
    )
    unused = synthetic.HINT_COLOURS[1].tolist()  # texture 1 is in no class here
    assert near(hinted, unused) < 1.1 * near(plain, unused)


def test_synthetic_memory_cache_returns_same_bundle():
    a = load_data("synthetic:classes=3,train=30,val=9")
    assert load_data("synthetic:classes=3,train=30,val=9") is a


# ---------------------------------------------------------------- augmentation


def test_augment_crop_and_flip():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    same = augment_batch(x, 0, False, torch.Generator().manual_seed(0))
    assert torch.equal(same, x)
    flipped = [augment_batch(x, 0, True, torch.Generator().manual_seed(s)) for s in range(8)]
    assert any(torch.equal(f[0], x[0].flip(-1)) for f in flipped)
    assert all(torch.equal(f[0], x[0]) or torch.equal(f[0], x[0].flip(-1)) for f in flipped)
    cropped = augment_batch(x, 1, False, torch.Generator().manual_seed(1))
    assert cropped.shape == x.shape
    # every crop is a shifted window of the zero-padded image
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    windows = [padded[:, :, i : i + 4, j : j + 4] for i in range(3) for j in range(3)]
    for b in range(2):
        assert any(torch.equal(cropped[b], w[b]) for w in windows)


def test_normalise_uses_mean_and_std():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    mean = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)
    out = normalise_batch(x, mean, 1 / torch.tensor([0.25, 0.5, 1.0]).view(1, 3, 1, 1), True)
    assert out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)
    assert out[0, :, 0, 0].tolist() == pytest.approx([2.0, 1.0, 0.5])


# ---------------------------------------------------------------- folders


def _write_folder(root: Path, per_class: dict[str, int], val_name: str = "val", size=(20, 24)):
    rng = np.random.default_rng(0)
    for split, factor in (("train", 1), (val_name, 0.5)):
        for ci, (name, count) in enumerate(per_class.items()):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(max(1, int(count * factor))):
                pixels = rng.integers(0, 60, (*size, 3), dtype=np.uint8) + 60 * ci
                ext = "png" if i % 2 else "jpg"
                Image.fromarray(pixels).save(folder / f"{i:03d}.{ext}")
    (root / "train" / "notes.txt").write_text("not an image")


def test_folder_loader_decodes_once_and_caches(tmp_path):
    _write_folder(tmp_path / "ds", {"cat": 6, "dog": 8, "eel": 4})
    first = load_data(f"folder:{tmp_path / 'ds'}", resolution=32)
    assert first.class_names == ["cat", "dog", "eel"] and first.num_classes == 3
    assert len(first.train) == 18 and len(first.val) == 3 + 4 + 2
    assert first.train.images.shape[1:] == (3, 32, 32) and first.resolution == (32, 32)
    assert first.train.labels.bincount().tolist() == [6, 8, 4]
    assert first.from_cache is False and first.info["decoded_images"] == 27
    # class colours rise with the index: decoding really read the pixels
    per_class = [first.train.images[first.train.labels == c].float().mean() for c in range(3)]
    assert per_class[0] < per_class[1] < per_class[2]
    assert Path(first.info["cache_file"]).is_file()

    again = load_data(f"folder:{tmp_path / 'ds'}", resolution=32)
    assert again.from_cache is True and again.info["decoded_images"] == 0
    assert torch.equal(again.train.images, first.train.images) and again.mean == first.mean

    # a new file invalidates the cache
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(tmp_path / "ds/train/cat/new.png")
    changed = load_data(f"folder:{tmp_path / 'ds'}", resolution=32)
    assert changed.from_cache is False and len(changed.train) == 19


def test_folder_balanced_subset_native_size_and_test_split(tmp_path):
    _write_folder(tmp_path / "ds", {"a": 6, "b": 6}, val_name="test")
    d = load_data(f"folder:{tmp_path / 'ds'},subset=4", val_subset=2, seed=1)
    assert d.resolution == (20, 24)  # the first image's size when none is asked for
    assert d.train.labels.bincount().tolist() == [4, 4] and d.val.labels.bincount().tolist() == [
        2,
        2,
    ]
    other = load_data(f"folder:{tmp_path / 'ds'},subset=4", val_subset=2, seed=2)
    assert not torch.equal(d.train.images, other.train.images)  # the subset is drawn with the seed


def test_folder_streaming_matches_memory(tmp_path):
    _write_folder(tmp_path / "ds", {"a": 5, "b": 5})
    mem = load_data(f"folder:{tmp_path / 'ds'},mode=memory", resolution=32)
    stream = load_data(f"folder:{tmp_path / 'ds'},mode=stream", resolution=32)
    assert not stream.in_memory and mem.in_memory
    stream.train.workers = 0  # keep the test in-process
    xs, ys = zip(*stream.train.batches(4))
    assert torch.equal(torch.cat(xs), mem.train.images) and torch.equal(
        torch.cat(ys), mem.train.labels
    )
    assert stream.mean == pytest.approx(mem.mean, abs=1e-4)


def test_missing_or_malformed_folders(tmp_path):
    with pytest.raises(EdgeExploreError, match=f"data folder {tmp_path / 'nope'} does not exist"):
        load_data(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "flat" / "cat").mkdir(parents=True)
    with pytest.raises(EdgeExploreError, match="must hold train/ and val/"):
        load_data(f"folder:{tmp_path / 'flat'}")
    (tmp_path / "empty" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir(parents=True)
    with pytest.raises(EdgeExploreError, match="holds no images"):
        load_data(f"folder:{tmp_path / 'empty'}")
    one = tmp_path / "one"
    _write_folder(one, {"a": 2})
    with pytest.raises(EdgeExploreError, match="one class folder .a.; classification needs at least two"):
        load_data(f"folder:{one}", resolution=32)
    bad = tmp_path / "bad"
    _write_folder(bad, {"a": 2, "b": 2})
    (bad / "train" / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(EdgeExploreError, match="cannot read image .*broken.jpg"):
        load_data(f"folder:{bad}", resolution=32)


# ---------------------------------------------------------------- CIFAR-10


def test_cifar10_missing_archive_is_clear(tmp_path, monkeypatch):
    with pytest.raises(EdgeExploreError, match="CIFAR-10 archive cifar10-jpg.tar.gz not found"):
        load_data(f"cifar10:{tmp_path / 'nowhere.tar.gz'}")


def test_cifar10_subset_from_shared_archive(shared_dir, monkeypatch):
    archive = shared_dir / "data" / "cifar10-jpg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is absent")
    # extraction is shared with other runs (~/.cache), decoded subsets stay in the test's cache
    from edgeexplore.data import folders

    monkeypatch.setattr(folders, "cache_root", lambda: Path.home() / ".cache" / "edgeexplore")
    d = load_data("cifar10", subset=20, val_subset=10, seed=0)
    assert d.class_names[:3] == ["airplane", "automobile", "bird"] and d.num_classes == 10
    assert d.train.labels.bincount().tolist() == [20] * 10 and len(d.val) == 100
    assert d.resolution == (32, 32) and d.hflip is True
    assert d.info["val_dir"].endswith("test")
    assert all(abs(m - ref) < 0.05 for m, ref in zip(d.mean, (0.4913, 0.4821, 0.4465)))
    clear_memory_cache()
    again = load_data("cifar10", subset=20, val_subset=10, seed=0)
    assert again.from_cache is True and again.info["decoded_images"] == 0
    assert torch.equal(again.train.images, d.train.images)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    """A 16-bit grey PNG decodes to the same pixels as its 8-bit original (it was all 255)."""
    rng = np.random.default_rng(0)
    for depth in (8, 16):
        for split in ("train", "val"):
            for ci, name in enumerate(("a", "b")):
                folder = tmp_path / f"ds{depth}" / split / name
                folder.mkdir(parents=True)
                grey = rng.integers(0, 120, (12, 12), dtype=np.uint8) + 120 * ci
                img = (Image.fromarray(grey) if depth == 8
                       else Image.fromarray(grey.astype(np.uint16) * 257))
                img.save(folder / "0.png")
                assert Image.open(folder / "0.png").mode == ("L" if depth == 8 else "I;16")
        rng = np.random.default_rng(0)  # the same pixels for both depths
    eight, sixteen = (load_data(f"folder:{tmp_path / f'ds{d}'}") for d in (8, 16))
    assert eight.train.images.float().mean() > 50
    assert torch.equal(sixteen.train.images, eight.train.images)
    assert torch.equal(sixteen.val.images, eight.val.images)
