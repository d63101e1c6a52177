"""Generated stand-ins for the benchmarks: small, learnable, deterministic, made with no network.

They let the whole workflow run on a laptop or CI; they are never the benchmark, and every
listing says so. The design and its reasons are in docs/data.md ("Stand-ins").

Each image is a textured patch on a weakly textured background. The class is the texture's
pattern (horizontal, vertical or diagonal stripes, a plaid, concentric rings) times its
spatial frequency (two wavelengths), times, for 20-class stand-ins, the patch's shape (disc
or square). Everything else is nuisance drawn per image: the patch position and size, the
stripe phase, both colours, a background grating of random orientation and frequency, and
pixel noise. Colour therefore says nothing about the class (a linear model on mean colour is
at chance), and the class survives horizontal flips (the diagonal class takes either
diagonal) and translation, so the CIFAR and ImageNet augmentations keep labels valid.
Frequency and shape need receptive fields of different sizes, and pooling blurs the high
frequency away, so candidate operations are not all equal on these data.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from itnas.data.manifest import staging_folder, write_manifest
from itnas.data.registry import DatasetSpec, get_spec
from itnas.errors import UserError
from itnas.files import publish_folder

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
PATTERNS = ("horizontal", "vertical", "diagonal", "plaid", "rings")
SHAPES = ("disc", "square")
# Stripe wavelengths in pixels at 32 px (scaled with the image): low and high frequency.
WAVELENGTHS = (8.0, 3.5)
_CHUNK = 500  # images rendered at once: bounds the float32 temporaries to a few tens of MB


def class_names(num_classes: int) -> list[str]:
    """Human-readable class names, e.g. 'vertical/high' or 'rings/low/disc'."""
    names = []
    for y in range(num_classes):
        name = f"{PATTERNS[y % 5]}/{('low', 'high')[(y // 5) % 2]}"
        if num_classes > 10:
            name += f"/{SHAPES[(y // 10) % 2]}"
        names.append(name)
    return names


def _factors(num_classes: int) -> None:
    if num_classes not in (10, 20):
        raise UserError(f"stand-ins have 10 or 20 classes, not {num_classes}")


def render(labels: np.ndarray, size: int, rng: np.random.Generator, *, contrast=(0.25, 0.45),
           noise: float = 0.08, distractor: float = 0.12, num_classes: int = 10) -> np.ndarray:
    """Draw one image per label: uint8 array (N, size, size, 3).

    Only `rng.random` is used, whose stream NumPy keeps stable across releases, so a seed
    gives the same images on any NumPy >= 1.17 (up to last-bit differences of cos/exp).
    """
    n = len(labels)
    f32 = np.float32

    def u(*shape):
        return rng.random(shape, dtype=f32)

    pattern = labels % 5
    freq = (labels // 5) % 2
    # 10-class stand-ins draw the shape as nuisance; 20-class ones make it part of the class.
    shape = (labels // 10) % 2 if num_classes > 10 else (u(n) < 0.5).astype(np.int64)
    scale = f32(size / 32)
    coords = (np.arange(size, dtype=f32) + f32(0.5))
    yy = coords[None, :, None]
    xx = coords[None, None, :]

    wavelength = np.where(freq == 0, f32(WAVELENGTHS[0]), f32(WAVELENGTHS[1])) * (0.9 + 0.2 * u(n))
    k = (2 * np.pi / (wavelength * scale)).astype(f32)[:, None, None]
    phase = (2 * np.pi * u(n)).astype(f32)[:, None, None]
    sign = np.where(u(n) < 0.5, f32(-1), f32(1))[:, None, None]
    ring_x = (size * (0.2 + 0.6 * u(n)))[:, None, None]
    ring_y = (size * (0.2 + 0.6 * u(n)))[:, None, None]
    texture = np.empty((n, size, size), dtype=f32)
    for p in range(5):
        sel = pattern == p
        if not sel.any():
            continue
        ks, ph = k[sel], phase[sel]
        if p == 0:
            t = np.cos(ks * yy + ph)
        elif p == 1:
            t = np.cos(ks * xx + ph)
        elif p == 2:
            t = np.cos(ks * (xx + sign[sel] * yy) * f32(0.70710677) + ph)
        elif p == 3:
            t = np.cos(ks * xx * f32(0.70710677) + ph) * np.cos(ks * yy * f32(0.70710677) + 1.7 * ph)
        else:
            r = np.sqrt((xx - ring_x[sel]) ** 2 + (yy - ring_y[sel]) ** 2)
            t = np.cos(ks * r + ph)
        texture[sel] = t

    # The patch: a soft-edged disc or square (of equal area) at a random place and size.
    cx = (size * (0.3 + 0.4 * u(n)))[:, None, None]
    cy = (size * (0.3 + 0.4 * u(n)))[:, None, None]
    radius = (size * (0.25 + 0.12 * u(n)))[:, None, None]
    dx, dy = xx - cx, yy - cy
    dist = np.where(shape[:, None, None] == 0, np.sqrt(dx * dx + dy * dy),
                    np.maximum(np.abs(dx), np.abs(dy)) / f32(0.886))
    mask = 1 / (1 + np.exp(-(radius - dist) / (0.6 * scale)))

    # Background: a weak grating of random orientation and wavelength, so the network has to
    # find the patch instead of reading the texture anywhere.
    theta = (np.pi * u(n))[:, None, None]
    kb = (2 * np.pi / ((3 + 8 * u(n)) * scale))[:, None, None]
    bphase = (2 * np.pi * u(n))[:, None, None]
    back_tex = np.cos(kb * (xx * np.cos(theta) + yy * np.sin(theta)) + bphase)

    c1, c2, bg = u(n, 3), u(n, 3), u(n, 3)
    amp = contrast[0] + (contrast[1] - contrast[0]) * u(n)
    polarity = np.where(c1 >= c2, f32(1), f32(-1))
    fg = ((c1 + c2) / 2)[:, None, None, :] + \
        (amp[:, None] * polarity)[:, None, None, :] * texture[..., None]
    back = bg[:, None, None, :] + distractor * back_tex[..., None]
    img = back + mask[..., None] * (fg - back)
    img += (noise * np.sqrt(3)) * (2 * u(n, size, size, 3) - 1)  # uniform noise, std `noise`
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_split(spec: DatasetSpec, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 NHWC, labels int64) of one split, a pure function of the spec and split."""
    _factors(spec.num_classes)
    n = spec.splits[split]
    # Each split has its own stream so that train and test never share an image.
    rng = np.random.default_rng([spec.seed, list(spec.splits).index(split), GENERATOR_VERSION])
    labels = np.arange(n, dtype=np.int64) % spec.num_classes
    labels = labels[np.argsort(rng.random(n), kind="stable")]
    options = {k: spec.extra[k] for k in ("contrast", "noise", "distractor") if k in spec.extra}
    images = np.empty((n, spec.stored_size, spec.stored_size, 3), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        images[start:stop] = render(labels[start:stop], spec.stored_size, rng,
                                    num_classes=spec.num_classes, **options)
    return images, labels


def generate(name: str, root: str | Path) -> Path:
    """Write the stand-in `name` to `<root>/<name>/` (arrays, info, manifest); returns the path.

    The folder appears under its final name only once complete. Generating again writes
    byte-identical files.
    """
    spec = get_spec(name)
    if not spec.standin:
        raise UserError(f"'{name}' is a real benchmark, not a stand-in; use `itnas data fetch`")
    root = Path(root)
    started = time.perf_counter()
    with staging_folder(root, name) as stage:
        for split in spec.splits:
            images, labels = make_split(spec, split)
            np.save(stage / f"{split}_images.npy", images, allow_pickle=False)
            np.save(stage / f"{split}_labels.npy", labels, allow_pickle=False)
        info = {
            "dataset": name,
            "standin": True,
            "label": f"STAND-IN (synthetic, not {spec.benchmark})",
            "generator": f"itnas.data.synthetic v{GENERATOR_VERSION}",
            "seed": spec.seed,
            "classes": class_names(spec.num_classes),
            "splits": dict(spec.splits),
        }
        (stage / "info.json").write_text(json.dumps(info, indent=2) + "\n")
        write_manifest(stage, spec)
        final = publish_folder(stage, root / name)
    log.info("generated %s in %.1f s at %s", spec.describe(), time.perf_counter() - started,
             final)
    return final
