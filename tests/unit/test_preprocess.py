"""The model format's preprocessing is bit-identical to torchvision's transform on the same file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zooflow.preprocess import Transform, load_rgb


@pytest.fixture(scope="module")
def torchvision_reference():  # type: ignore[no-untyped-def]
    import torchvision.transforms as T

    transform = T.Compose(
        [T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    )

    def run(path: Path) -> np.ndarray:
        with open(path, "rb") as fh:  # torchvision's ImageFolder loader: open, convert('RGB')
            image = Image.open(fh).convert("RGB")
        return transform(image).numpy()

    return run


def _odd_sizes(tmp: Path) -> list[Path]:
    """Shapes that exercise rounding: exact 256 short side, 1-pixel odd crops, extreme aspect, tiny."""
    rng = np.random.default_rng(3)
    paths = []
    for width, height in [
        (256, 256),
        (256, 300),
        (301, 256),
        (257, 999),
        (1000, 230),
        (64, 48),
        (225, 224),
        (4000, 300),
    ]:
        path = tmp / f"img_{width}x{height}.jpg"
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path, quality=85)
        paths.append(path)
    return paths


def test_bit_identical_to_torchvision(
    torchvision_reference, demo_small: Path, photos: list[Path], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    transform = Transform()
    images = sorted((demo_small / "val").glob("*.JPEG")) + photos + _odd_sizes(tmp_path)
    modes = set()
    for path in images:
        image, mode = load_rgb(path)
        modes.add(mode)
        ours = transform.normalize(transform.crop_uint8(image))
        expected = torchvision_reference(path)
        assert ours.dtype == np.float32 and ours.shape == (3, 224, 224)
        assert np.array_equal(ours, expected), f"{path.name} differs from torchvision"
    assert {"L", "CMYK", "RGB"} <= modes  # greyscale and CMYK files were among them


def test_from_mmcls_spec_matches_the_seed_normalisation() -> None:
    spec = {"resize": [256, -1], "crop": [224, 224], "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}
    transform = Transform.from_spec(spec)
    assert transform.mean == (0.485, 0.456, 0.406) and transform.std == (0.229, 0.224, 0.225)
    assert transform == Transform()


def test_resized_size_truncates_the_long_side_like_torchvision() -> None:
    assert Transform().resized_size(500, 375) == (341, 256)
    assert Transform().resized_size(375, 500) == (256, 341)
    assert Transform().resized_size(256, 256) == (256, 256)


def test_device_dsp_path_is_a_fixed_opencv_resize_with_fp16_constants(photos: list[Path]) -> None:
    import cv2

    spec = {"resize": [256, -1], "crop": [224, 224], "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}
    dsp = Transform.device_dsp(spec)
    assert dsp.mean[0] * 255 == pytest.approx(123.6875) and dsp.std[2] * 255 == pytest.approx(57.375)
    image, _ = load_rgb(photos[1])  # chelsea: 451x300, not square
    expected = cv2.resize(np.asarray(image), (256, 256), interpolation=cv2.INTER_LINEAR)[16:240, 16:240]
    np.testing.assert_array_equal(dsp.crop_uint8(image), expected.transpose(2, 0, 1))
    tensor = dsp.normalize(dsp.crop_uint8(image))
    np.testing.assert_allclose(tensor[0], (expected[..., 0] - 123.6875) / 58.40625, rtol=1e-5, atol=1e-5)
    framework = Transform.from_spec(spec)
    assert np.abs(framework.normalize(framework.crop_uint8(image)) - tensor).mean() > 0.1  # aspect is not kept
    assert Transform.from_dict(dsp.as_dict()) == dsp and "resize_mode" not in framework.as_dict()
