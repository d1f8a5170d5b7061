"""Shared preprocessing: decoding edge cases, image arrays, text standardisation and encoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from serving.preprocess import (
    TOKENIZER,
    ImageSpec,
    InvalidImage,
    TextSpec,
    bag_terms,
    bigram_id,
    build_vocabulary,
    decode_image,
    encode_texts,
    image_to_array,
    is_colour,
    pixel_digest,
    preprocess_image_bytes,
    spec_from_dict,
    standardize,
    tokenize,
    word_char_hashes,
)


def _encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "empty"),
        (b"hello, I am a text file", "not a recognised image format"),
        (_encode(Image.new("RGB", (64, 64), (1, 2, 3)))[:80], "truncated or corrupt"),
    ],
)
def test_decode_rejects_bad_bytes_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidImage, match=reason):
        decode_image(data)


def test_decode_refuses_decompression_bombs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(InvalidImage, match="pixels"):
        decode_image(_encode(Image.new("L", (40, 40))))


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "CMYK"])
@pytest.mark.parametrize("channels", [1, 3])
def test_any_mode_becomes_scaled_array_of_spec_shape(mode: str, channels: int) -> None:
    img = Image.new(mode, (37, 11))
    fmt = "JPEG" if mode == "CMYK" else "TIFF" if mode in ("I", "I;16") else "PNG"
    spec = ImageSpec(labels=("a",), height=16, width=20, channels=channels)
    arr = preprocess_image_bytes(_encode(img, fmt), spec)
    assert arr.shape == (16, 20, channels) and arr.dtype == np.float32
    assert arr.min() >= 0.0 and arr.max() <= 1.0


def test_transparent_pixels_become_white_not_black() -> None:
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    arr = image_to_array(img, ImageSpec(labels=("a",), height=4, width=4, channels=1))
    assert np.allclose(arr, 1.0)


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("L", (8, 8), 0), Image.new("L", (8, 8), 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    arr = preprocess_image_bytes(buf.getvalue(), ImageSpec(labels=("a",), height=8, width=8, channels=1))
    assert arr.max() < 0.1


def test_colour_detection_and_pixel_digest() -> None:
    grey_rgb = Image.new("RGB", (5, 5), (90, 90, 90))
    assert not is_colour(grey_rgb) and not is_colour(Image.new("L", (5, 5)))
    assert is_colour(Image.new("RGB", (5, 5), (200, 10, 10)))
    same = Image.open(io.BytesIO(_encode(grey_rgb, "BMP")))
    assert pixel_digest(grey_rgb) == pixel_digest(same)
    assert pixel_digest(grey_rgb) != pixel_digest(Image.new("RGB", (5, 5), (91, 90, 90)))


def test_standardize_normalises_case_punctuation_and_unicode() -> None:
    assert standardize("  Hello,   WORLD!!  ") == "hello world"
    assert standardize("ｆｕｌｌｗｉｄｔｈ café") == "fullwidth café"
    assert standardize("don't 'quote' me_now") == "don't quote me now"
    assert standardize("?!...") == ""


def test_words_keep_their_combining_marks() -> None:
    # Devanagari and Bengali vowel signs and viramas: marks, which tokenizer 1 cut words at and dropped
    assert tokenize("यह फिल्म बहुत अच्छी है!") == ["यह", "फिल्म", "बहुत", "अच्छी", "है"]
    assert tokenize("এই সিনেমাটি ভালো") == ["এই", "সিনেমাটি", "ভালো"]
    assert tokenize("जिंदगी") == ["जिंदगी"]  # a Devanagari anusvara and vowel signs stay: they change the word
    # Marks writers mostly leave out are dropped: Arabic harakat and the tatweel, Hebrew points
    assert tokenize("جيد جدًا جميــــل") == tokenize("جيد جدا جميل") == ["جيد", "جدا", "جميل"]
    assert tokenize("שָׁלוֹם") == tokenize("שלום") == ["שלום"]
    assert tokenize("फिल्म", tokenizer=1) == ["फ", "ल", "म"]  # what a version trained before still reads


def test_scripts_without_spaces_become_one_word_per_character() -> None:
    assert tokenize("这部电影很好看，我喜欢！") == ["这", "部", "电", "影", "很", "好", "看", "我", "喜", "欢"]
    assert tokenize("映画はOK") == ["映", "画", "は", "ok"]
    assert tokenize("ดีมาก") == ["ดี", "ม", "า", "ก"]  # a Thai character keeps its vowel and tone marks
    assert tokenize("이 영화는 좋아요") == ["이", "영화는", "좋아요"]  # Korean separates words with spaces


def test_typographic_apostrophes_are_the_ascii_one() -> None:
    assert tokenize("I’m sure it’s ‘fine’ – don’t") == tokenize("I'm sure it's 'fine' - don't")
    assert tokenize("I’m sure it’s ‘fine’ – don’t") == ["i'm", "sure", "it's", "fine", "don't"]


def test_each_emoji_is_a_word_of_its_own() -> None:
    assert tokenize("Loved it😍😍, thanks👍🏽 ❤️") == ["loved", "it", "😍", "😍", "thanks", "👍", "❤"]
    assert tokenize("❤️") == tokenize("❤")  # with or without the emoji variation selector
    assert tokenize("👨‍👩‍👧") == ["👨", "👩", "👧"]  # a joined sequence: its emoji, not the joiners
    assert tokenize("😡", tokenizer=1) == []  # tokenizer 1 dropped them as punctuation


@pytest.mark.parametrize("text", ["Hello, WORLD! don't 'quote' me_now 42x", "café naïve ｆｕｌｌｗｉｄｔｈ", "?!..."])
def test_tokenizer_2_reads_latin_text_as_tokenizer_1_did(text: str) -> None:
    assert tokenize(text) == tokenize(text, tokenizer=1)


def test_a_spec_encodes_with_the_tokenizer_it_was_trained_with() -> None:
    vocabulary = ("", "[UNK]", "फ", "फिल्म")
    new = TextSpec(labels=("a", "b"), vocabulary=vocabulary, max_length=3)
    saved = new.to_dict()
    assert saved["tokenizer"] == TOKENIZER
    del saved["tokenizer"]  # a version saved before the field: tokenizer 1
    old = spec_from_dict(saved)
    assert old.tokenizer == 1
    assert encode_texts(["फिल्म"], new)[0].tolist() == [3, 0, 0]
    assert encode_texts(["फिल्म"], old)[0].tolist() == [2, 1, 1]
    with pytest.raises(ValueError, match="tokenizer 9"):
        spec_from_dict({**saved, "tokenizer": 9})


def test_vocabulary_is_frequency_ordered_deterministic_and_capped() -> None:
    vocab = build_vocabulary(["b a a", "c a b", "d"], max_tokens=4)
    assert vocab == ("", "[UNK]", "a", "b")
    assert build_vocabulary(["x y"], max_tokens=10, min_count=2) == ("", "[UNK]")


def test_encode_texts_pads_truncates_and_maps_unknown() -> None:
    spec = TextSpec(labels=("a", "b"), vocabulary=("", "[UNK]", "good", "film"), max_length=3)
    ids = encode_texts(["Good film!", "good good good good", "zebra", ""], spec)
    assert ids.dtype == np.int32
    assert ids.tolist() == [[2, 3, 0], [2, 2, 2], [1, 0, 0], [0, 0, 0]]


def test_character_ngrams_follow_words_and_bigrams_in_their_own_id_range() -> None:
    spec = TextSpec(
        labels=("a", "b"),
        vocabulary=("", "[UNK]", "good", "film"),
        max_length=3,
        ngram_buckets=8,
        char_buckets=16,
        char_length=20,
    )
    assert (spec.deep_length, spec.input_length) == (6, 26)
    assert (spec.deep_vocabulary, spec.input_vocabulary) == (12, 28)
    ids = encode_texts(["Good film!", "goood", "", "good " * 50], spec)
    chars = ids[:, spec.deep_length :]
    assert ((chars == 0) | ((chars >= 12) & (chars < 28))).all()
    # " good " and " film " have 5 + 4 + 3 + 2 n-grams of 2 to 5 characters each: 28, cut at 20
    assert (chars[0] > 0).sum() == 20 and (chars[1] > 0).sum() == 18 and not chars[2].any()
    # a misspelling shares n-grams with the word (unlike its word id, which is [UNK])
    assert ids[1, 0] == 1 and set(chars[1][chars[1] > 0]) & set(chars[0][:14])
    assert (chars[3] > 0).sum() == 20  # long texts stop at char_length
    assert np.array_equal(encode_texts(["Good film!"], spec), ids[:1])  # stable: CRC-32, no per-process salt
    assert spec_from_dict(spec.to_dict()) == spec


def test_batch_encoding_agrees_with_the_one_item_helpers() -> None:
    """encode_texts inlines the bigram and n-gram hashes for speed: its ids must stay those of bigram_id and
    word_char_hashes, and its bags those of bag_terms, whatever the batch around a text."""
    spec = TextSpec(
        labels=("a", "b"),
        vocabulary=("", "[UNK]", "good", "film", "it's"),
        max_length=4,
        ngram_buckets=8,
        char_buckets=32,
        char_length=12,
        bag_length=40,
        bag_bigram_buckets=16,
    )
    texts = ["Good film, it's good!", "'quoted' words and more words", "", "फिल्म 😍 很好", "film " * 300]
    ids = encode_texts(texts, spec)
    for row, text in enumerate(texts):
        words = tokenize(text)
        pairs = [bigram_id(a, b, spec) for a, b in zip(words, words[1:], strict=False)][: spec.max_length]
        assert ids[row, spec.max_length : spec.max_length + len(pairs)].tolist() == pairs
        grams = np.concatenate([word_char_hashes(w, 2, 5) for w in words[: spec.max_length]] or [[]])
        expected = (spec.char_start + grams[: spec.char_length].astype(np.int64) % spec.char_buckets).tolist()
        assert ids[row, spec.deep_length : spec.deep_length + len(expected)].tolist() == expected
        terms, counts = bag_terms(words, spec, {t: i for i, t in enumerate(spec.vocabulary)})
        start, k = spec.bag_start, spec.bag_length
        assert ids[row, start : start + len(terms)].tolist() == terms.tolist()
        assert ids[row, start + k : start + k + len(counts)].tolist() == counts.tolist()
        assert np.array_equal(encode_texts([text], spec)[0], ids[row])  # the same alone as in a batch


def test_spec_round_trips_through_dict() -> None:
    text = TextSpec(labels=("a", "b"), vocabulary=("", "[UNK]", "x"), max_length=5)
    image = ImageSpec(labels=("a", "b"), height=8, width=9, channels=3)
    assert spec_from_dict(text.to_dict()) == text
    assert spec_from_dict(image.to_dict()) == image
    with pytest.raises(ValueError, match="unknown preprocessing spec"):
        spec_from_dict({"kind": "audio"})
