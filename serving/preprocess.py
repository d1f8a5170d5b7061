"""Preprocessing shared by training and serving (numpy + Pillow only, never TensorFlow).

Training calls these same functions to build its arrays, so a served model sees exactly the
inputs it was trained on. The spec that drives them is saved with every model version.

    >>> spec = TextSpec(labels=("a", "b"), vocabulary=("", "[UNK]", "good"), max_length=4)
    >>> encode_texts(["Good, GOOD!"], spec).tolist()
    [[2, 2, 0, 0]]
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import struct
import unicodedata
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import regex
from PIL import Image, ImageOps, UnidentifiedImageError

PAD, UNK = "", "[UNK]"
TOKENIZER = 2  # the word rules new text models are trained with (standardize)
TOKENIZERS = (1, 2)  # the rules a saved text spec may name
# Refuse decompression bombs rather than allocate gigabytes for one upload or training file.
MAX_IMAGE_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


class InvalidImage(ValueError):
    """The bytes are not a decodable image; the message says why."""


@dataclass(frozen=True)
class ImageSpec:
    """How raw image bytes become the model's input tensor (N, height, width, channels) in [0, 1]."""

    labels: tuple[str, ...]
    height: int = 32
    width: int = 32
    channels: int = 1
    kind: str = field(default="image", init=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TextSpec:
    """How raw strings become the model's input tensor (N, max_length) of int32 token ids."""

    labels: tuple[str, ...]
    vocabulary: tuple[str, ...]
    max_length: int = 64
    # > 0: after the max_length word ids come max_length hashed word-bigram ids, in
    # [len(vocabulary), len(vocabulary) + ngram_buckets): bigrams survive words the vocabulary lacks.
    ngram_buckets: int = 0
    # > 0: then come up to char_length hashed ids of the character n-grams (char_min_n to char_max_n, each
    # word padded with a space on both sides, as scikit-learn's char_wb) of the first max_length words, in
    # [char_start, input_vocabulary): spelling variants, typos and inflections share evidence. Only the
    # model's linear (wide) half reads them.
    char_buckets: int = 0
    char_length: int = 0
    char_min_n: int = 2
    char_max_n: int = 5
    # > 0: the whole document for the linear half, after the windows: its bag_length most frequent distinct
    # ids (words in the vocabulary, hashed bigrams and character n-grams of every token, not only the first
    # max_length), then those ids' counts, as int32. The windows above are then the network's alone.
    bag_length: int = 0
    # > 0: the bag's bigrams are hashed into buckets of their own, [deep_vocabulary, char_start), which only the
    # linear half reads, so a corpus with more bigrams than the network's table holds keeps them apart there
    # (0: the bag reuses the network's bigram ids, and has none when the network reads none).
    bag_bigram_buckets: int = 0
    # The word rules the model was trained with (``tokenize``): TOKENIZER for new models; a saved spec without the
    # field is read as 1, the rules before combining marks and unspaced scripts were handled.
    tokenizer: int = TOKENIZER
    kind: str = field(default="text", init=False)

    @property
    def deep_length(self) -> int:
        """Word ids, then bigram ids when ``ngram_buckets`` is set: what the network half reads."""
        return self.max_length * (2 if self.ngram_buckets else 1)

    @property
    def bag_start(self) -> int:
        """Where the whole-document bag begins: after the word, bigram and character n-gram windows."""
        return self.deep_length + (self.char_length if self.char_buckets else 0)

    @property
    def input_length(self) -> int:
        """Ids per text in the model's input: words, bigrams, character n-grams, then the bag's ids and counts."""
        return self.bag_start + 2 * self.bag_length

    @property
    def deep_vocabulary(self) -> int:
        """Distinct word and bigram ids: the network half's embedding."""
        return len(self.vocabulary) + self.ngram_buckets

    @property
    def char_start(self) -> int:
        """The first character n-gram id, after the network's ids and the bag's own bigram ids."""
        return self.deep_vocabulary + self.bag_bigram_buckets

    @property
    def input_vocabulary(self) -> int:
        """Distinct ids in the model's input: the linear half's table."""
        return self.char_start + self.char_buckets

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.bag_bigram_buckets:  # written only when set, so servers older than the field read the rest
            del data["bag_bigram_buckets"]
        return data


Spec = ImageSpec | TextSpec


def spec_from_dict(data: dict[str, Any]) -> Spec:
    """Rebuild a spec saved by ``to_dict`` (lists come back as tuples)."""
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "kind"}
    if data.get("kind") == "image":
        return ImageSpec(**values)
    if data.get("kind") == "text":
        values.setdefault("tokenizer", 1)  # saved before the field existed: the rules of that time
        if values["tokenizer"] not in TOKENIZERS:
            raise ValueError(
                f"this model's text spec uses tokenizer {values['tokenizer']}; this Kiln knows {sorted(TOKENIZERS)}:"
                " serve it with the Kiln version that trained it, or retrain"
            )
        return TextSpec(**values)
    raise ValueError(f"unknown preprocessing spec kind {data.get('kind')!r}; expected 'image' or 'text'")


# ---------------------------------------------------------------- images


# Formats served and trained on; Pillow's other plugins (PSD, DDS, FITS, ...) are never opened on upload.
KNOWN_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF", "PPM", "ICO", "TGA")


def decode_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS, draft: tuple[int, int] | None = None) -> Image.Image:
    """Decode bytes fully (so truncated files fail here, not later) and apply EXIF orientation.

    The pixel count is checked from the header before any pixel is decoded. ``draft``: a JPEG larger than
    4x this (width, height) is decoded at a reduced DCT scale that still keeps 4x it - a 24-megapixel
    photo for a 32x32 model costs a fraction of the memory and time. Animated images (GIF/WebP) keep their
    first frame. Raises InvalidImage with a reason.
    """
    if not data:
        raise InvalidImage("the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=KNOWN_FORMATS)
            width, height = opened.size
            if width * height > max_pixels:
                raise InvalidImage(
                    f"the image is {width}x{height} ({width * height:,} pixels); the limit is {max_pixels:,} "
                    "pixels (server setting KILN_MAX_IMAGE_PIXELS); send a smaller image"
                )
            if draft and opened.format == "JPEG" and width > 4 * draft[0] and height > 4 * draft[1]:
                opened.draft(opened.mode, (4 * draft[0], 4 * draft[1]))
            opened.seek(0)
            opened.load()
            image: Image.Image = ImageOps.exif_transpose(opened) or opened
    except InvalidImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImage(f"the image has more than {max_pixels:,} pixels") from None
    except UnidentifiedImageError:
        raise InvalidImage(f"not a recognised image format (one of {', '.join(KNOWN_FORMATS)})") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        # Pillow reports truncated and corrupt data as OSError/SyntaxError subclasses.
        raise InvalidImage(f"truncated or corrupt image data ({exc})") from None
    return image


def is_colour(image: Image.Image) -> bool:
    """True when the image has real colour, not just grey pixels stored as RGB."""
    if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return False
    rgb = np.asarray(flatten_alpha(image).convert("RGB"), dtype=np.int16)
    return bool(np.abs(rgb[..., 0] - rgb[..., 1]).max() > 8 or np.abs(rgb[..., 1] - rgb[..., 2]).max() > 8)


def flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite transparent images onto white, so transparency never turns into black noise; colour
    spaces Pillow converts only to RGB (LAB, HSV, YCbCr, CMYK) go through RGB first."""
    if image.mode in ("LAB", "HSV", "YCbCr", "CMYK"):
        return image.convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "F"):
        # 16-bit and float greyscale: rescale to 8 bits instead of clipping.
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.astype(np.uint8), mode="L")
    return image


def image_to_uint8(image: Image.Image, spec: ImageSpec) -> np.ndarray:
    """Resize one decoded image to uint8 (height, width, channels): the compact form training caches.
    Raises InvalidImage for a mode Pillow opens but cannot convert (some LAB, CMYK or float TIFFs)."""
    mode = "L" if spec.channels == 1 else "RGB"
    try:
        converted = flatten_alpha(image).convert(mode)
        resized = converted.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
        return np.asarray(resized, dtype=np.uint8).reshape(spec.height, spec.width, spec.channels)
    except (OSError, ValueError, TypeError) as exc:
        raise InvalidImage(f"cannot convert a {image.mode} image to {mode} ({exc}); send PNG or JPEG") from None


def model_pixels(data: bytes, spec: ImageSpec, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Bytes of one image file -> uint8 (height, width, channels), as training and serving both read them."""
    return image_to_uint8(decode_image(data, max_pixels, draft=(spec.width, spec.height)), spec)


def scale_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1]. Training's tf.data pipeline does the same float32 division."""
    return pixels.astype(np.float32) / np.float32(255.0)


def image_to_array(image: Image.Image, spec: ImageSpec) -> np.ndarray:
    """Resize and scale one decoded image to float32 (height, width, channels) in [0, 1]."""
    return scale_pixels(image_to_uint8(image, spec))


def preprocess_image_bytes(data: bytes, spec: ImageSpec, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Bytes of one image file -> float32 (height, width, channels). Raises InvalidImage."""
    return scale_pixels(model_pixels(data, spec, max_pixels))


def pixel_digest(image: Image.Image) -> str:
    """Hash of the decoded pixels, so the same picture saved twice (PNG and BMP, say) matches."""
    rgba = image.convert("RGBA")
    h = hashlib.sha256(f"{rgba.size}".encode())
    h.update(rgba.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- texts

_NON_WORD = re.compile(r"[^\w']+|_")
_QUOTES = re.compile(r"(^|\s)'+|'+(\s|$)")
# Tokenizer 2 keeps combining marks inside words (re's \w has none, so tokenizer 1 cut Hindi "फिल्म" into "फ ल म"
# and dropped its vowel signs) and makes each character of a script written without spaces between words (Chinese,
# Japanese kana, Thai, Lao, Khmer, Burmese) a word of its own, with its marks: their bigrams are then character pairs,
# the usual features for those languages. Each emoji is a word too (tokenizer 1 dropped them as punctuation, though
# "😍" and "😡" say as much as any word in a review). ASCII text reads the same under both (tokenize's fast path).
_NON_WORD_2 = regex.compile(r"[^\w\p{M}'\p{Extended_Pictographic}]+|_")  # regex's \w: letters, marks, digits
_UNSPACED = regex.compile(
    r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Extended_Pictographic}]\p{M}*"
)
# The zero-width joiner that glues an emoji sequence (👨‍👩‍👧): each emoji in it is a word; the joiner is not.
_EMOJI_JOINER = regex.compile(r"\u200d(?=\p{Extended_Pictographic})")
# Typographic apostrophes (’ ‘ ʼ) are the ASCII one, so "don’t" is the word "don't" (tokenizer 1: "don" and "t").
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
# Marks most writers leave out, unlike Indic vowel signs: Arabic harakat and Quranic signs, the tatweel that only
# stretches a word, Hebrew points. Dropped, so "جدًا" and "جدا", "שָׁלוֹם" and "שלום" are one word.
_OPTIONAL_MARKS = regex.compile(
    "[\u0610-\u061a\u0640\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7\u06e8\u06ea-\u06ed"
    "\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7\ufe0e\ufe0f]"  # and the emoji/text variation selectors
)


# Bounded work per text, the same in training and serving: a text is read up to its first MAX_TEXT_CHARS characters
# (a longer one is accepted and cut here), the whole-document bag reads at most MAX_BAG_TOKENS of its tokens, and a
# word's character n-grams come from at most its first MAX_GRAM_WORD characters.
MAX_TEXT_CHARS = 200_000
MAX_BAG_TOKENS = 100_000
MAX_GRAM_WORD = 32
# encode_texts counts the bags of up to this many documents (or ids, whichever comes first) together: a whole data
# set is encoded in one call, so it is taken in groups (about 30 MB of working arrays at most, plus one document).
BAG_GROUP_DOCS, BAG_GROUP_IDS = 256, 1 << 18


def standardize(text: str, tokenizer: int = TOKENIZER) -> str:
    """Unicode-normalise, lower-case, and replace punctuation with spaces (apostrophes inside words stay); only
    the first MAX_TEXT_CHARS characters are read. ``tokenizer``: the rules (TOKENIZERS) a model was trained with."""
    return " ".join(tokenize(text, tokenizer))


def tokenize(text: str, tokenizer: int = TOKENIZER) -> list[str]:
    """The words of ``standardize(text, tokenizer)``."""
    text = unicodedata.normalize("NFKC", text[:MAX_TEXT_CHARS]).lower()
    if tokenizer == 1 or text.isascii():
        text = _NON_WORD.sub(" ", text)
    else:
        text = _OPTIONAL_MARKS.sub("", _EMOJI_JOINER.sub("", text.translate(_APOSTROPHES)))
        text = _UNSPACED.sub(r" \g<0> ", _NON_WORD_2.sub(" ", text))
    if "'" in text:  # quotes around words, not apostrophes inside them
        text = _QUOTES.sub(" ", text)
    return text.split()


def build_vocabulary(texts: Iterable[str], max_tokens: int, min_count: int = 1) -> tuple[str, ...]:
    """Most frequent tokens first (ties broken alphabetically, so the result is deterministic).

    Index 0 is padding and index 1 stands for any word outside the vocabulary.
    """
    counts = Counter(token for text in texts for token in tokenize(text))
    ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return (PAD, UNK, *ranked[: max(0, max_tokens - 2)])


def bigram_id(first: str, second: str, spec: TextSpec) -> int:
    """A word pair's id: a stable hash (CRC-32, the same in every process) into the bigram buckets."""
    return _network_pair_ids([_bigram_hash(first, second)], spec)[0]


def _bigram_hash(first: str, second: str) -> int:
    return zlib.crc32(f"{first} {second}".encode())


def _network_pair_ids(hashes: Sequence[int], spec: TextSpec) -> list[int]:
    """Word-pair hashes as the network's bigram ids (one call per document, not per pair: this is serving's path)."""
    start, buckets = len(spec.vocabulary), spec.ngram_buckets
    return [start + h % buckets for h in hashes]


def word_char_hashes(word: str, min_n: int, max_n: int) -> np.ndarray:
    """CRC-32 of every character n-gram of `` word `` (stable across processes), uint32; a word longer than
    MAX_GRAM_WORD characters is read up to there, so no word costs more than ~130 hashes."""
    return _char_hashes(word[:MAX_GRAM_WORD], min_n, max_n)


# Words repeat (Zipf): most requests hash nothing new. Entries are small arrays of at most ~130 uint32 (a cut word),
# so the cache holds at most ~40 MB however hostile the input.
@functools.lru_cache(maxsize=65_536)
def _char_hashes(word: str, min_n: int, max_n: int) -> np.ndarray:
    padded = f" {word} "
    grams = [padded[i : i + n] for n in range(min_n, max_n + 1) for i in range(len(padded) - n + 1)]
    hashes = np.array([zlib.crc32(g.encode()) for g in grams] or [zlib.crc32(padded.encode())], dtype=np.uint32)
    hashes.flags.writeable = False  # shared by every caller through the cache
    return hashes


def char_ngram_ids(tokens: Sequence[str], spec: TextSpec) -> list[int]:
    """The first char_length character n-gram ids of the first max_length tokens, word by word."""
    hashes = [word_char_hashes(token, spec.char_min_n, spec.char_max_n) for token in tokens[: spec.max_length]]
    return _char_window(hashes, spec)


def _char_window(hashes: Sequence[np.ndarray], spec: TextSpec) -> list[int]:
    """The first char_length ids of the per-word hashes of the first max_length words."""
    offset, buckets = spec.char_start, spec.char_buckets
    out: list[np.ndarray] = []
    total = 0
    for word in hashes[: spec.max_length]:
        out.append(word)
        total += len(word)
        if total >= spec.char_length:
            break
    joined = np.concatenate(out) if out else np.zeros(0, dtype=np.uint32)
    return (offset + joined[: spec.char_length].astype(np.int64) % buckets).tolist()


def bag_terms(tokens: Sequence[str], spec: TextSpec, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ids of a whole document and their counts, the most frequent first (ties: the smaller id),
    at most ``bag_length`` of them: known words (no padding or unknown-word id), hashed bigrams and the
    character n-grams of every word."""
    _, _, ids, counts = _bags([_Document(tokens[:MAX_BAG_TOKENS], spec, index)], spec)
    return ids, counts


class _Document:
    """One text's per-token ids, each computed once and shared by the windows and the whole-document bag."""

    def __init__(self, tokens: Sequence[str], spec: TextSpec, index: dict[str, int]):
        get = index.get
        self.words = [get(t, 1) for t in tokens]
        reads_pairs = spec.ngram_buckets or (spec.bag_length and spec.bag_bigram_buckets)
        crc32 = zlib.crc32  # _bigram_hash, inlined: this loop is most of a request's Python time
        hashes = [crc32(f"{a} {b}".encode()) for a, b in zip(tokens, tokens[1:], strict=False)] if reads_pairs else []
        # the bag's bigrams: their own buckets where the spec has them (the network's window then needs only its
        # first max_length pairs), else the network's
        own = spec.bag_bigram_buckets
        window = hashes[: spec.max_length] if own else hashes
        self.pairs = _network_pair_ids(window, spec) if spec.ngram_buckets else []
        start = spec.deep_vocabulary
        self.bag_pairs = [start + h % own for h in hashes] if own else self.pairs
        self.hashes: list[np.ndarray] = []
        if spec.char_buckets:
            low, high = spec.char_min_n, spec.char_max_n
            self.hashes = [_char_hashes(t[:MAX_GRAM_WORD], low, high) for t in tokens]  # word_char_hashes, inlined
        self.grams = sum(map(len, self.hashes))  # how many character n-gram hashes the document holds


def _bags(docs: Sequence[_Document], spec: TextSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The bags of several documents at once: (doc, rank, id, count) per kept term, each document's terms the
    most frequent first (ties: the smaller id), at most ``bag_length`` of them. numpy works on all the documents
    together: per-document calls on a few hundred ids cost more in numpy's call overhead than in the work."""
    words: list[int] = []
    hashes: list[np.ndarray] = []
    for doc in docs:
        words += doc.words
        words += doc.bag_pairs
        hashes += doc.hashes
    n = np.arange(len(docs), dtype=np.int64)
    doc_of = [np.repeat(n, [len(d.words) + len(d.bag_pairs) for d in docs])]
    ids = [np.array(words, dtype=np.int64)]
    if hashes:
        doc_of.append(np.repeat(n, [d.grams for d in docs]))
        ids.append(spec.char_start + np.concatenate(hashes).astype(np.int64) % spec.char_buckets)
    all_ids, all_docs = np.concatenate(ids), np.concatenate(doc_of)
    keep = all_ids > 1  # no padding or unknown-word id
    vocabulary = spec.input_vocabulary
    keys, counts = np.unique(all_docs[keep] * vocabulary + all_ids[keep], return_counts=True)
    doc, term = np.divmod(keys, vocabulary)
    most = int(counts.max(initial=0))
    if len(docs) * (most + 1) * vocabulary < 2**62:
        # by (doc, -count, id) as one int64 key per distinct term: a fast sort, deterministic as keys are distinct
        order = np.argsort((doc * (most + 1) + (most - counts)) * vocabulary + term)
    else:  # a key that would overflow: the same order, slower
        order = np.lexsort((term, -counts, doc))
    doc, term, counts = doc[order], term[order], counts[order]
    first = np.flatnonzero(np.diff(doc, prepend=-1))  # where each document's terms begin
    rank = np.arange(len(doc)) - np.repeat(first, np.diff(first, append=len(doc)))  # the term's place in its bag
    kept = rank < spec.bag_length
    return doc[kept], rank[kept], term[kept], counts[kept]


def _write_bags(out: np.ndarray, rows: list[int], docs: list[_Document], spec: TextSpec) -> None:
    """The bags of ``docs`` into their ``rows`` of an encoded batch: ids, then counts."""
    doc, rank, terms, counts = _bags(docs, spec)
    row = np.asarray(rows, dtype=np.int64)[doc]
    out[row, spec.bag_start + rank] = terms
    out[row, spec.bag_start + spec.bag_length + rank] = np.minimum(counts, 2**31 - 1)


def token_index(spec: TextSpec) -> dict[str, int]:
    return {token: i for i, token in enumerate(spec.vocabulary)}


def blank_texts(batch: np.ndarray, spec: TextSpec) -> np.ndarray:
    """Indices of the rows of an encoded batch with no words: nothing left after standardisation (empty,
    whitespace, punctuation or symbols only). An unknown word still encodes as [UNK] (1), so an all-padding
    word window is exactly a text with no words; the service refuses such texts and batch prediction reports them."""
    return np.flatnonzero(~batch[:, : spec.max_length].any(axis=1))


def encode_texts(texts: Sequence[str], spec: TextSpec, index: dict[str, int] | None = None) -> np.ndarray:
    """Strings -> int32 (N, input_length) ids: word ids truncated or zero-padded at the end, then (with
    ``ngram_buckets``) the hashed ids of the bigrams among the first max_length + 1 words, then (with
    ``char_buckets`` and ``char_length``) their character n-gram ids (``char_ngram_ids``), then (with
    ``bag_length``) the whole document's bag: ids, then counts (``bag_terms``). ``index``:
    token_index(spec), which a server builds once instead of per request."""
    index = index if index is not None else token_index(spec)
    length = spec.max_length
    # The bag reads up to MAX_BAG_TOKENS tokens, the windows max_length (+ 1 for the last bigram): the per-token
    # ids are computed once over the longer reach and sliced for both.
    reach = max(MAX_BAG_TOKENS, length + 1) if spec.bag_length else length + 1
    out = np.zeros((len(texts), spec.input_length), dtype=np.int32)
    rows: list[int] = []  # documents whose bags are counted together, and how many ids they hold
    docs: list[_Document] = []
    held = 0
    for row, text in enumerate(texts):
        tokens = tokenize(text, spec.tokenizer)
        doc = _Document(tokens[:reach], spec, index)
        ids = doc.words[:length]
        out[row, : len(ids)] = ids
        if spec.ngram_buckets:
            pairs = doc.pairs[:length]
            out[row, length : length + len(pairs)] = pairs
        if spec.char_buckets and spec.char_length:
            grams = _char_window(doc.hashes, spec)
            out[row, spec.deep_length : spec.deep_length + len(grams)] = grams
        if spec.bag_length:
            bag = doc if reach == MAX_BAG_TOKENS else _Document(tokens[:MAX_BAG_TOKENS], spec, index)
            rows.append(row)
            docs.append(bag)
            held += len(bag.words) + len(bag.bag_pairs) + bag.grams
            if len(docs) == BAG_GROUP_DOCS or held >= BAG_GROUP_IDS:
                _write_bags(out, rows, docs, spec)
                rows, docs, held = [], [], 0
    if docs:
        _write_bags(out, rows, docs, spec)
    return out
