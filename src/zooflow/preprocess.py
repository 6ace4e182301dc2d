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

`Transform.device_dsp` describes the other path, the Vastai card's DSP op: a fixed square resize
with OpenCV bilinear (aspect ratio not kept), a center crop, and mean/std rounded to float16 as
vdsp_params stores them. Comparing the two is how the preprocessing share of the device's
accuracy gap is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


def _triple(values: Any) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in values)
    return r, g, b


@dataclass(frozen=True)
class Transform:
    """Short-side resize, center crop and normalisation parameters (0-1 scale, like torchvision)."""

    resize: int = 256
    crop: tuple[int, int] = (224, 224)  # (height, width)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"  # PIL filter name, or "cv2-bilinear" (OpenCV INTER_LINEAR)
    resize_mode: str = "short-side"  # or "fixed": resize to (resize, resize), aspect ratio not kept
    bgr: bool = False  # mmcls ``to_rgb=False``: the model takes BGR channels (mean/std in that order)

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
            bgr=not spec.get("to_rgb", True),
        )

    @classmethod
    def device_dsp(cls, spec: dict[str, Any]) -> Transform:
        """The card's DSP op for this model (vdsp_params): fixed square OpenCV resize, float16 mean/std."""
        exact = cls.from_spec(spec)
        return cls(
            resize=exact.resize,
            crop=exact.crop,
            mean=_triple(float(np.float16(v)) / 255 for v in spec["mean"]),
            std=_triple(float(np.float16(v)) / 255 for v in spec["std"]),
            interpolation="cv2-bilinear",
            resize_mode="fixed",
            bgr=exact.bgr,  # the DSP's colour conversion (vdsp BGR2RGB) for BGR models
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Transform:
        """Inverse of `as_dict`."""
        return cls(
            resize=int(values["resize"]),
            crop=(int(values["crop"][0]), int(values["crop"][1])),
            mean=_triple(values["mean"]),
            std=_triple(values["std"]),
            interpolation=values["interpolation"],
            resize_mode=values.get("resize_mode", "short-side"),
            bgr=bool(values.get("bgr", False)),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able parameters (recorded in artifacts and cache keys)."""
        values: dict[str, Any] = {
            "resize": self.resize,
            "crop": list(self.crop),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }
        if self.resize_mode != "short-side":  # only when set, so existing keys stay valid
            values["resize_mode"] = self.resize_mode
        if self.bgr:
            values["bgr"] = True
        return values

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """torchvision's output size for ``Resize(int)``: short side -> resize, long side truncated."""
        if self.resize_mode == "fixed":
            return self.resize, self.resize
        if width <= height:
            return self.resize, int(self.resize * height / width)
        return int(self.resize * width / height), self.resize

    def crop_uint8(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """Resize + center crop of an RGB image (PIL, or HWC uint8 for OpenCV) -> uint8 (3, H, W), as torchvision."""
        width, height = image.size if isinstance(image, Image.Image) else (image.shape[1], image.shape[0])
        new_w, new_h = self.resized_size(width, height)
        crop_h, crop_w = self.crop
        top = round((new_h - crop_h) / 2.0)  # torchvision: int(round(...)), Python's round-half-even
        left = round((new_w - crop_w) / 2.0)
        if self.interpolation == "cv2-bilinear":
            import cv2

            resized = cv2.resize(np.asarray(image, dtype=np.uint8), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        else:
            if not isinstance(image, Image.Image):
                image = Image.fromarray(image)
            resized = np.asarray(image.resize((new_w, new_h), _FILTERS[self.interpolation]), dtype=np.uint8)
        if self.resize_mode == "fixed":  # the DSP's crop offset: (resize - crop) // 2
            top, left = (new_h - crop_h) // 2, (new_w - crop_w) // 2
        cropped = resized[top : top + crop_h, left : left + crop_w]
        return np.ascontiguousarray(cropped.transpose(2, 0, 1))

    def normalize(self, crop: np.ndarray) -> np.ndarray:
        """uint8 RGB (3, H, W) -> float32, as ``ToTensor`` then ``Normalize`` compute it (BGR for BGR models)."""
        if self.bgr:
            crop = crop[::-1]
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return ((crop.astype(np.float32) / np.float32(255)) - mean) / std


def load_rgb(path: str | Path | IO[bytes]) -> tuple[Image.Image, str]:
    """Decode an image fully and convert it to RGB like ``Image.convert('RGB')``; returns (image, original mode).

    EXIF orientation is not applied: torchvision's loader does not apply it either.
    """
    with Image.open(path) as image:
        image.load()
        mode = image.mode
        if mode in WIDE_GREY:
            return to_rgb8(image), mode
        return (image if mode == "RGB" else image.convert("RGB")), mode


# PIL's modes for 16-bit (and 32-bit integer) grey images: ``convert("RGB")`` clips their values at 255,
# so a 16-bit PNG came out nearly white; OpenCV (the vastai and dsp formats) keeps the top 8 bits.
WIDE_GREY = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


def to_rgb8(image: Image.Image) -> Image.Image:
    """A 16-bit grey image as 8-bit RGB the way ``cv2.imread`` makes it: each value shifted right by 8."""
    values = np.asarray(image).astype(np.int64)
    grey = np.clip(values >> 8, 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")
