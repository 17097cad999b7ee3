"""The built-in synthetic task: which texture fills which large shape.

Every image holds one large **key object**: a shape (a disc or a ring; with more than 12 classes
also a square, a square frame and a cross) 12-22 units wide in a 32-unit frame, filled with one
of six binary textures (horizontal, vertical, diagonal and anti-diagonal stripes, a checkerboard,
dots) in two random colours, with a random period and phase. The class is the pair (texture,
shape): with ``classes=10`` the five textures ``hstripes`` .. ``checker`` times ``disc`` and
``ring``. So:

* telling the textures apart is local: a few pixels of stripes or dots are enough;
* telling a disc from a ring is global: both are made of the same texture with background
  around, their edges are almost straight at the scale of a small receptive field (radii of
  3-11 units), and untextured rings and discs among the distractors put holes and arcs
  everywhere. A bag of local features (a small receptive field, then global pooling) recovers
  the texture but only partly the shape (from statistics such as edge length per textured area):
  measured, 67% against 96% for a CNN of the same kind whose last layer sees the whole image;
* nothing depends on absolute position (the object is placed anywhere it fits), so a pyramid
  with a global-average-pool head -- EdgeViT's macro -- can learn it, unlike an ordered
  left/right relation.

Distractors keep it from being solved by a colour, an area or an edge count: two or three
smaller **decoy** patches (squares, discs or rings 4-7 units wide) of *other* textures, one or two
untextured shapes (discs, rings, squares) in random colours, a background of random colour with
a random gradient, and Gaussian pixel noise. The key object is drawn last, so decoys can be
partly hidden by it. A weak optional **colour hint** (``hint``, default 0): with that probability
the key object's foreground colour is drawn near its texture's hint colour.

Geometry is defined in a 32-unit frame and rendered at any resolution, so the task is the same
at 32x32 and at 224x224. Generation is deterministic in the seed (numpy PCG64 streams
``[seed, 0]`` for training and ``[seed, 1]`` for validation).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError

#: Names of the textures, in the order of their index.
TEXTURES = ("hstripes", "vstripes", "diagonal", "antidiagonal", "checker", "dots")
#: Names of the key object's shapes; the first two (disc, ring) differ only globally.
SHAPES = ("disc", "ring", "square", "frame", "cross")
FRAME = 32.0  # geometry is specified in this canonical frame and scaled to the resolution
NOISE_STD = 0.08
PERIOD_MIN, PERIOD_MAX = 3.0, 4.5
# key object: outer radius (half width) in frame units, and ring/frame width
KEY_RADIUS = (6.0, 11.0)
RING_WIDTH = (3.5, 6.0)
DECOY_RADIUS = (2.0, 3.5)
MAX_CLASSES = len(TEXTURES) * len(SHAPES)


def shapes_for(num_classes: int) -> int:
    """How many shapes ``num_classes`` classes use: two (disc, ring) up to 12 classes."""
    return max(2, -(-num_classes // len(TEXTURES)))


def class_pairs(num_classes: int) -> list[tuple[int, int]]:
    """The (texture, shape) index pair of each class, shapes varying fastest.

    With up to 12 classes every texture comes as a disc and as a ring next to each other, so the
    classes are couples that share a texture and differ only in the global shape.
    """
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ConfigError(
            f"synthetic data: classes must be between 2 and {MAX_CLASSES}, not {num_classes}"
        )
    n_shapes = shapes_for(num_classes)
    pairs = [(t, s) for t in range(len(TEXTURES)) for s in range(n_shapes)]
    return pairs[:num_classes]


def class_names(num_classes: int) -> list[str]:
    return [f"{TEXTURES[t]}-{SHAPES[s]}" for t, s in class_pairs(num_classes)]


def _texture(kind: int, u: np.ndarray, v: np.ndarray, period: float, phase: float) -> np.ndarray:
    """Binary mask of texture ``kind`` at frame coordinates (u: x, v: y)."""
    if kind == 0:
        return ((v + phase) / period) % 1.0 < 0.5
    if kind == 1:
        return ((u + phase) / period) % 1.0 < 0.5
    if kind == 2:
        return ((u + v + phase) / (period * 1.4142)) % 1.0 < 0.5
    if kind == 3:
        return ((u - v + phase) / (period * 1.4142)) % 1.0 < 0.5
    if kind == 4:
        cell = period / 2
        return (np.floor((u + phase) / cell) + np.floor((v + phase) / cell)) % 2 == 0
    # dots: discs on a square grid
    du = ((u + phase) % period) - period / 2
    dv = ((v + phase) % period) - period / 2
    return du * du + dv * dv < (0.3 * period) ** 2


def _shape(kind: int, du: np.ndarray, dv: np.ndarray, radius: float, width: float) -> np.ndarray:
    """Mask of shape ``kind`` centred at the origin of (du, dv), ``radius`` its half width."""
    if kind in (0, 1):  # disc, ring
        r2 = du * du + dv * dv
        inside = r2 < radius * radius
        return inside & (r2 >= (radius - width) ** 2) if kind == 1 else inside
    cheb = np.maximum(np.abs(du), np.abs(dv))
    if kind == 2:  # square
        return cheb < radius
    if kind == 3:  # square frame
        return (cheb < radius) & (cheb >= radius - width)
    # cross: two bars of the ring width
    return (cheb < radius) & (np.minimum(np.abs(du), np.abs(dv)) < width / 2)


#: Each texture's hint colour: with probability ``hint`` the key object's foreground is drawn
#: near it, a first-order cue for experiments on how models use colour.
HINT_COLOURS = np.array(
    [
        [0.9, 0.15, 0.15],
        [0.15, 0.85, 0.15],
        [0.2, 0.3, 0.95],
        [0.95, 0.9, 0.1],
        [0.9, 0.2, 0.9],
        [0.1, 0.9, 0.9],
    ]
)
HINT_JITTER = 0.15
DEFAULT_HINT = 0.0


def _two_colours(
    rng: np.random.Generator, hint_colour: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Two random colours far enough apart for the texture to be visible."""
    while True:
        if hint_colour is not None:
            a = np.clip(hint_colour + rng.uniform(-HINT_JITTER, HINT_JITTER, 3), 0, 1)
        else:
            a = rng.random(3)
        b = rng.random(3)
        if np.abs(a - b).mean() > 0.3:
            return a, b


def _paint(
    img: np.ndarray,
    rng: np.random.Generator,
    mask: np.ndarray,
    texture: int,
    u: np.ndarray,
    v: np.ndarray,
    hint: float = 0.0,
) -> None:
    """Fill ``mask`` with ``texture`` in random colours, period and phase."""
    fg, bg = _two_colours(rng, HINT_COLOURS[texture] if rng.random() < hint else None)
    pattern = _texture(texture, u, v, rng.uniform(PERIOD_MIN, PERIOD_MAX), rng.uniform(0, 5))
    img[mask & pattern] = fg
    img[mask & ~pattern] = bg


def generate(
    count: int,
    num_classes: int,
    resolution: tuple[int, int],
    seed: int,
    stream: int = 0,
    hint: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` images (uint8 [N, 3, H, W]) and labels (int64 [N]), balanced over classes.

    ``stream`` separates the train (0) and validation (1) sets drawn from the same seed.
    """
    pairs = class_pairs(num_classes)
    n_shapes = shapes_for(num_classes)
    rng = np.random.default_rng([seed, stream])
    labels = np.arange(count) % num_classes
    rng.shuffle(labels)
    h, w = resolution
    # pixel centres in frame units, along each axis
    ys = (np.arange(h) + 0.5) * FRAME / h
    xs = (np.arange(w) + 0.5) * FRAME / w
    v_grid, u_grid = np.meshgrid(ys, xs, indexing="ij")
    images = np.empty((count, h, w, 3), dtype=np.float32)
    for i, label in enumerate(labels):
        img = images[i]
        texture, shape = pairs[label]
        # background: a random colour with a gentle linear gradient in a random direction
        base = rng.random(3)
        angle = rng.random() * 2 * np.pi
        ramp = (np.cos(angle) * u_grid + np.sin(angle) * v_grid) / FRAME - 0.5
        img[:] = base + (0.3 * rng.random() * ramp)[..., None]
        # untextured distractors: their edges and holes look like the key object's, locally
        for _ in range(rng.integers(1, 3)):
            radius = rng.uniform(2.0, 6.0)
            cx, cy = rng.uniform(0, FRAME, 2)
            kind = int(rng.integers(0, 4))
            mask = _shape(kind, u_grid - cx, v_grid - cy, radius, rng.uniform(1.5, radius))
            img[mask] = rng.random(3)
        # textured decoys of other textures: small, so "which texture" needs the largest region
        others = [t for t in range(len(TEXTURES)) if t != texture]
        for _ in range(rng.integers(2, 4)):
            radius = rng.uniform(*DECOY_RADIUS)
            cx, cy = rng.uniform(radius, FRAME - radius, 2)
            kind = int(rng.integers(0, n_shapes))
            mask = _shape(kind, u_grid - cx, v_grid - cy, radius, rng.uniform(1.5, radius))
            _paint(img, rng, mask, int(rng.choice(others)), u_grid, v_grid)
        # the key object, anywhere it fits
        radius = rng.uniform(*KEY_RADIUS)
        width = min(rng.uniform(*RING_WIDTH), radius - 2.5)
        cx, cy = rng.uniform(radius, FRAME - radius, 2)
        mask = _shape(shape, u_grid - cx, v_grid - cy, radius, width)
        _paint(img, rng, mask, texture, u_grid, v_grid, hint)
        img += rng.normal(0.0, NOISE_STD, img.shape).astype(np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    pixels = (
        torch.from_numpy(np.rint(images * 255).astype(np.uint8)).permute(0, 3, 1, 2).contiguous()
    )
    return pixels, torch.from_numpy(labels.astype(np.int64))
