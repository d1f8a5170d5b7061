"""The tf.data input pipeline: serving's preprocessing bit for bit, augmentation on the training split only,
the on-disk cache, class weights for imbalanced data, and text length that follows the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_CONFIG, make_image_folder, make_texts, write_csv
from training.config import load_config
from training.data.clean import clean_images, clean_texts
from training.data.features import class_weights, make_spec, to_inputs
from training.fit.augment import rehash_bigrams
from training.fit.pipeline import eval_batches, training_batches

HEAVY_AUGMENT = {
    "enabled": True,
    "rotation": 0.3,
    "zoom": 0.3,
    "translation": 0.3,
    "contrast": 0.5,
    "brightness": 0.3,
    "horizontal_flip": True,
    "vertical_flip": True,
    "mixup_alpha": 0.4,
    "token_dropout": 0.5,
    "random_swap": 0.5,
}


def _cfg(**overrides: dict):  # type: ignore[no-untyped-def]
    import yaml

    base = yaml.safe_load(TINY_CONFIG)
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value}
    return load_config(None, base)


def _collect(ds) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


@pytest.fixture()
def images(tmp_path: Path):  # type: ignore[no-untyped-def]
    return clean_images(make_image_folder(tmp_path / "images", per_class=8))


def test_eval_batches_match_serving_preprocessing_and_are_never_augmented(images) -> None:  # type: ignore[no-untyped-def]
    cfg = _cfg(augment=HEAVY_AUGMENT)
    spec = make_spec(images, images.label_names, cfg)
    expected = to_inputs(images, spec)  # serving.preprocess, image by image
    for _ in range(2):  # every pass, not just the first
        x, y = _collect(eval_batches(images, spec, cfg))
        assert np.array_equal(x, expected)  # bit-identical: no augmentation, same scaling
    assert np.array_equal(y.argmax(1), [spec.labels.index(label) for label in images.labels])


def test_training_batches_are_augmented_and_shuffled(images) -> None:  # type: ignore[no-untyped-def]
    spec = make_spec(images, images.label_names, _cfg())
    plain = to_inputs(images, spec)
    x, y = _collect(training_batches(images, spec, _cfg(augment={"enabled": False})))
    # without augmentation the training split holds exactly the items, in another order
    assert sorted(map(bytes, x)) == sorted(map(bytes, plain)) and not np.array_equal(x, plain)
    xa, ya = _collect(training_batches(images, spec, _cfg(augment=HEAVY_AUGMENT)))
    assert xa.shape == plain.shape and xa.min() >= 0 and xa.max() <= 1
    assert not {bytes(row) for row in xa} & {bytes(row) for row in plain}  # every image changed
    assert np.allclose(ya.sum(1), 1) and ((ya > 0) & (ya < 1)).any()  # mixup blends labels


def test_disk_cache_holds_resized_images_and_gives_the_same_items(images, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"
    cfg = _cfg(augment={"enabled": False}, data={"image_cache": "disk", "cache_dir": str(cache)})
    spec = make_spec(images, images.label_names, cfg)
    first, _ = _collect(training_batches(images, spec, cfg))
    assert any(p.name.endswith(".index") for p in cache.iterdir())
    second, _ = _collect(training_batches(images, spec, cfg))  # served from the cache
    plain = to_inputs(images, spec)
    assert sorted(map(bytes, first)) == sorted(map(bytes, second)) == sorted(map(bytes, plain))


def test_text_augmentation_only_in_training(tmp_path: Path) -> None:
    texts = clean_texts(write_csv(tmp_path / "t.csv", make_texts(20)))
    cfg = _cfg(augment=HEAVY_AUGMENT)
    spec = make_spec(texts, texts.label_names, cfg)
    expected = to_inputs(texts, spec)
    assert np.array_equal(_collect(eval_batches(texts, spec, cfg))[0], expected)
    trained, _ = _collect(training_batches(texts, spec, cfg))
    assert (trained != 0).sum() < (expected != 0).sum()  # tokens dropped
    length, deep = spec.max_length, spec.deep_length
    assert spec.ngram_buckets and np.array_equal(trained[:, length:deep], rehash_bigrams(trained[:, :length], spec))
    assert np.array_equal(rehash_bigrams(expected[:, :length], spec), expected[:, length:deep])  # = serving's ids
    # character n-gram ids (the linear half's) are left as they were
    assert spec.char_buckets and np.array_equal(np.sort(trained[:, deep:], 0), np.sort(expected[:, deep:], 0))


def test_class_weights_follow_imbalance_and_config() -> None:
    names = ("big", "small")
    labels = ["big"] * 40 + ["small"] * 10
    auto = _cfg().train
    weights = class_weights(labels, names, auto)
    assert weights is not None and weights[1] == pytest.approx(4 * weights[0]) and weights[0] == pytest.approx(50 / 80)
    assert class_weights(["big"] * 20 + ["small"] * 10, names, auto) is None  # 2x: not imbalanced
    assert class_weights(labels, names, _cfg(train={"class_weights": "none"}).train) is None
    assert class_weights(["big"] * 20 + ["small"] * 10, names, _cfg(train={"class_weights": "balanced"}).train)


def test_text_length_follows_the_data(tmp_path: Path) -> None:
    rows = [(" ".join(f"w{(i * 7 + k) % 50}" for k in range(100 + i)), "a" if i % 2 else "b") for i in range(40)]
    texts = clean_texts(write_csv(tmp_path / "long.csv", rows))
    auto = _cfg(text_model={"max_length": None})
    spec = make_spec(texts, texts.label_names, auto)
    assert 130 <= spec.max_length <= 140  # 95th percentile of 100..139 tokens
    capped = _cfg(text_model={"max_length": None, "max_length_limit": 64})
    assert make_spec(texts, texts.label_names, capped).max_length == 64
    assert make_spec(texts, texts.label_names, _cfg()).max_length == 16  # TINY_CONFIG fixes it


def test_cached_training_batches_mix_classes_even_with_a_tiny_shuffle_buffer(images) -> None:  # type: ignore[no-untyped-def]
    cfg = _cfg(augment={"enabled": False}, data={"image_cache": "memory", "shuffle_buffer": 2})
    spec = make_spec(images, images.label_names, cfg)
    first_batch = next(iter(training_batches(images, spec, cfg)))[1].numpy()
    assert len(set(first_batch.argmax(1).tolist())) > 1  # folders list one class after another
