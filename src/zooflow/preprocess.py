"""The seed's preprocessing, exactly: torchvision ``Resize(256)`` (short side, PIL bilinear),
``CenterCrop(224)``, ``ToTensor``, ``Normalize(mean, std)``.

`crop_uint8` returns the resized, cropped image as uint8 CHW; `normalize` turns it into the
float32 tensor torchvision produces, bit for bit (same float32 operations in the same order).
Storing the uint8 crop keeps npz files exact and 4x smaller than float32.

Exactness by construction: the resize is the same single ``Image.resize`` call torchvision
makes, then a crop. (Splitting Pillow's two passes to crop in between would be faster, but which
pass runs first is an internal heuristic that changed in Pillow 13, PR #9549; and the ``box=``
argument is read as single-precision floats, which shifts coefficients. Both were tried and
found to differ from torchvision on some image sizes.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class Transform:
    """Short-side resize, center crop and normalisation parameters (0-1 scale, like torchvision)."""

    resize: int = 256
    crop: tuple[int, int] = (224, 224)  # (height, width)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Transform:
        """From `zooflow.models.preprocess_spec` (mmcls 0-255 mean/std -> 0-1, as the seed writes them)."""
        resize = spec["resize"][0] if spec.get("resize") else spec["crop"][0]
        return cls(
            resize=int(resize),
            crop=(int(spec["crop"][0]), int(spec["crop"][1])),
            mean=tuple(round(v / 255, 6) for v in spec["mean"]),
            std=tuple(round(v / 255, 6) for v in spec["std"]),
            interpolation=spec.get("interpolation", "bilinear"),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able parameters (recorded in artifacts and cache keys)."""
        return {
            "resize": self.resize,
            "crop": list(self.crop),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """torchvision's output size for ``Resize(int)``: short side -> resize, long side truncated."""
        if width <= height:
            return self.resize, int(self.resize * height / width)
        return int(self.resize * width / height), self.resize

    def crop_uint8(self, image: Image.Image) -> np.ndarray:
        """Resize + center crop of an RGB image -> uint8 array (3, H, W), identical to torchvision."""
        width, height = image.size
        new_w, new_h = self.resized_size(width, height)
        crop_h, crop_w = self.crop
        top = round((new_h - crop_h) / 2.0)  # torchvision: int(round(...)), Python's round-half-even
        left = round((new_w - crop_w) / 2.0)
        resized = image.resize((new_w, new_h), _FILTERS[self.interpolation])
        cropped = np.asarray(resized, dtype=np.uint8)[top : top + crop_h, left : left + crop_w]
        return np.ascontiguousarray(cropped.transpose(2, 0, 1))

    def normalize(self, crop: np.ndarray) -> np.ndarray:
        """uint8 (3, H, W) -> float32, as ``ToTensor`` then ``Normalize`` compute it."""
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return ((crop.astype(np.float32) / np.float32(255)) - mean) / std


def load_rgb(path: str | Path) -> tuple[Image.Image, str]:
    """Decode an image fully and convert it to RGB like ``Image.convert('RGB')``; returns (image, original mode).

    EXIF orientation is not applied: torchvision's loader does not apply it either.
    """
    with Image.open(path) as image:
        image.load()
        mode = image.mode
        return (image if mode == "RGB" else image.convert("RGB")), mode
