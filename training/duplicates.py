"""Exact and near duplicates: perceptual hashes for images, a normalised form for texts, and the one
rule both tasks follow (drop conflicting labels, remove exact copies, group near copies).

The near-duplicate search over 64-bit hashes is multi-index hashing: split the hash into
``max_distance + 1`` chunks; by the pigeonhole principle two hashes within that Hamming distance
agree exactly on at least one chunk, so only items sharing a chunk value are compared (in numpy),
never all pairs.

    >>> near_pairs(np.array([0b1011, 0b1010, 1 << 40], dtype=np.uint64), max_distance=2).tolist()
    [[0, 1]]
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import imagehash
import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from serving.preprocess import flatten_alpha, standardize

_DIGITS = re.compile(r"\d+")
# Rows of one comparison block in the chunk search: bounds memory when many hashes share a chunk.
_BLOCK = 2048


def phash64(image: Image.Image) -> int:
    """64-bit DCT perceptual hash of the picture as the model sees it (alpha flattened onto white).

    Re-encoding, resizing and grey-to-RGB conversion leave it (nearly) unchanged.
    """
    bits = imagehash.phash(flatten_alpha(image)).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def colour_signature(image: Image.Image) -> np.ndarray:
    """A 4x4 RGB thumbnail (48 bytes). The perceptual hash ignores colour and brightness; this does not,
    so a red and a green traffic light of the same shape are not near duplicates."""
    small = flatten_alpha(image).convert("RGB").resize((4, 4), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8).reshape(-1)


def near_image_pairs(hashes: np.ndarray, colours: np.ndarray, max_distance: int, colour_tolerance: int) -> np.ndarray:
    """Pairs within ``max_distance`` hash bits whose colour signatures differ by at most ``colour_tolerance``."""
    pairs = near_pairs(hashes, max_distance)
    if len(pairs) == 0:
        return pairs
    a = colours[pairs[:, 0]].astype(np.int16)
    b = colours[pairs[:, 1]].astype(np.int16)
    return pairs[np.abs(a - b).max(axis=1) <= colour_tolerance]


def text_near_key(text: str) -> str:
    """The normalised form two near-duplicate texts share: case, whitespace, punctuation and digits ignored."""
    return _DIGITS.sub("0", standardize(text).replace("'", ""))


def _chunks(hashes: np.ndarray, parts: int) -> list[np.ndarray]:
    bounds = np.linspace(0, 64, parts + 1).astype(int)
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        mask = np.uint64((1 << (hi - lo)) - 1)
        out.append((hashes >> np.uint64(lo)) & mask)
    return out


def near_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """All index pairs (i < j) whose 64-bit hashes differ in at most ``max_distance`` bits, as (k, 2)."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    found: list[np.ndarray] = []
    for chunk in _chunks(hashes, max_distance + 1):
        order = np.argsort(chunk, kind="stable")
        values = chunk[order]
        starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
        ends = np.r_[starts[1:], len(values)]
        for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):
            found.extend(_pairs_within(order[s:e], hashes, max_distance))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found), axis=0)


def _pairs_within(members: np.ndarray, hashes: np.ndarray, max_distance: int) -> list[np.ndarray]:
    """Close pairs among items that share one chunk value, compared in blocks of rows."""
    members = np.sort(members)
    h = hashes[members]
    out = []
    for start in range(0, len(members), _BLOCK):
        block = h[start : start + _BLOCK]
        distance = np.bitwise_count(block[:, None] ^ h[None, :])
        rows, cols = np.nonzero(distance <= max_distance)
        rows = rows + start
        keep = rows < cols
        out.append(np.stack([members[rows[keep]], members[cols[keep]]], axis=1))
    return out


def count_crossing(pairs: np.ndarray, n_reference: int) -> int:
    """Given pairs over [reference; query] items, how many query items pair with a reference item."""
    crossing = pairs[(pairs[:, 0] < n_reference) & (pairs[:, 1] >= n_reference)]
    return len(np.unique(crossing[:, 1]))


def bucket_pairs(keys: Sequence[str]) -> np.ndarray:
    """Every pair (i < j) of items with equal keys, as (k, 2)."""
    buckets: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        buckets[key].append(i)
    pairs = [(a, b) for members in buckets.values() for k, a in enumerate(members) for b in members[k + 1 :]]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


@dataclass
class Resolution:
    """What the duplicate rule decided: the kept items (input order), their group keys, and the drops."""

    keep: list[int] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    near_duplicates: int = 0
    dropped: list[tuple[int, str, str]] = field(default_factory=list)  # (index, report counter, reason)


def resolve_duplicates(
    names: Sequence[str],
    labels: Sequence[str],
    exact_keys: Sequence[str],
    find_near: Callable[[list[int]], np.ndarray],
    same_as: Callable[[int, int], str] = lambda i, j: "same content as",
) -> Resolution:
    """Apply the duplicate rule to items ``0..n-1``.

    1. Exact copies (equal ``exact_keys``): under different labels every copy is dropped as a
       conflicting label; otherwise the first is kept and the rest removed as duplicates.
    2. Near copies among the survivors (pairs from ``find_near``, given survivor indices, returning
       pairs of positions in that list): an item with a near copy under another label is dropped;
       near copies under one label are kept and share a group, so they never straddle splits.
    The group key is the smallest exact key in the group: it depends on the items, not their order.
    """
    result = Resolution()
    buckets: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(exact_keys):
        buckets[key].append(i)
    survivors: list[int] = []
    for members in buckets.values():
        first = members[0]
        if len({labels[i] for i in members}) > 1:
            for i in members:
                other = next(j for j in members if labels[j] != labels[i])
                result.dropped.append(
                    (i, "conflicting_labels", f"{same_as(i, other)} {names[other]} labelled {labels[other]!r}")
                )
            continue
        survivors.append(first)
        result.dropped.extend((i, "duplicates_removed", f"{same_as(i, first)} {names[first]}") for i in members[1:])
    survivors.sort()

    pairs = np.asarray(find_near(survivors), dtype=np.int64).reshape(-1, 2)
    conflict: dict[int, int] = {}
    same_label = []
    for a, b in pairs.tolist():
        i, j = survivors[a], survivors[b]
        if labels[i] != labels[j]:
            conflict.setdefault(i, j)
            conflict.setdefault(j, i)
        else:
            same_label.append((a, b))
    for i, other in sorted(conflict.items()):
        result.dropped.append((i, "conflicting_labels", f"near duplicate of {names[other]} labelled {labels[other]!r}"))
    kept_pos = [p for p, i in enumerate(survivors) if i not in conflict]
    linked = [(a, b) for a, b in same_label if survivors[a] not in conflict and survivors[b] not in conflict]
    n = len(survivors)
    rows = np.array([a for a, _ in linked], dtype=np.int64)
    cols = np.array([b for _, b in linked], dtype=np.int64)
    graph = coo_matrix((np.ones(len(linked)), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component[kept_pos], minlength=n) if kept_pos else np.zeros(n, int)
    group_key: dict[int, str] = {}
    for p in kept_pos:
        c = int(component[p])
        key = exact_keys[survivors[p]]
        group_key[c] = min(group_key.get(c, key), key)
    result.keep = [survivors[p] for p in kept_pos]
    result.groups = [group_key[int(component[p])] for p in kept_pos]
    result.near_duplicates = int(sum(1 for p in kept_pos if sizes[component[p]] > 1))
    result.dropped.sort()
    return result
