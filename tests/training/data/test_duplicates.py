"""The near-duplicate search: exact against brute force, and linear in the shape of the data."""

from __future__ import annotations

import numpy as np

from training.data.duplicates import image_nodes, near_pairs, resolve_duplicates, text_near_key, text_nodes


def test_near_pairs_match_brute_force_on_planted_neighbours() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 400, dtype=np.int64).astype(np.uint64)
    flips = np.array([1 << int(b) for b in rng.integers(0, 64, 400)], dtype=np.uint64)
    hashes = np.concatenate([base, base ^ flips, base[:50] ^ flips[:50] ^ np.uint64(0b111 << 20)])
    found = {tuple(p) for p in near_pairs(hashes, 3).tolist()}
    distance = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    expected = {(i, j) for i, j in zip(*np.nonzero(distance <= 3), strict=True) if i < j}
    assert found == expected and len(found) >= 400


def test_many_identical_images_collapse_into_one_node_not_pairs() -> None:
    n = 20_000  # blank frames: one hash, colours within tolerance
    hashes = np.zeros(n, dtype=np.uint64)
    colours = np.full((n, 48), 10, dtype=np.uint8) + np.random.default_rng(1).integers(0, 5, (n, 48), dtype=np.uint8)
    nodes = image_nodes(hashes, colours, max_distance=4, colour_tolerance=32)
    assert int(nodes.of_item.max()) == 0 and len(nodes.edges) == 0
    labels = ["blank"] * n
    resolution = resolve_duplicates([str(i) for i in range(n)], labels, [str(i) for i in range(n)], lambda s: nodes)
    assert len(resolution.keep) == n and resolution.near_duplicates == n and len(set(resolution.groups)) == 1


def test_same_hash_other_colour_is_another_node() -> None:
    colours = np.stack([np.full(48, 200), np.full(48, 20), np.full(48, 205)]).astype(np.uint8)
    nodes = image_nodes(np.zeros(3, dtype=np.uint64), colours, 4, 32)
    assert nodes.of_item.tolist() == [0, 1, 0]


def test_templated_texts_are_one_node_each_and_conflicts_drop_the_whole_node() -> None:
    texts = [f"Order {i} shipped" for i in range(3000)] + ["order 7 SHIPPED!"]
    labels = ["info"] * 3000 + ["complaint"]
    keys = [text_near_key(t) for t in texts]
    resolution = resolve_duplicates(texts, labels, texts, lambda s: text_nodes([keys[i] for i in s]))
    assert resolution.keep == [] and len(resolution.dropped) == 3001
    assert all(counter == "conflicting_labels" for _, counter, _ in resolution.dropped)
    assert "labelled 'complaint'" in resolution.dropped[0][2] and "labelled 'info'" in resolution.dropped[-1][2]


def test_grouping_never_misses_a_pair_the_exact_leakage_check_counts() -> None:
    """Nodes are an approximation; the split must still leave no evaluation item near a training item."""
    from training.data.duplicates import count_near_reference
    from training.data.split import stable_split

    rng = np.random.default_rng(3)
    n = 3000
    base = rng.integers(0, 2**63, 600, dtype=np.int64).astype(np.uint64)
    hashes = base[rng.integers(0, 600, n)] ^ np.array([1 << int(b) for b in rng.integers(0, 64, n)], dtype=np.uint64)
    hashes[rng.random(n) < 0.3] = base[0]  # a crowd on one hash
    # colour levels 50 apart with noise up to 30: within the tolerance (32) or just beyond it, so the
    # node approximation is exercised at its edge
    colours = (rng.integers(0, 5, (n, 1)) * 50 + rng.integers(0, 30, (n, 48))).astype(np.uint8)
    labels = ["x"] * n
    names = keys = [str(i) for i in range(n)]
    resolution = resolve_duplicates(names, labels, keys, lambda s: image_nodes(hashes[s], colours[s], 2, 32))
    assert len(resolution.keep) == n
    split = stable_split(labels, resolution.groups, keys, 0.2, 0.2, seed=0)
    assert split.test and split.val
    for part in (split.test, split.val):
        order = split.train + part
        assert count_near_reference(hashes[order], colours[order], len(split.train), 2, 32) == 0


def test_chained_colours_at_the_tolerance_edge_stay_in_one_group() -> None:
    """a is within tolerance of both L and b, which are not of each other: all three must share a split."""
    from training.data.duplicates import count_near_reference
    from training.data.split import stable_split

    triples = 400
    far_apart = np.random.default_rng(5).integers(0, 2**63, triples, dtype=np.int64).astype(np.uint64)
    hashes = np.repeat(far_apart, 3)
    colours = np.tile(np.array([0, 30, 60], dtype=np.uint8)[:, None].repeat(48, axis=1), (triples, 1))
    n = 3 * triples
    keys = labels_keys = [f"k{i}" for i in range(n)]
    resolution = resolve_duplicates(keys, ["x"] * n, labels_keys, lambda s: image_nodes(hashes[s], colours[s], 2, 32))
    split = stable_split(["x"] * n, resolution.groups, keys, 0.2, 0.2, seed=0)
    for part in (split.test, split.val):
        order = split.train + part
        assert count_near_reference(hashes[order], colours[order], len(split.train), 2, 32) == 0


def test_the_near_key_that_places_texts_in_the_split_does_not_move_with_the_tokenizer() -> None:
    """Keys stay on tokenizer 1's reading: a retrain after an upgrade splits the same data the same way, so the
    gate never scores production on test items it learnt from under the old split."""
    from serving.preprocess import standardize

    for text in ("I don’t like it", "फिल्म बहुत अच्छी", "这部电影很好看", "great 😍 film"):
        assert text_near_key(text) == standardize(text, tokenizer=1).replace("'", "")
    only_emoji = [text_near_key(t) for t in ("😍😍", "😡", "👍")]
    assert len(set(only_emoji)) == 3 and "" not in only_emoji  # rules 1 read nothing there: rules 2 key them
