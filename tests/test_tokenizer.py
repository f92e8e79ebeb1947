"""Tokenizers: byte-level and tokenizer.json loaders, round trip and concatenation at whitespace.

The HF tokenizers are trained here, in a fraction of a second, on a small corpus (no downloads):
one GPT-2 style (ByteLevel), one Llama style (Prepend + Replace normalizer, byte fallback, Strip
decoder) and one Metaspace pre-tokenizer, each with the start-of-text space its family adds.
"""

import json
import random

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from streamret.model.tokenizer import (
    _NOT_PLAIN,
    ByteTokenizer,
    HFTokenizer,
    _IdTable,
    _plain,
    _word_keys,
    _WordCache,
    _WordPiece,
    _WordTable,
)
from streamret.model.tokenizer import Tokenizer as TokenizerProtocol

WORDS = ["the", "stream", "never", "ends", ";", "retention", "state", "décadence", "naïve", "Zürich", "42", "x",
         "——", "日本語", "emoji🙂", "don't", "a.b", "(", ")"]
SPACES = [" ", " ", " ", "  ", "\n", "\n\n", "\t", " \n "]


def sample_text(rng: random.Random, n_words: int) -> str:
    parts = [rng.choice(WORDS)]
    for _ in range(n_words - 1):
        parts += [rng.choice(SPACES), rng.choice(WORDS)]
    return "".join(parts)


CORPUS = [sample_text(random.Random(i), 40) for i in range(200)]


def train(tok: Tokenizer, **kw) -> str:
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, show_progress=False, **kw))
    return tok.to_str()


def gpt2_style() -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    return train(tok, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"])


def llama_style() -> str:
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    # sentencepiece never merges across a word start, so train split at "▁", then ship without a
    # pre-tokenizer as HF's Llama conversion does
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never", split=True)
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    spec = json.loads(train(tok, special_tokens=["<unk>", "<s>", "</s>", *byte_tokens]))
    spec["pre_tokenizer"] = None
    return json.dumps(spec)


def metaspace_style() -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
    tok.decoder = decoders.Metaspace(prepend_scheme="always")
    return train(tok)


STYLES = {"gpt2": gpt2_style, "llama": llama_style, "metaspace": metaspace_style}


@pytest.fixture(scope="module", params=sorted(STYLES))
def hf_json(request):
    return request.param, STYLES[request.param]()


def safe_cuts(text: str) -> list[int]:
    """Where the engine may cut: after a non-whitespace character, before a space."""
    return [i for i in range(1, len(text)) if not text[i - 1].isspace() and text[i] == " "]


def test_byte_tokenizer_round_trip_and_concatenation_everywhere():
    tok = ByteTokenizer()
    assert isinstance(tok, TokenizerProtocol)
    text = sample_text(random.Random(7), 30)
    ids = tok.encode(text)
    assert max(ids) < 256 and tok.decode(ids) == text
    for i in range(len(text) + 1):
        assert tok.encode(text[:i]) + tok.encode(text[i:]) == ids
    assert tok.decode([*tok.encode("ab"), tok.eos_id, tok.pad_id]) == "ab"


def test_hf_round_trip(hf_json):
    _, source = hf_json
    tok = HFTokenizer.from_json(source, "t")
    assert isinstance(tok, TokenizerProtocol) and 300 < tok.vocab_size <= 700
    for seed in range(20):
        text = sample_text(random.Random(1000 + seed), 25)
        for t in (text, " " + text, text + "\n"):
            assert tok.decode(tok.encode(t)) == t


def test_encode_batch_equals_encode_of_each_text(hf_json):
    """The engine tokenizes a chunk's pieces in one encode_batch call: it must give what encode gives."""
    _, source = hf_json
    texts = [sample_text(random.Random(3000 + seed), 12) for seed in range(40)]
    texts += ["", " ", "\n\n", " leading space", "trailing space ", "ünïcödé 日本 😀"]
    for tok in (ByteTokenizer(), HFTokenizer.from_json(source)):
        assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
        assert tok.encode_batch([]) == []


def test_hf_concatenates_at_whitespace(hf_json):
    _, source = hf_json
    tok = HFTokenizer.from_json(source)
    checked = 0
    for seed in range(15):
        text = sample_text(random.Random(2000 + seed), 20)
        whole = tok.encode(text)
        for i in safe_cuts(text):
            assert tok.encode(text[:i]) + tok.encode(text[i:]) == whole, (text[:i], text[i:])
            checked += 1
    assert checked > 100


def test_the_shipped_llama_tokenizer_would_not_concatenate():
    """What without_prefix_space fixes: Llama's Prepend("▁") normalizer marks a word start on every call.

    (ByteLevel's add_prefix_space and Metaspace's prepend_scheme only add a marker where the text
    does not start with a space, so cuts before a space are safe there either way; switching them
    off only changes the stream's first token.)
    """
    source = STYLES["llama"]()
    raw = Tokenizer.from_str(source)
    a, b = "the stream", " never ends"
    assert raw.encode(a, add_special_tokens=False).ids + raw.encode(b, add_special_tokens=False).ids != raw.encode(
        a + b, add_special_tokens=False).ids
    tok = HFTokenizer.from_json(source)
    assert tok.encode(a) + tok.encode(b) == tok.encode(a + b)


def test_hf_loads_a_file_or_folder_and_keeps_the_source(tmp_path, hf_json):
    style, source = hf_json
    (tmp_path / "tokenizer.json").write_text(source, encoding="utf-8")
    for where in (tmp_path, tmp_path / "tokenizer.json"):
        tok = HFTokenizer(where)
        assert tok.source_json == source and tok.name == f"hf:{tmp_path.name}"
    expected_eos = {"gpt2": "<|endoftext|>", "llama": "</s>", "metaspace": None}[style]
    raw = Tokenizer.from_str(source)
    assert tok.eos_id == (raw.token_to_id(expected_eos) if expected_eos else None)
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        HFTokenizer(tmp_path / "missing")
    with pytest.raises(ValueError, match="not valid JSON"):
        HFTokenizer.from_json("{", "broken")


PIECE_TEXTS = ["", " ", "  ", "\n", "\n\n", "\t", " \n ", "\u00a0", "\u3000", "x", "é", "naïve", "日本語", "🙂",
               "don't", "a.b", "Zürich", "——", ".", "?!", "\u0301", "ﬁ"]
SPECIAL_TEXTS = ["[PAD]", "[SEP]", "<|endoftext|>", "<s>", "</s>", "<unk>"]  # texts of special tokens


def random_items(rng: random.Random, n_items: int, specials: bool) -> list[list[str]]:
    """Items of pieces cut anywhere (not only where the engine cuts): empty pieces, pieces of whitespace only
    (no tokens), unicode, accents, combining marks, whitespace runs and, with specials, special tokens' texts;
    some items without pieces."""
    items, texts = [], PIECE_TEXTS + WORDS + SPACES + (SPECIAL_TEXTS if specials else [])
    for _ in range(n_items):
        text = "".join(rng.choice(texts) for _ in range(rng.randrange(0, 30)))
        cuts = sorted(rng.randrange(0, len(text) + 1) for _ in range(rng.randrange(0, 8)))
        items.append([text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])] if cuts or text else [])
    return items


def per_piece(tok, items: list[list[str]]) -> tuple[list[int], list[int]]:
    """The reference: every piece encoded alone, the ids one after the other, and each piece's end in them."""
    ids, ends = [], []
    for piece in (p for pieces in items for p in pieces):
        ids += tok.encode(piece)
        ends.append(len(ids))
    return ids, ends


def bundled_default() -> HFTokenizer:
    from pathlib import Path

    import streamret

    return HFTokenizer(Path(streamret.__file__).parent / "assets" / "default")


@pytest.mark.parametrize("style", [*sorted(STYLES), "default", "bytes"])
def test_encode_pieces_equals_each_piece_encoded_alone(style):
    """The tokenize stage's one call per batch (`encode_pieces`) gives each piece's ids as `encode` of that
    piece alone, for the bundled WordPiece, the GPT-2, Llama and Metaspace styles and bytes; so does the
    fallback through encode_batch, for a tokenizer without encode_pieces."""
    from streamret.model.tokenizer import encode_pieces, encode_pieces_one_by_one

    tok = (ByteTokenizer() if style == "bytes" else bundled_default() if style == "default"
           else HFTokenizer.from_json(STYLES[style]()))
    rng = random.Random(5)
    batches = [random_items(rng, rng.randrange(1, 12), specials=k % 2 == 1) for k in range(60)]
    batches += [[], [[]], [[], [""], ["", " "], []], [["\n\n", "  ", ""]]]
    for items in batches:
        ids, ends = per_piece(tok, items)
        for encode in (encode_pieces, encode_pieces_one_by_one):
            got_ids, got_ends = encode(tok, items)
            assert got_ids.dtype == got_ends.dtype == np.int64
            assert (got_ids.tolist(), got_ends.tolist()) == (ids, ends), (style, encode.__name__, items)


def test_a_tokenizer_that_truncates_or_pads_is_encoded_piece_by_piece():
    """Truncation and padding would apply to an item's pre-tokenized input as a whole: such a tokenizer is
    encoded one piece at a time, as before (pieces longer than the limit still come back cut)."""
    from streamret.model.tokenizer import encode_pieces

    spec = json.loads(STYLES["gpt2"]())
    items = [["the stream never", " ends"], [" state retention", " x"]]
    for key, setting in (("truncation", {"direction": "Right", "max_length": 2, "strategy": "LongestFirst",
                                          "stride": 0}),
                         ("padding", {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None,
                                      "pad_id": 0, "pad_type_id": 0, "pad_token": "<|endoftext|>"})):
        tok = HFTokenizer.from_json(json.dumps({**spec, key: setting}))
        pieces = [p for ps in items for p in ps]
        expected = tok.encode_batch(pieces)
        ids, ends = encode_pieces(tok, items)
        assert ids.tolist() == [i for e in expected for i in e]
        assert ends.tolist() == np.cumsum([len(e) for e in expected]).tolist()
        if key == "truncation":
            assert max(map(len, expected)) == 2


@pytest.mark.parametrize("style", ["gpt2", "llama", "default"])
def test_the_mark_after_each_piece_is_given_up_where_a_piece_holds_its_text(style):
    """HFTokenizer finds where pieces end by a special token put after each piece (`_marked`); a piece whose
    text holds that token's text gives its id too, and the pieces are then numbered by tokenizers instead."""
    tok = bundled_default() if style == "default" else HFTokenizer.from_json(STYLES[style]())
    mark, _ = tok._mark
    plain = [["the stream", " never ends"], ["", " x"]]
    assert tok._marked(plain) is not None
    assert tok.encode_pieces(plain)[0].tolist() == per_piece(tok, plain)[0]
    holding = [["the stream", f" {mark} ends"], ["", " x"]]
    assert tok._marked(holding) is None
    ids, ends = tok.encode_pieces(holding)
    assert (ids.tolist(), ends.tolist()) == per_piece(tok, holding)


def wordpiece_style(normalizer) -> str:
    """A BERT-like WordPiece tokenizer with `normalizer`, special tokens added as BERT's are."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=12))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=300, show_progress=False,
                                                              special_tokens=["[UNK]", "[SEP]", "[PAD]"]))
    return tok.to_str()


PLAIN_TEXTS = ["The", " Stream", "\tNEVER\n", "ends.", "\r\n", "x" * 30, "A.B", "(42)", "don't", "~`|{}", " ", ""]


@pytest.mark.parametrize("normalizer", ["default", "bert", "sequence", "lowercase"])
def test_text_normalized_before_the_tokenizer_gives_the_same_ids(normalizer):
    """`_Prenormalized`: the tokenizer's normalizer applied in Python (str.lower for printable ASCII, the
    normalizer's own normalize_str for the rest) and a twin without a normalizer encoding the result gives
    every piece's ids as the tokenizer itself, on printable ASCII (upper case, tabs, newlines, words past
    max_input_chars_per_word) and on mixed text; the path is taken, not given up."""
    tok = bundled_default() if normalizer == "default" else HFTokenizer.from_json(wordpiece_style({
        "bert": normalizers.BertNormalizer(lowercase=True),
        "sequence": normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()]),
        "lowercase": normalizers.Lowercase(),
    }[normalizer]))
    assert tok._prenormalized is not None
    rng = random.Random(11)
    for k in range(40):
        texts = PLAIN_TEXTS if k % 2 else PLAIN_TEXTS + WORDS
        items = [["".join(rng.choice(texts) for _ in range(rng.randrange(1, 6))) for _ in range(rng.randrange(1, 9))]
                 for _ in range(rng.randrange(1, 6))]
        assert tok._prenormalized.encode(items, tok._marked) is not None, items
        ids, ends = tok.encode_pieces(items)
        assert (ids.tolist(), ends.tolist()) == per_piece(tok, items), (normalizer, items)


@pytest.mark.parametrize("text", ["[SEP]", "a [sep] b", "[Pad]", "é[SEP]"])
def test_text_that_may_hold_an_added_token_is_encoded_as_is(text):
    """Added tokens are matched before normalizing ([SEP] is one token, [sep] lowercased would not be): an item
    holding one's text in any case goes through the tokenizer itself, with the same ids as alone."""
    tok = bundled_default()
    items = [["plain words", " here"], ["then ", text, " more"]]
    assert tok._prenormalized.encode(items, tok._marked) is None
    ids, ends = tok.encode_pieces(items)
    assert (ids.tolist(), ends.tolist()) == per_piece(tok, items)


def test_no_twin_when_an_added_token_is_matched_on_normalized_text():
    """An added token with normalized=True (as add_tokens makes them) is matched on the normalizer's output
    ("zurich" is the added "Zürich" here), which the twin has no part in: such a tokenizer encodes as shipped."""
    from tokenizers import AddedToken

    tok = Tokenizer.from_str(wordpiece_style(normalizers.BertNormalizer(lowercase=True)))
    tok.add_tokens([AddedToken("Zürich", normalized=True)])
    hf = HFTokenizer.from_json(tok.to_str())
    assert hf._prenormalized is None
    items = [["in zurich.", " Zürich"]]
    ids, ends = hf.encode_pieces(items)
    assert (ids.tolist(), ends.tolist()) == per_piece(hf, items)
    assert hf.encode("zurich") == [tok.token_to_id("Zürich")]


def test_no_twin_for_a_normalizer_that_does_more_than_map_characters():
    """A normalizer that replaces or prepends (the Llama style) is not probed character by character: its
    tokenizer encodes as it always did."""
    assert HFTokenizer.from_json(STYLES["llama"]())._prenormalized is None
    assert HFTokenizer.from_json(STYLES["gpt2"]())._prenormalized is None  # no normalizer: nothing to gain


ASCII_TEXTS = ["The", " Stream", "\tNEVER\n", "ends.", "x" * 30, "y" * 120, "A.B", "(42)", "don't", "~`|{}", " ", "",
               "state-of-the-art", "e.g.", "C++", "a_b", "\r\n", "#!", "3.14"]


@pytest.mark.parametrize("style", ["default", "bert"])
def test_the_word_cache_gives_each_piece_the_tokenizers_ids(style):
    """`_WordCache`: printable ASCII pieces cut at whitespace and each word's ids looked up, new words made of
    their parts as the pre-tokenizer cuts them (words past max_input_chars_per_word, punctuation, digits, upper
    case), pieces of other text encoded by the twin in between, caches small enough to start over many times,
    and the same ids warm as cold."""
    tok = bundled_default() if style == "default" else HFTokenizer.from_json(
        wordpiece_style(normalizers.BertNormalizer(lowercase=True)))
    words = tok._prenormalized.words
    assert words is not None
    words.max_words, words._words = 7, _WordTable(7)
    rng = random.Random(3)
    for k in range(60):
        texts = ASCII_TEXTS if k % 3 else ASCII_TEXTS + WORDS
        items = [["".join(rng.choice(texts) for _ in range(rng.randrange(0, 6))) for _ in range(rng.randrange(1, 9))]
                 for _ in range(rng.randrange(1, 5))]
        for _ in range(2):
            ids, ends = tok.encode_pieces(items)
            assert (ids.tolist(), ends.tolist()) == per_piece(tok, items), (style, items)
    assert 0 < words._words.words <= 7 and 0 < len(words._parts.ids) <= 7 + 60


def test_the_plain_text_check_is_the_patterns():
    """`_plain` (isascii and a substring search a control character) says what `_NOT_PLAIN` finds, for every
    character alone, among plain text, and for a few beyond the Basic Multilingual Plane."""
    for c in [*map(chr, range(0x3000)), "\U0001f642", "\U00010000"]:
        for text in (c, f"plain text {c} more", "\n".join(["a b", c, "\t"])):
            assert _plain(text) == (_NOT_PLAIN.search(text) is None), repr(c)


def test_the_word_cache_holds_many_new_words_beside_long_pieces_of_other_text():
    """Thousands of new words (the cache past a thousand entries and four thousand ids) and a long piece of
    other text encoded by the twin among them, twice (cold, then warm): the tokenizer's ids each time."""
    tok = bundled_default()
    words = tok._prenormalized.words
    words._words, words._parts = _WordTable(words.max_words), _IdTable()
    many = " ".join(f"w{k}x{k * 7919 % 1000}y" for k in range(3000))  # ~3,000 new words, several ids each
    items = [[many[:20000], "Zürich " * 3000 + "end.", "z" * 80 + " short"], [many[20000:]]]
    for _ in range(2):
        ids, ends = tok.encode_pieces(items)
        assert (ids.tolist(), ends.tolist()) == per_piece(tok, items)
    assert words._words.words > 1024 and words._words.size > 4096


def test_the_word_cache_is_shared_by_threads():
    """The tokenize stage's threads share one cache; one of them starting it over leaves the others' calls whole."""
    from concurrent.futures import ThreadPoolExecutor

    tok = bundled_default()
    words = tok._prenormalized.words
    words.max_words, words._words = 50, _WordTable(50)
    rng = random.Random(8)
    batches = [[["".join(rng.choice(ASCII_TEXTS + [f"w{rng.randrange(500)}"]) for _ in range(8))
                 for _ in range(4)]] for _ in range(200)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(tok.encode_pieces, batches))
    for items, (ids, ends) in zip(batches, got):
        assert (ids.tolist(), ends.tolist()) == per_piece(tok, items)


@pytest.mark.parametrize("pre_tokenizer", ["whitespace", "whitespace_split", "metaspace"])
def test_no_word_cache_for_other_pre_tokenizers(pre_tokenizer):
    """Only BertPreTokenizer gets the word cache: a WordPiece tokenizer whose normalizer Python can apply (so it
    has the twin) but whose pre-tokenizer cuts words otherwise goes through the twin."""
    tok = Tokenizer.from_str(wordpiece_style(normalizers.Lowercase()))
    tok.pre_tokenizer = {"whitespace": pre_tokenizers.Whitespace(), "metaspace": pre_tokenizers.Metaspace(),
                         "whitespace_split": pre_tokenizers.WhitespaceSplit()}[pre_tokenizer]
    hf = HFTokenizer.from_json(tok.to_str())
    assert hf._prenormalized is not None and hf._prenormalized.words is None
    items = [["The stream's end.", " (42) x"], ["don't", ""]]
    assert (hf.encode_pieces(items)[0].tolist(), hf.encode_pieces(items)[1].tolist()) == per_piece(hf, items)


def test_the_word_cache_keeps_no_long_words():
    """Words longer than max_word_chars go to the long words' dict instead of the table, up to max_long_chars;
    longer words and parts longer than max_word_chars are encoded each time, not kept (a stream of long unique
    words, such as hashes, must not fill the caches); all still get the tokenizer's ids; the dicts' values are
    tuples (the garbage collector need not walk a full cache)."""
    import gc

    tok = bundled_default()
    words = tok._prenormalized.words
    limit, long_limit = words.max_word_chars, words.max_long_chars
    words._words, words._parts, words._long = _WordTable(words.max_words), _IdTable(), _IdTable()
    items = [["short words, then " + "a1" * limit + " and (" + "z" * (limit + 5) + ")."],
             ["x" * (limit + 1), " " + "y" * limit, " " + "b2" * long_limit + " " + "c" * long_limit]]
    for _ in range(2):
        ids, ends = tok.encode_pieces(items)
        assert (ids.tolist(), ends.tolist()) == per_piece(tok, items)
    assert max(map(len, words._parts.ids)) <= limit
    every = {w for ps in items for p in ps for w in p.lower().split()}
    table = words._words
    assert table.words == len({w for w in every if len(w) <= limit}) and "y" * limit in every
    assert table.size == int(table.count[table.keys[:, 0] != 0].sum())
    assert set(words._long.ids) == {w for w in every if limit < len(w) <= long_limit} and "c" * long_limit in every
    gc.collect()
    assert not any(gc.is_tracked(v) for d in (words._parts, words._long) for v in d.ids.values())


def test_the_word_cache_on_random_words_of_every_length():
    """Random printable ASCII words of 1 to 40 characters (each lane edge of `_word_keys` and past max_word_chars),
    every kind of whitespace between them, an odd piece of other text among them, in a cache small enough to
    start over often: each call the tokenizer's ids, cold and warm."""
    tok = bundled_default()
    words = tok._prenormalized.words
    words.max_words, words._words = 64, _WordTable(64)
    rng = random.Random(11)
    printable = [chr(c) for c in range(0x21, 0x7F)]

    def piece(other: bool) -> str:
        out = []
        for _ in range(rng.randrange(0, 8)):
            out.append(rng.choice([" ", "  ", "\t", "\n", "\r\n", ""]))
            n = rng.choice([1, 2, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 40])
            out.append("".join(rng.choice(printable) for _ in range(n)))
        if other and rng.random() < 0.3:
            out.append(" Zürich")
        return "".join(out)

    for k in range(40):
        items = [[piece(k % 5 == 0) for _ in range(rng.randrange(1, 6))] for _ in range(rng.randrange(1, 4))]
        for _ in range(2):
            ids, ends = tok.encode_pieces(items)
            assert (ids.tolist(), ends.tolist()) == per_piece(tok, items), items


@pytest.mark.parametrize("style", ["default", "bert"])
def test_the_python_wordpiece_gives_the_tokenizers_ids(style):
    """`_WordPiece` (new parts of the word cache) against the twin on single words: in the vocabulary, made of
    continuations, past max_input_chars_per_word, and of characters no token covers (the unknown token alone)."""
    tok = bundled_default() if style == "default" else HFTokenizer.from_json(
        wordpiece_style(normalizers.BertNormalizer(lowercase=True)))
    words = tok._prenormalized.words
    assert isinstance(words.wordpiece, _WordPiece)
    rng = random.Random(9)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789" + ("ABCXYZ" if style == "bert" else "")
    cases = ["the", "stream", "retention", "streams", "x" * 12, "x" * 13, "q" * 200, "zzzqqq", "7", "1234567890123"]
    cases += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))) for _ in range(500)]
    cases += list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    encoded = words.twin.encode_batch_fast([[w] for w in cases], is_pretokenized=True, add_special_tokens=False)
    for w, e in zip(cases, encoded):
        assert words.wordpiece(w) == tuple(e.ids), w


def test_the_word_cache_makes_new_parts_with_the_twin_when_the_python_wordpiece_disagrees(monkeypatch):
    """A Python WordPiece that gives other ids than the twin on the load's probe is not used: the cache then makes
    new parts with the twin, and its ids are the tokenizer's."""
    monkeypatch.setattr(_WordPiece, "__call__", lambda self, word: (self.unk,))
    tok = bundled_default()
    assert tok._prenormalized.words.wordpiece is None
    items = [["New words: zyxwv qwertz, (see) the_end."]]
    assert tuple(map(np.ndarray.tolist, tok.encode_pieces(items))) == per_piece(tok, items)
    monkeypatch.setattr(_WordPiece, "of", classmethod(lambda cls, spec: None))
    assert _WordCache.of(json.loads(tok.source_json), tok._prenormalized.twin).wordpiece is None


def test_the_word_table_finds_what_it_holds_through_collisions():
    """`_WordTable` against a dict: words of 1 to 32 bytes (the four lanes' edges among them), added in rounds to
    a table of 16 slots and many more, so that probes run long and several new words claim one slot at once;
    every held word found with its own ids, every other word not found."""
    rng = random.Random(5)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789.,-'"
    pool = sorted({"".join(rng.choice(alphabet) for _ in range(rng.choice([1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 32])))
                   for _ in range(600)})

    def keys_of(ws):
        text = " ".join(ws)
        b = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        starts = np.cumsum([0] + [len(w) + 1 for w in ws[:-1]]).astype(np.int64)
        return _word_keys(b, starts, np.array(list(map(len, ws)), dtype=np.int64))

    for max_words in (8, 400):
        table, held = _WordTable(max_words), {}
        order = rng.sample(pool, len(pool))
        while order:
            batch = [w for w in order[:rng.randrange(1, 30)] if w not in held][: max_words - table.words]
            order = order[len(batch) or 1:]
            if not batch:
                continue
            ids = [tuple(rng.randrange(30000) for _ in range(rng.randrange(0, 4))) for _ in batch]
            if not table.fits(len(batch), sum(map(len, ids))):
                break
            table.add(keys_of(batch), np.array(list(map(len, ids)), dtype=np.int64),
                      np.array([i for t in ids for i in t], dtype=np.int64))
            held.update(zip(batch, ids))
            slots = table.find(keys_of(pool))
            for w, s in zip(pool, slots.tolist()):
                if w in held:
                    assert s >= 0 and tuple(table.ids[table.start[s]:][:table.count[s]].tolist()) == held[w], w
                else:
                    assert s == -1, w
        assert table.words == len(held) > 0


def test_the_word_cache_starts_over_past_its_bounds():
    """A cache starts over before it would hold more than its bounds (the table and the parts: max_words entries,
    4 * max_words ids; the long words: max_words // 8 entries, max_words ids), and the ids stay right across the
    restarts."""
    tok = bundled_default()
    words = tok._prenormalized.words
    # (bounds set after the load's probe filled the caches: each starts empty under them)
    words.max_words, words._words, words._parts, words._long = 40, _WordTable(40), _IdTable(), _IdTable()
    rng = random.Random(4)
    for _ in range(30):
        items = [[" ".join(f"w{rng.randrange(10 ** 6)}x" if rng.random() < 0.7 else f"{'l' * 40}{rng.randrange(99)}"
                           for _ in range(rng.randrange(1, 12)))]]
        ids, ends = tok.encode_pieces(items)
        assert (ids.tolist(), ends.tolist()) == per_piece(tok, items)
        assert len(words._parts.ids) <= 40 and words._parts.size <= 160
        assert words._words.words <= 40 and words._words.size <= 160
        assert len(words._long.ids) <= 40 // 8 and words._long.size <= 40
