"""The bundled sample data: scikit-learn's handwritten digits as PNG folders, and a generated text corpus.

Nothing is downloaded: the digits ship inside scikit-learn. The text corpus is seeded, so every run
writes the same file. Its classes are learnable but not keyword-separable: every adjective and "not"
appears in every class; the class is carried by negation and word order.

    >>> paths = write_sample_data(Path("/tmp/kiln-sample"))  # doctest: +SKIP
    >>> sorted(p.name for p in paths.values())  # doctest: +SKIP
    ['images', 'texts.csv']
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
from PIL import Image

SUBJECTS = [
    "the delivery",
    "the support team",
    "the app",
    "the refund",
    "the checkout",
    "the battery",
    "the screen",
    "the update",
    "the price",
    "the packaging",
    "the manual",
    "the installer",
    "the courier",
    "the website",
    "the charger",
    "my order",
    "the new version",
    "the replacement",
]
POSITIVE = ["fast", "helpful", "reliable", "easy", "clear", "friendly", "great", "smooth", "quick", "solid"]
NEGATIVE = ["slow", "confusing", "broken", "rude", "late", "buggy", "expensive", "noisy", "flimsy", "useless"]
INTENSIFIERS = ["", "", "really ", "very ", "quite ", "pretty "]
OPENERS = ["", "", "", "honestly ", "to be fair ", "overall ", "so ", "well ", "this week ", "again "]
CLOSERS = ["", "", "", " for me", " as usual", " today", " this time", " in my experience"]
ENDINGS = ["", ".", "!", "...", "?", " :)", " :("]

# {s}: subject, {p}: positive adjective, {n}: negative adjective, {a}: either, {i}: intensifier
TEMPLATES = {
    "praise": [
        "{s} was {i}{p}",
        "{s} was not {n} at all",
        "{s} is {i}{p}",
        "{s} is never {n}",
        "i think {s} was {i}{p}",
        "{s} turned out {i}{p}",
        "{s} was not {n}, it was {p}",
    ],
    "complaint": [
        "{s} was {i}{n}",
        "{s} was not {p} at all",
        "{s} is {i}{n}",
        "{s} is never {p}",
        "i think {s} was {i}{n}",
        "{s} turned out {i}{n}",
        "{s} was not {p}, it was {n}",
    ],
    "question": [
        "was {s} {i}{a}",
        "is {s} {i}{a}",
        "was {s} not {a}",
        "is {s} ever {a}",
        "i wonder if {s} is {a}",
        "does anyone know if {s} was {a}",
        "is {s} {p} or {n}",
    ],
}
CLASS_SIZES = {"praise": 260, "complaint": 220, "question": 180}


def write_digit_images(directory: Path) -> int:
    """scikit-learn's 1,797 8x8 digits as greyscale PNGs under ``directory/<digit>/``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = directory / str(int(target))
        folder.mkdir(parents=True, exist_ok=True)
        grey = np.clip(pixels * (255.0 / 16.0), 0, 255).astype(np.uint8)
        Image.fromarray(grey, mode="L").save(folder / f"digit_{i:04d}.png")
    return len(digits.images)


def _sentence(rng: random.Random, label: str) -> str:
    template = rng.choice(TEMPLATES[label])
    body = template.format(
        s=rng.choice(SUBJECTS),
        p=rng.choice(POSITIVE),
        n=rng.choice(NEGATIVE),
        a=rng.choice(POSITIVE + NEGATIVE),
        i=rng.choice(INTENSIFIERS),
    )
    text = rng.choice(OPENERS) + body + rng.choice(CLOSERS) + rng.choice(ENDINGS)
    return text[0].upper() + text[1:] if rng.random() < 0.6 else text


def generate_texts(seed: int = 7) -> list[tuple[str, str]]:
    """Unique (text, label) rows, shuffled; sizes per class from CLASS_SIZES (mildly imbalanced)."""
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    for label, size in CLASS_SIZES.items():
        count = 0
        while count < size:
            text = _sentence(rng, label)
            if text.lower() not in seen:
                seen.add(text.lower())
                rows.append((text, label))
                count += 1
    rng.shuffle(rows)
    return rows


def write_texts_csv(path: Path, seed: int = 7) -> int:
    """Write texts.csv (header ``text,label``) with a little realistic dirt that cleaning removes."""
    rows = generate_texts(seed)
    dirty = rows + rows[:6] + [("", "praise"), ("   ", "complaint"), ("was the app fast", "")]
    random.Random(seed + 1).shuffle(dirty)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(dirty)
    return len(dirty)


def write_sample_data(directory: Path) -> dict[str, Path]:
    images, texts = directory / "images", directory / "texts.csv"
    write_digit_images(images)
    write_texts_csv(texts)
    return {"images": images, "texts": texts}
