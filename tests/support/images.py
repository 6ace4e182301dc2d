"""Real photographs (bundled with scikit-image) written as JPEG files by the tests."""

from __future__ import annotations

from pathlib import Path

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def write_photos(out: Path, names: tuple[str, ...] = PHOTOS) -> list[Path]:
    """Save the named skimage sample photos as RGB JPEGs (quality 90) under `out`."""
    import numpy as np
    import skimage.data
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        array = np.asarray(getattr(skimage.data, name)())
        image = Image.fromarray(array).convert("RGB")
        path = out / f"{name}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths
