"""ImageNet-1k's class ids: the canonical list of its 1000 WordNet synsets, shipped as package data.

A synset folder (``val/n01443537/...``) is labelled by its id in this list (goldfish is 1), never by
its position among the folders present: on a subset of the classes, positions give every image a
wrong label. The list and its source are in ``imagenet1k_synsets.txt`` beside this module.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

SYNSET_RE = re.compile(r"^n\d{8}$")
_FILE = "imagenet1k_synsets.txt"


@functools.cache
def _rows() -> tuple[tuple[str, str], ...]:
    text = resources.files("zooflow").joinpath(_FILE).read_text(encoding="utf-8")
    rows = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            synset, _, name = line.partition(" ")
            rows.append((synset, name))
    return tuple(rows)


def synsets() -> tuple[str, ...]:
    """The 1000 synset ids; position = class id."""
    return tuple(s for s, _ in _rows())


@functools.cache
def synset_ids() -> dict[str, int]:
    """Synset id -> class id."""
    return {s: i for i, (s, _) in enumerate(_rows())}


def class_names() -> tuple[str, ...]:
    """The 1000 class names as mmcls spells them (``ImageNet.CLASSES``); position = class id."""
    return tuple(n for _, n in _rows())
