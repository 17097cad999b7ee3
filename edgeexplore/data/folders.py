"""Image folders (ImageFolder layout), the CIFAR-10 archive, and the decoded-tensor cache.

A folder dataset is ``ROOT/train/<class>/<image>`` plus ``ROOT/val/<class>/...`` (or ``test/``).
When the decoded images fit under the memory limit (:data:`DEFAULT_MAX_DECODED_GB`, override
with ``$EDGEEXPLORE_MAX_DECODED_GB`` or the spec's ``mode=``), both splits are decoded once into
uint8 tensors and saved under the cache folder, keyed by the file listing (paths, sizes, mtimes),
resolution, subset sizes and seed; the next trial or process loads that file instead of decoding
JPEGs again. Larger datasets stream through a torch DataLoader with worker processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import EdgeExploreError
from ..files import atomic_torch_save
from .bundle import Batch, TensorSplit, _order, channel_stats, num_batches

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff", ".gif")
#: Decoded train+val size above which a folder is streamed instead of held in memory. 4 GiB
#: holds CIFAR-10 at 128x128 or ~25 images per class of ImageNet at 224, and leaves room for
#: several worker processes on a 16 GiB machine.
DEFAULT_MAX_DECODED_GB = 4.0
CACHE_VERSION = 2  # 2: 16-bit grey images scaled to 8 bits (1 clipped them to 255)
CIFAR10_ARCHIVE = "cifar10-jpg.tar.gz"
REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    """$EDGEEXPLORE_CACHE, else $XDG_CACHE_HOME/edgeexplore, else ~/.cache/edgeexplore."""
    if env := os.environ.get("EDGEEXPLORE_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgeexplore"


def max_decoded_bytes() -> int:
    raw = os.environ.get("EDGEEXPLORE_MAX_DECODED_GB", str(DEFAULT_MAX_DECODED_GB))
    try:
        return int(float(raw) * 2**30)
    except ValueError:
        raise EdgeExploreError(
            f"EDGEEXPLORE_MAX_DECODED_GB must be a number of GiB, not {raw!r}"
        ) from None


# ---------------------------------------------------------------- listing and subsets


@dataclass
class Listing:
    """The image files of one split, grouped by class index."""

    files: list[Path]
    labels: list[int]


def find_splits(root: Path) -> tuple[Path, Path]:
    if not root.exists():
        raise EdgeExploreError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise EdgeExploreError(f"data folder {root} is not a directory")
    train = root / "train"
    val = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if not train.is_dir() or val is None:
        raise EdgeExploreError(
            f"data folder {root} must hold train/ and val/ (or test/) subfolders of class folders"
        )
    return train, val


def _class_dirs(split: Path) -> list[str]:
    return sorted(p.name for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        Path(e.path)
        for e in os.scandir(folder)
        if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS)
    )


def list_split(
    split: Path, classes: list[str], per_class: int | None, seed: int, salt: int
) -> Listing:
    """Files of ``split``, optionally a per-class balanced random subset of ``per_class`` images."""
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        folder = split / name
        found = _images_in(folder) if folder.is_dir() else []
        if not found and salt == 0:
            raise EdgeExploreError(
                f"class folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        if per_class is not None and per_class < len(found):
            rng = np.random.default_rng([seed, salt, index])
            keep = np.sort(rng.choice(len(found), per_class, replace=False))
            found = [found[i] for i in keep]
        files += found
        labels += [index] * len(found)
    if not files:
        raise EdgeExploreError(f"{split} holds no images of the classes found in train/")
    return Listing(files, labels)


def listing_digest(*listings: Listing) -> str:
    """Changes when a file is added, removed, resized or rewritten."""
    h = hashlib.sha256()
    for listing in listings:
        for path, label in zip(listing.files, listing.labels):
            st = path.stat()
            h.update(f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


# ---------------------------------------------------------------- decoding


def load_image(path: Path, resolution: tuple[int, int] | None) -> np.ndarray:
    """RGB uint8 [H, W, 3]; resized so it covers ``resolution``, then centre-cropped to it."""
    try:
        with Image.open(path) as im:
            if im.mode.startswith("I"):
                # 16-bit grey (PNG opens as "I;16" or "I"): convert() clips every value above 255
                # to white instead of scaling, so scale 0..65535 to 0..255 here.
                grey = np.rint(np.asarray(im, dtype=np.float64) / 257.0).clip(0, 255)
                im = Image.fromarray(grey.astype(np.uint8), "L")
            im = im.convert("RGB")
            if resolution is not None and im.size != (resolution[1], resolution[0]):
                h, w = resolution
                scale = max(h / im.height, w / im.width)
                size = (max(w, round(im.width * scale)), max(h, round(im.height * scale)))
                im = im.resize(size, Image.BILINEAR, reducing_gap=3.0)
                left, top = (size[0] - w) // 2, (size[1] - h) // 2
                im = im.crop((left, top, left + w, top + h))
            return np.array(im, dtype=np.uint8)  # a writable copy (torch warns on read-only)
    except (OSError, ValueError) as exc:
        raise EdgeExploreError(f"cannot read image {path}: {exc}") from None


def image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except OSError as exc:
        raise EdgeExploreError(f"cannot read image {path}: {exc}") from None


def decode_all(
    files: list[Path], resolution: tuple[int, int], workers: int | None = None
) -> torch.Tensor:
    """Decode ``files`` into one uint8 tensor [N, 3, H, W] (threads: PIL releases the GIL)."""
    h, w = resolution
    out = np.empty((len(files), h, w, 3), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = load_image(files[i], resolution)

    workers = workers or min(8, os.cpu_count() or 1)
    if workers > 1 and len(files) > 64:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, range(len(files)), chunksize=256))
    else:
        for i in range(len(files)):
            work(i)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------- streaming


class _FolderDataset(torch.utils.data.Dataset):
    def __init__(self, files: list[Path], labels: torch.Tensor, resolution: tuple[int, int]):
        self.files, self.labels, self.resolution = files, labels, resolution

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Batch:
        pixels = torch.from_numpy(load_image(self.files[i], self.resolution)).permute(2, 0, 1)
        return pixels, self.labels[i]


class StreamSplit:
    """A split decoded on the fly by DataLoader workers (for datasets too big for memory)."""

    def __init__(self, listing: Listing, resolution: tuple[int, int], workers: int | None = None):
        self.files = listing.files
        self.labels = torch.tensor(listing.labels, dtype=torch.long)
        self.resolution = resolution
        self.workers = min(8, os.cpu_count() or 1) if workers is None else workers

    def __len__(self) -> int:
        return len(self.files)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        device: torch.device | None = None,
    ) -> Iterator[Batch]:
        order = _order(len(self), shuffle, generator)[
            : num_batches(len(self), batch_size, drop_last) * batch_size
        ]
        loader = torch.utils.data.DataLoader(
            _FolderDataset(self.files, self.labels, self.resolution),
            batch_size=batch_size,
            sampler=order.tolist(),
            num_workers=self.workers,
            pin_memory=device is not None and device.type == "cuda",
            persistent_workers=False,
        )
        for x, y in loader:
            if device is not None:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            yield x, y


# ---------------------------------------------------------------- folder datasets


@dataclass
class FolderData:
    train: TensorSplit | StreamSplit
    val: TensorSplit | StreamSplit
    classes: list[str]
    resolution: tuple[int, int]
    mean: tuple
    std: tuple
    from_cache: bool
    info: dict


def load_folder(
    root: Path,
    resolution: tuple[int, int] | None,
    subset: int | None,
    val_subset: int | None,
    seed: int,
    mode: str = "auto",
) -> FolderData:
    """Load an ImageFolder-layout dataset (see the module docstring for caching and streaming)."""
    started = time.perf_counter()
    root = root.expanduser().resolve()
    train_dir, val_dir = find_splits(root)
    classes = _class_dirs(train_dir)
    if not classes:
        raise EdgeExploreError(f"{train_dir} holds no class folders")
    train_list = list_split(train_dir, classes, subset, seed, 0)
    val_list = list_split(val_dir, classes, val_subset, seed, 1)
    if len(classes) < 2:  # one class: every model scores 100% and nothing can be compared
        raise EdgeExploreError(f"{train_dir} holds one class folder ({classes[0]}); "
                               "classification needs at least two")
    if resolution is None:
        # the first image's size; others are resized (cover + centre crop) to it
        resolution = image_size(train_list.files[0])
    h, w = resolution
    decoded_bytes = (len(train_list.files) + len(val_list.files)) * 3 * h * w
    if mode == "auto":
        mode = "memory" if decoded_bytes <= max_decoded_bytes() else "stream"
    info = {"train_dir": str(train_dir), "val_dir": str(val_dir), "mode": mode, "decoded_images": 0}

    if mode == "stream":
        train, val = StreamSplit(train_list, resolution), StreamSplit(val_list, resolution)
        # statistics from a seeded sample of up to 512 training images
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(train_list.files), min(512, len(train_list.files)), replace=False)
        mean, std = channel_stats(decode_all([train_list.files[i] for i in pick], resolution))
        info["load_seconds"] = round(time.perf_counter() - started, 3)
        return FolderData(train, val, classes, resolution, mean, std, False, info)

    key = json.dumps(
        {
            "v": CACHE_VERSION,
            "root": str(root),
            "listing": listing_digest(train_list, val_list),
            "resolution": [h, w],
            "subset": subset,
            "val_subset": val_subset,
            "seed": seed,
        },
        sort_keys=True,
    )
    cache_file = (
        cache_root()
        / "decoded"
        / f"{root.name}-{h}x{w}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    )
    info["cache_file"] = str(cache_file)
    blob = None
    if cache_file.is_file():
        try:
            blob = torch.load(cache_file, weights_only=True)
            if blob.get("key") != key:
                blob = None
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, AttributeError):
            # a corrupt or foreign file: decode again and overwrite it
            blob = None
    from_cache = blob is not None
    if blob is None:
        train_x = decode_all(train_list.files, resolution)
        val_x = decode_all(val_list.files, resolution)
        mean, std = channel_stats(train_x)
        blob = {
            "key": key,
            "train_images": train_x,
            "train_labels": torch.tensor(train_list.labels, dtype=torch.long),
            "val_images": val_x,
            "val_labels": torch.tensor(val_list.labels, dtype=torch.long),
            "mean": list(mean),
            "std": list(std),
        }
        info["decoded_images"] = len(train_list.files) + len(val_list.files)
        try:
            atomic_torch_save(blob, cache_file)
        except OSError as exc:  # a read-only cache only costs time
            info["cache_error"] = str(exc)
    info["load_seconds"] = round(time.perf_counter() - started, 3)
    return FolderData(
        TensorSplit(blob["train_images"], blob["train_labels"]),
        TensorSplit(blob["val_images"], blob["val_labels"]),
        classes,
        resolution,
        tuple(blob["mean"]),
        tuple(blob["std"]),
        from_cache,
        info,
    )


# ---------------------------------------------------------------- CIFAR-10 archive


def find_cifar10_archive(explicit: str | None = None) -> Path:
    """The archive: an explicit path, $EDGEEXPLORE_DATA, or <repo>/../shared/data/."""
    if explicit:  # an explicit path is the only place to look
        candidates = [Path(explicit).expanduser()]
    elif env := os.environ.get("EDGEEXPLORE_DATA"):
        candidates = [Path(env).expanduser()]
    else:
        candidates = [REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for cand in candidates:
        path = cand / CIFAR10_ARCHIVE if cand.is_dir() else cand
        if path.is_file() or (path.is_dir() and (path / "train").is_dir()):
            return path
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise EdgeExploreError(
        f"CIFAR-10 archive {CIFAR10_ARCHIVE} not found (looked in {looked}); "
        "set EDGEEXPLORE_DATA to its path or use 'cifar10:PATH'"
    )


def extract_cifar10(archive: Path) -> tuple[Path, float]:
    """Extract the archive once into the cache; returns the folder and the seconds it took."""
    if archive.is_dir():  # already an extracted ImageFolder tree
        return archive, 0.0
    st = archive.stat()
    target = cache_root() / f"cifar10-jpg-{st.st_size}"
    if (target / ".complete").is_file():
        return target, 0.0
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extract-"))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        (tmp / ".complete").write_text(str(archive))
        try:
            os.replace(tmp, target)
        except OSError:
            # another process finished first: use its copy
            if not (target / ".complete").is_file():
                raise
    except (OSError, tarfile.TarError) as exc:
        raise EdgeExploreError(f"cannot extract {archive} into {target}: {exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target, time.perf_counter() - started
