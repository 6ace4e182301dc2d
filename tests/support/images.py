"""Real photographs (bundled with scikit-image) written as JPEG files by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
# eleven real photographs: colour, a stereo pair's left view, three greyscale ones (read as RGB)
PHOTOS_11 = (
    *PHOTOS,
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
    "camera",
    "coins",
    "moon",
)


def photo(name: str) -> Any:
    """The named skimage sample photo as an RGB PIL image."""
    import numpy as np
    import skimage.data
    from PIL import Image

    array = getattr(skimage.data, name)()
    array = array[0] if isinstance(array, tuple) else array  # stereo pairs: the left view
    return Image.fromarray(np.asarray(array)).convert("RGB")


def write_photos(out: Path, names: tuple[str, ...] = PHOTOS) -> list[Path]:
    """Save the named skimage sample photos as RGB JPEGs (quality 90) under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = out / f"{name}.jpg"
        photo(name).save(path, quality=90)
        paths.append(path)
    return paths


def write_crops(out: Path, names: tuple[str, ...], count: int, seed: int, size: int = 224) -> Path:
    """`count` seeded random square crops (35-100 % of the short side, some mirrored) of the photos,
    as a flat ImageNet-layout folder ``out/val`` labelled by photo, with ``out/val_label.txt``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = [photo(n) for n in names]
    val = out / "val"
    val.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        label = i % len(images)
        image = images[label]
        side = rng.uniform(0.35, 1.0) * min(image.size)
        x, y = rng.uniform(0, image.size[0] - side), rng.uniform(0, image.size[1] - side)
        crop = image.crop((int(x), int(y), int(x + side), int(y + side))).resize((size, size), Image.BILINEAR)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        crop.save(val / f"crop_{i:04d}.JPEG", quality=90)
        lines.append(f"crop_{i:04d}.JPEG {label}\n")
    (out / "val_label.txt").write_text("".join(lines))
    return val
