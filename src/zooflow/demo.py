"""Generated ImageNet-layout data for offline runs (`zooflow demo-data`, `zooflow run --demo`).

Real JPEG files of varied sizes and orientations (landscape, portrait, square, small, wide),
with textures so that decoding costs what a photo costs; one greyscale and one CMYK file, as
ImageNet itself has. Images are synthetic, labelled as such: accuracy on them means nothing.
Class names are ImageNet's (read from mmcls's dataset definition).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from zooflow import imagenet
from zooflow.config import DemoDataSpec
from zooflow.store import ArtifactRef, Store

STAGE = "demo-data"
STAGE_VERSION = "2"  # 2: synset folders are the classes' real ImageNet-1k synsets
SIZES = ((500, 375), (375, 500), (400, 400), (200, 150), (640, 360), (333, 500), (500, 333), (281, 500))
GREY_INDEX = 0  # first image: greyscale (mode L)
CMYK_INDEX = 1  # second image: CMYK


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """ImageNet's 1000 class names from mmcls's ``ImageNet.CLASSES`` (parsed, not imported: no torch)."""
    spec = importlib.util.find_spec("mmcls")
    if spec is not None and spec.submodule_search_locations:
        source = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "imagenet.py"
        if source.is_file():
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "CLASSES" for t in node.targets
                ):
                    names = ast.literal_eval(node.value)
                    if isinstance(names, (list, tuple)) and len(names) == 1000:
                        return tuple(str(n) for n in names)
    return tuple(f"class {i}" for i in range(1000))


def _texture(rng: np.random.Generator, width: int, height: int, label: int) -> np.ndarray:
    """A photo-like RGB texture: class-tinted waves, a gradient and noise (separable, so cheap)."""
    fx, fy, phase = rng.uniform(3, 25), rng.uniform(3, 25), rng.uniform(0, 6.3)
    cols = 60 * np.sin(np.arange(width, dtype=np.float32) / fx + phase) + np.linspace(0, 40, width, dtype=np.float32)
    rows = 60 * np.cos(np.arange(height, dtype=np.float32) / fy)
    hue = np.array([(label * 37) % 255, (label * 91) % 255, (label * 53) % 255], np.float32) * 0.5 + 64
    base = (rows[:, None] + cols[None, :])[..., None] + hue
    noise = rng.integers(-24, 25, size=(height, width, 3), dtype=np.int16)
    return np.asarray(np.clip(base.astype(np.int16) + noise, 0, 255), dtype=np.uint8)


def write_demo_dataset(
    out: Path,
    *,
    classes: int,
    per_class: int,
    layout: Literal["flat", "synset"] = "flat",
    seed: int = 0,
) -> dict[str, Any]:
    """Write ``out/val/...``, ``out/val_label.txt`` (flat) and ``out/imagenet.txt``; returns a summary."""
    if not 1 <= classes <= 1000 or per_class < 1:
        raise ValueError("classes must be 1..1000 and per_class >= 1")
    val = out / "val"
    val.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = [c for c in range(classes) for _ in range(per_class)]
    order = rng.permutation(len(labels))  # flat ImageNet val interleaves classes
    label_lines, modes = [], {"RGB": 0, "L": 0, "CMYK": 0}
    for number, position in enumerate(order, start=1):
        label = labels[position]
        width, height = SIZES[int(rng.integers(len(SIZES)))]
        image = Image.fromarray(_texture(rng, width, height, label))
        mode = "L" if number - 1 == GREY_INDEX else "CMYK" if number - 1 == CMYK_INDEX else "RGB"
        if mode != "RGB":
            image = image.convert(mode)
        modes[mode] += 1
        name = f"ILSVRC2012_val_{number:08d}.JPEG"
        if layout == "synset":
            folder = val / imagenet.synsets()[label]  # the class's real ImageNet-1k synset
            folder.mkdir(exist_ok=True)
            image.save(folder / name, quality=90)
        else:
            image.save(val / name, quality=90)
            label_lines.append(f"{name} {label}")
    if layout == "flat":
        (out / "val_label.txt").write_text("\n".join(label_lines) + "\n")
    (out / "imagenet.txt").write_text("\n".join(imagenet_class_names()) + "\n")  # line = class id, all classes
    return {
        "images": len(labels),
        "classes": classes,
        "per_class": per_class,
        "layout": layout,
        "modes": modes,
        "seed": seed,
    }


def ensure_demo_dataset(store: Store, spec: DemoDataSpec, *, seed: int) -> tuple[Path, ArtifactRef]:
    """The demo dataset as a store artifact (made once per parameters), and its local folder."""
    params = {**spec.model_dump(), "seed": seed, "stage_version": STAGE_VERSION}
    key = hashlib.sha256(("demo-data" + json.dumps(params, sort_keys=True)).encode()).hexdigest()
    with store.lock(f"memo:{key}"):  # concurrent runs: one generates, the others wait and reuse it
        ref = store.recall(key) or _make_demo_dataset(store, spec, seed=seed, params=params, key=key)
    return store.directory(ref), ref


def _make_demo_dataset(store: Store, spec: DemoDataSpec, *, seed: int, params: dict[str, Any], key: str) -> ArtifactRef:
    with store.staging(STAGE) as staged:
        summary = write_demo_dataset(
            staged, classes=spec.classes, per_class=spec.per_class, layout=spec.layout, seed=seed
        )
        ref = store.commit(
            staged,
            kind="dataset",
            name=f"demo/dataset-{spec.classes}x{spec.per_class}-{spec.layout}",
            stage=STAGE,
            stage_version=STAGE_VERSION,
            params=params,
            meta={
                **summary,
                "synthetic": True,
                "warning": "generated textures, not photographs: accuracy means nothing",
            },
        )
    return store.memoize(key, ref)
