"""Exact and near duplicates: perceptual hashes for images, a normalised form for texts, and the one
rule both tasks follow (drop the same item under different labels, remove exact copies, group near copies).

Near copies are found in two steps that stay near-linear however the data is shaped:

1. *Nodes*: items that are certainly the same picture (equal perceptual hash and colour signature
   within tolerance of the node's first item) or the same normalised text share a node; a thousand
   blank frames are one node, not a million pairs.
2. *Edges* between image nodes whose hashes differ in at most ``max_distance`` bits, found by
   multi-index hashing: split the 64-bit hash into ``max_distance + 1`` chunks; by the pigeonhole
   principle two such hashes agree exactly on at least one chunk, so only nodes sharing a chunk value
   are compared (in numpy), never all pairs.

    >>> near_pairs(np.array([0b1011, 0b1010, 1 << 40], dtype=np.uint64), max_distance=2).tolist()
    [[0, 1]]
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain

import imagehash
import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from serving.preprocess import flatten_alpha, standardize

_DIGITS = re.compile(r"\d+")
# Rows of one comparison block in the chunk search: bounds memory when many nodes share a chunk.
_BLOCK = 1024


def phash64(image: Image.Image) -> int:
    """64-bit DCT perceptual hash of the picture as the model sees it (alpha flattened onto white).

    Re-encoding, resizing and grey-to-RGB conversion leave it (nearly) unchanged.
    """
    bits = imagehash.phash(flatten_alpha(image).convert("RGB")).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def colour_signature(image: Image.Image) -> np.ndarray:
    """A 4x4 RGB thumbnail (48 bytes). The perceptual hash ignores colour and brightness; this does not,
    so a red and a green traffic light of the same shape are not near duplicates."""
    small = flatten_alpha(image).convert("RGB").resize((4, 4), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8).reshape(-1)


# Two pictures are the same item when their 16x16 RGB thumbnails differ by at most this mean absolute difference
# (0-255): a re-encoded or resized copy stays well below it; different garments or digits whose perceptual
# hashes agree are far above it.
SAME_PICTURE_MAD = 2.0
THUMB_SIDE = 16


def pixel_thumbnail(image: Image.Image) -> np.ndarray:
    """A 16x16 RGB thumbnail (768 bytes, box-filtered) for the pixel-level same-picture test."""
    small = flatten_alpha(image).convert("RGB").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8).reshape(-1)


class SamePictures:
    """The pixel-level same-picture test over many thumbnails at once: mean absolute difference of the 16x16
    RGB thumbnails within ``tolerance``. The whole-picture means and the block means (4x4 blocks) screen first:
    each one's absolute difference is a lower bound of the pixels' mean absolute difference, so most look-alikes
    are rejected with one subtraction, and large clusters of one hash stay cheap."""

    def __init__(self, thumbnails: np.ndarray, tolerance: float = SAME_PICTURE_MAD):
        self.thumbnails = thumbnails.astype(np.int16)
        side, blocks = THUMB_SIDE, 4
        cells = self.thumbnails.reshape(len(thumbnails), blocks, side // blocks, blocks, side // blocks, 3)
        self.blocks = cells.mean(axis=(2, 4)).reshape(len(thumbnails), -1)
        self.means = self.blocks.mean(axis=1)
        self.tolerance = tolerance

    def __call__(self, i: int, others: np.ndarray) -> np.ndarray:
        # Each screen is a lower bound of the next: the whole-picture means, the 48 block means, the pixels.
        out = np.zeros(len(others), dtype=bool)
        near = others[np.abs(self.means[others] - self.means[i]) <= self.tolerance]
        close = near[np.abs(self.blocks[near] - self.blocks[i]).mean(axis=1) <= self.tolerance]
        if len(close):
            same = close[np.abs(self.thumbnails[close] - self.thumbnails[i]).mean(axis=1) <= self.tolerance]
            out[np.isin(others, same)] = True
        return out


def text_near_key(text: str) -> str:
    """The normalised form two near-duplicate texts share: case, whitespace, punctuation and digits ignored.

    Read under tokenizer 1 whatever the model's rules: the key places each item in the split, so a new tokenizer
    must not move items between training and test (the gate would score production on items it learnt from).
    A text rules 1 read as nothing (emoji only) is keyed by rules 2, so such texts are not all one item."""
    key = standardize(text, tokenizer=1) or standardize(text)
    return _DIGITS.sub("0", key.replace("'", ""))


def _chunks(hashes: np.ndarray, parts: int) -> list[np.ndarray]:
    bounds = np.linspace(0, 64, parts + 1).astype(int)
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        mask = np.uint64((1 << (hi - lo)) - 1)
        out.append((hashes >> np.uint64(lo)) & mask)
    return out


def near_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """All index pairs (i < j) whose 64-bit hashes differ in at most ``max_distance`` bits, as (k, 2).

    Meant for distinct values (nodes): equal hashes should be collapsed first, see ``image_nodes``.
    """
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


@dataclass
class Nodes:
    """Items collapsed into nodes of certain copies, plus near edges between nodes."""

    of_item: np.ndarray  # node index of each item
    edges: np.ndarray  # (k, 2) node pairs that are near copies


def image_nodes(hashes: np.ndarray, colours: np.ndarray, max_distance: int, colour_tolerance: int) -> Nodes:
    """Nodes of images with one hash whose colours lie within half the tolerance of the node's first
    image (so any two members are within the tolerance of each other), and edges between nodes within
    ``max_distance`` hash bits whose first images' colours differ by at most twice the tolerance.

    The edge bound is conservative: two images within the tolerance of each other always end up in one
    node or in linked nodes, so grouping never misses a pair the leakage check would count.
    ``max_distance < 0`` turns near copies off: only identical hashes and colours share a node.
    """
    of_item = np.zeros(len(hashes), dtype=np.int64)
    node_hash: list[int] = []
    node_colour: list[np.ndarray] = []
    values, inverse = np.unique(np.asarray(hashes, dtype=np.uint64), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(inverse, minlength=len(values)))]
    radius = colour_tolerance // 2 if max_distance >= 0 else 0
    for v, value in enumerate(values):
        leaders: list[int] = []  # node indices opened for this hash value
        for item in order[bounds[v] : bounds[v + 1]]:
            colour = colours[item].astype(np.int16)
            match = next((n for n in leaders if np.abs(node_colour[n] - colour).max() <= radius), None)
            if match is None:
                match = len(node_hash)
                leaders.append(match)
                node_hash.append(int(value))
                node_colour.append(colour)
            of_item[item] = match
    edges = np.zeros((0, 2), dtype=np.int64)
    if max_distance >= 0 and node_hash:
        edges = near_pairs(np.array(node_hash, dtype=np.uint64), max_distance)
        if len(edges):
            palette = np.stack(node_colour)
            differ = np.abs(palette[edges[:, 0]] - palette[edges[:, 1]]).max(axis=1)
            edges = edges[differ <= 2 * colour_tolerance]
    return Nodes(of_item, edges)


def count_near_reference(
    hashes: np.ndarray,
    colours: np.ndarray,
    n_reference: int,
    max_distance: int,
    colour_tolerance: int,
    labels: Sequence[str] | None = None,
) -> int:
    """How many images after the first ``n_reference`` have a reference image within ``max_distance``
    hash bits and ``colour_tolerance`` colour (and, given ``labels``, under the same label: look-alikes under
    other labels are different items): the exact pairwise relation, item by item (no nodes)."""
    if max_distance < 0:  # near search off: only identical hashes and colours count
        max_distance, colour_tolerance = 0, 0
    hashes = np.asarray(hashes, dtype=np.uint64)
    colours = colours.astype(np.int16)
    values, inverse = np.unique(hashes, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(inverse, minlength=len(values)))]
    members = [order[bounds[v] : bounds[v + 1]] for v in range(len(values))]
    has_reference = np.zeros(len(values), dtype=bool)
    has_reference[inverse[:n_reference]] = True
    has_query = np.zeros(len(values), dtype=bool)
    has_query[inverse[n_reference:]] = True
    candidates = [(v, v) for v in np.flatnonzero(has_reference & has_query).tolist()]
    for a, b in near_pairs(values, max_distance).tolist():
        candidates += [(u, w) for u, w in ((a, b), (b, a)) if has_reference[u] and has_query[w]]
    tags = np.unique(np.asarray(labels), return_inverse=True)[1] if labels is not None else None
    hit = np.zeros(len(hashes), dtype=bool)
    for u, w in candidates:
        reference = members[u][members[u] < n_reference]
        query = members[w][members[w] >= n_reference]
        for start in range(0, len(query), 64):
            block = query[start : start + 64]
            gap = np.abs(colours[block][:, None, :] - colours[reference][None, :, :]).max(axis=2)
            near = gap <= colour_tolerance
            if tags is not None:
                near &= tags[block][:, None] == tags[reference][None, :]
            hit[block] |= near.any(axis=1)
    return int(hit[n_reference:].sum())


def text_nodes(keys: Sequence[str]) -> Nodes:
    """One node per normalised text; texts have no edges between nodes."""
    index: dict[str, int] = {}
    of_item = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)
    return Nodes(of_item, np.zeros((0, 2), dtype=np.int64))


@dataclass
class Resolution:
    """What the duplicate rule decided: the kept items (input order), their group ids, and the drops."""

    keep: list[int] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    near_duplicates: int = 0
    dropped: list[tuple[int, str, str]] = field(default_factory=list)  # (index, report counter, reason)


def _exact(
    names: Sequence[str], labels: Sequence[str], keys: Sequence[str], same_as: Callable[[int, int], str]
) -> tuple[list[int], list[tuple[int, str, str]]]:
    """Survivors of the exact-copy rule and the items it drops."""
    buckets: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        buckets[key].append(i)
    survivors: list[int] = []
    dropped: list[tuple[int, str, str]] = []
    for members in buckets.values():
        first = members[0]
        if len({labels[i] for i in members}) > 1:
            for i in members:
                other = next(j for j in members if labels[j] != labels[i])
                reason = f"{same_as(i, other)} {names[other]} labelled {labels[other]!r}"
                dropped.append((i, "conflicting_labels", reason))
            continue
        survivors.append(first)
        dropped.extend((i, "duplicates_removed", f"{same_as(i, first)} {names[first]}") for i in members[1:])
    return sorted(survivors), dropped


def resolve_duplicates(
    names: Sequence[str],
    labels: Sequence[str],
    exact_keys: Sequence[str],
    find_nodes: Callable[[list[int]], Nodes],
    same_as: Callable[[int, int], str] = lambda i, j: "same content as",
    same_items: Callable[[int, np.ndarray], np.ndarray] | None = None,
) -> Resolution:
    """Apply the duplicate rule to items ``0..n-1``.

    1. Exact copies (equal ``exact_keys``): under different labels every copy is dropped as a
       conflicting label; otherwise the first is kept and the rest removed as duplicates.
    2. Near copies among the survivors (``find_nodes`` gets the survivor indices and returns their
       nodes and near edges). Only the *same item* under another label is a conflict: members of a node, or
       of linked nodes, that ``same_items(i, others)`` marks as the same item as ``i`` (for images a pixel-level
       measure; None: every near copy is the same item, as for texts, whose nodes are one normalised text).
       Look-alikes that are not the same item (different shirts whose perceptual hashes agree) are kept: they
       are the hard examples on the class boundary. Near copies under one label share a group, so they never straddle
       splits; near neighbours under different labels are different items and are not grouped.
    """
    survivors, dropped = _exact(names, labels, exact_keys, same_as)
    result = Resolution(dropped=dropped)
    nodes = find_nodes(survivors)
    n_nodes = int(nodes.of_item.max()) + 1 if len(survivors) else 0
    members: list[list[int]] = [[] for _ in range(n_nodes)]
    for position, node in enumerate(nodes.of_item.tolist()):
        members[node].append(survivors[position])
    neighbours: dict[int, list[int]] = defaultdict(list)
    for a, b in nodes.edges.tolist():
        neighbours[a].append(b)
        neighbours[b].append(a)
    for node, items in enumerate(members):
        candidates = np.array(list(chain(items, *(members[o] for o in neighbours[node]))), dtype=np.int64)
        candidate_labels = np.array([labels[j] for j in candidates], dtype=object)
        if len(set(candidate_labels)) < 2:
            continue
        for i in items:
            others = candidates[candidate_labels != labels[i]]
            same = np.ones(len(others), dtype=bool) if same_items is None else same_items(i, others)
            if same.any():
                other = int(others[np.argmax(same)])
                reason = f"same item as {names[other]} labelled {labels[other]!r}"
                result.dropped.append((i, "conflicting_labels", reason))
    dropped_items = {i for i, counter, _ in result.dropped if counter == "conflicting_labels"}
    result.keep = [i for i in survivors if i not in dropped_items]
    result.groups, result.near_duplicates = _groups(result.keep, labels, exact_keys, members, nodes.edges)
    result.dropped.sort()
    return result


def _groups(
    kept: list[int], labels: Sequence[str], keys: Sequence[str], members: list[list[int]], edges: np.ndarray
) -> tuple[list[str], int]:
    """Split groups: kept items of one label that share a node or linked nodes (connected components over
    (node, label) vertices). Named by the first item's key; returns the groups and how many items share one."""
    kept_set = set(kept)
    vertex: dict[tuple[int, str], int] = {}
    of_item: dict[int, int] = {}
    for node, items in enumerate(members):
        for i in items:
            if i in kept_set:
                of_item[i] = vertex.setdefault((node, labels[i]), len(vertex))
    links = [
        (vertex[(a, label)], vertex[(b, label)])
        for a, b in edges.tolist()
        for label in {labels[i] for i in members[a]}
        if (a, label) in vertex and (b, label) in vertex
    ]
    rows = np.array([u for u, _ in links], dtype=np.int64)
    cols = np.array([w for _, w in links], dtype=np.int64)
    graph = coo_matrix((np.ones(len(links)), (rows, cols)), shape=(len(vertex), len(vertex)))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount([component[of_item[i]] for i in kept], minlength=max(len(vertex), 1))
    first_key: dict[int, str] = {}
    for i in kept:  # a group is named by its first item's key: only its identity matters
        first_key.setdefault(int(component[of_item[i]]), keys[i])
    groups = [first_key[int(component[of_item[i]])] for i in kept]
    return groups, int(sum(1 for i in kept if sizes[component[of_item[i]]] > 1))
