"""The data of Chapters 8 and 9: the date task, the tokenizer, batching, the toy grammar.

The date formats are checked against an independent reader (``datetime.strptime``
after removing ordinal suffixes), the grammar's parser against the
probabilities of the sampler that generated each sentence.
"""

import datetime as dt
import math
import random
import re

import pytest
import torch

from transformer_workbook import data as D
from transformer_workbook.data import (
    DATE_FORMATS,
    GRAMMAR,
    CharTokenizer,
    Grammar,
    batch_stream,
    collate_lm,
    collate_seq2seq,
    date_splits,
    date_tokenizer,
    expand_two_digit_year,
    format_date,
    is_grammatical,
    ordinal,
    pad_sequences,
    text_corpus,
    text_tokenizer,
)

# ---- dates -------------------------------------------------------------------

# How each format reads back with strptime (after "24th" -> "24" and a
# two-digit year expanded by the task's century rule).
STRPTIME = {
    "d Mon yyyy": "%d %b %Y",
    "d Month yyyy": "%d %B %Y",
    "Month d, yyyy": "%B %d, %Y",
    "Mon d, yyyy": "%b %d, %Y",
    "Mon. d, yyyy": "%b. %d, %Y",
    "Mon dth, yyyy": "%b %d, %Y",
    "dth Month yyyy": "%d %B %Y",
    "the dth of Month, yyyy": "the %d of %B, %Y",
    "Weekday, the dth of Month yyyy": "%A, the %d of %B %Y",
    "Weekday, Month d, yyyy": "%A, %B %d, %Y",
    "Wkd d Mon yyyy": "%a %d %b %Y",
    "d MON yyyy": "%d %b %Y",
    "dd-Mon-yy": "%d-%b-%Y",
    "m/d/yy": "%m/%d/%Y",
    "mm/dd/yyyy": "%m/%d/%Y",
    "dd.mm.yyyy": "%d.%m.%Y",
    "d.m.yy": "%d.%m.%Y",
    "yyyy/mm/dd": "%Y/%m/%d",
    "yyyymmdd": "%Y%m%d",
    "yyyy-mm-dd": "%Y-%m-%d",
}


def read_date(text: str, fmt: str) -> dt.date:
    """An independent reader of each format (strptime; English month names in the C locale)."""
    text = re.sub(r"(\d+)(st|nd|rd|th)\b", r"\1", text)
    if fmt in ("dd-Mon-yy", "m/d/yy", "d.m.yy"):  # expand the two-digit year at the end
        head, yy = text[:-2], int(text[-2:])
        text = head + str(expand_two_digit_year(yy))
    if fmt == "d MON yyyy":
        text = text.title()
    return dt.datetime.strptime(text, STRPTIME[fmt]).date()


EDGE_DATES = [
    D.DATE_MIN, D.DATE_MAX, dt.date(1999, 12, 31), dt.date(2000, 1, 1), dt.date(2000, 2, 29),
    dt.date(2026, 11, 24), dt.date(1987, 3, 7), dt.date(2011, 11, 11), dt.date(2012, 12, 12),
    dt.date(2013, 1, 13), dt.date(2021, 5, 21), dt.date(2022, 6, 22), dt.date(2023, 7, 23),
    dt.date(2031, 10, 31), dt.date(1962, 8, 1), dt.date(1974, 9, 2), dt.date(1983, 4, 3),
]  # fmt: skip


def test_every_format_has_a_reader():
    assert set(STRPTIME) == set(DATE_FORMATS)
    assert len(DATE_FORMATS) >= 15


@pytest.mark.parametrize("fmt", list(DATE_FORMATS))
def test_format_reads_back_to_the_date(fmt):
    dates = EDGE_DATES + D.all_dates()[::97]
    for d in dates:
        text = format_date(d, fmt)
        assert read_date(text, fmt) == d, (fmt, text)


@pytest.mark.parametrize("fmt", [f for f in DATE_FORMATS if "Weekday" in f or "Wkd" in f])
def test_weekday_names_are_the_dates_weekday(fmt):
    for d in EDGE_DATES + D.all_dates()[::61]:
        text = format_date(d, fmt)
        assert text.startswith(d.strftime("%A" if "Weekday" in fmt else "%a")), text


def test_the_issues_examples_are_formats_of_the_task():
    d = dt.date(2026, 11, 24)
    written = {format_date(d, f) for f in DATE_FORMATS}
    for example in [
        "24 Nov 2026", "November 24, 2026", "11/24/26", "Tuesday, the 24th of November 2026",
        "24.11.2026", "2026/11/24", "24-Nov-26", "Nov 24th, 2026", "the 24th of November, 2026",
        "2026-11-24",
    ]:  # fmt: skip
        assert example in written


def test_no_string_names_two_dates():
    """Exhaustive over the whole range and every format: the task is well defined."""
    seen: dict[str, dt.date] = {}
    for d in D.all_dates():
        for fmt in DATE_FORMATS:
            text = format_date(d, fmt)
            assert seen.setdefault(text, d) == d, f"{text!r} names {seen[text]} and {d}"


def test_century_rule_and_ordinals():
    assert [expand_two_digit_year(y) for y in (0, 26, 49, 50, 87, 99)] == [2000, 2026, 2049, 1950, 1987, 1999]
    with pytest.raises(ValueError):
        expand_two_digit_year(100)
    assert [ordinal(n) for n in (1, 2, 3, 4, 10, 11, 12, 13, 14, 20, 21, 22, 23, 24, 30, 31)] == [
        "1st", "2nd", "3rd", "4th", "10th", "11th", "12th", "13th", "14th", "20th", "21st", "22nd",
        "23rd", "24th", "30th", "31st",
    ]  # fmt: skip


def test_dates_outside_the_range_and_unknown_formats_are_refused():
    with pytest.raises(ValueError, match="outside"):
        format_date(dt.date(2050, 1, 1), "d Mon yyyy")
    with pytest.raises(ValueError, match="unknown"):
        format_date(dt.date(2000, 1, 1), "dd/mm/yyyy")


@pytest.fixture(scope="module")
def splits():
    return date_splits(n_train=20_000, n_validation=1_000, n_test=2_000, seed=0)


def test_splits_share_no_date_and_no_source_string(splits):
    dates = {name: set(ds) for name, ds in splits.dates.items()}
    assert not dates["train"] & dates["validation"]
    assert not dates["train"] & dates["test"]
    assert not dates["validation"] & dates["test"]
    assert set().union(*dates.values()) == set(D.all_dates())
    sources = {name: {s for s, _ in getattr(splits, name)} for name in ("train", "validation", "test")}
    assert not sources["train"] & sources["validation"]
    assert not sources["train"] & sources["test"]
    assert not sources["validation"] & sources["test"]
    # and the examples of each split use that split's dates only
    for name in ("train", "validation", "test"):
        assert {dt.date.fromisoformat(t) for _, t in getattr(splits, name)} <= dates[name]


def test_splits_sizes_targets_and_no_repeats(splits):
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (20_000, 1_000, 2_000)
    for name in ("train", "validation", "test"):
        pairs = getattr(splits, name)
        assert len(set(pairs)) == len(pairs)
        for s, t in pairs[:500]:
            d = dt.date.fromisoformat(t)
            assert s in {format_date(d, f) for f in DATE_FORMATS}


def test_every_format_occurs_in_every_split(splits):
    for name in ("train", "validation", "test"):
        found = set()
        for s, t in getattr(splits, name):
            d = dt.date.fromisoformat(t)
            found |= {f for f in DATE_FORMATS if format_date(d, f) == s}
        assert found == set(DATE_FORMATS), name


def test_splits_are_seeded(splits):
    again = date_splits(n_train=20_000, n_validation=1_000, n_test=2_000, seed=0)
    assert again.train == splits.train and again.test == splits.test
    other = date_splits(n_train=20_000, n_validation=1_000, n_test=2_000, seed=1)
    assert other.test != splits.test


def test_splits_formats_argument():
    sp = date_splits(n_train=100, n_validation=10, n_test=10, formats=["yyyy-mm-dd"])
    assert all(s == t for s, t in sp.train + sp.test)
    with pytest.raises(ValueError):
        date_splits(formats=["nope"])


# ---- tokenizer -----------------------------------------------------------------


def test_special_tokens_come_first():
    tok = CharTokenizer("abc")
    assert tok.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    assert tok.vocab_size == len(tok) == 7


def test_encode_decode_round_trip_and_framing():
    tok = date_tokenizer()
    for s, t in date_splits(n_train=2_000, n_validation=10, n_test=10).train:
        ids = tok.encode(s)
        assert tok.unk_id not in ids
        assert tok.decode(ids) == s
        framed = tok.encode(t, bos=True, eos=True)
        assert framed[0] == tok.bos_id and framed[-1] == tok.eos_id
        assert tok.decode(framed) == t
    assert tok.decode(torch.tensor(tok.encode("2026-11-24"))) == "2026-11-24"


def test_decode_stops_at_eos_and_skips_padding():
    tok = CharTokenizer("ab")
    a, b = tok.stoi["a"], tok.stoi["b"]
    assert tok.decode([tok.bos_id, a, b, tok.eos_id, a, a]) == "ab"
    assert tok.decode([a, tok.pad_id, b]) == "ab"
    assert tok.encode("aéb") == [a, tok.unk_id, b]
    assert tok.decode(tok.encode("aéb")) == "a?b"
    with pytest.raises(ValueError):
        tok.decode([99])


def test_tokenizer_validation_and_serialization():
    with pytest.raises(ValueError):
        CharTokenizer("aa")
    tok = date_tokenizer()
    assert CharTokenizer.from_dict(tok.to_dict()) == tok
    assert CharTokenizer.from_texts(["ba", "c"]).alphabet == "abc"
    assert set("0123456789-") <= set(tok.alphabet)


# ---- batching -----------------------------------------------------------------


def test_pad_sequences_and_the_padding_mask():
    ids, lengths = pad_sequences([[5, 6, 7], [8], [9, 10]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 2]
    mask = torch.arange(ids.size(1))[None] < lengths[:, None]
    assert torch.equal(mask, ids != 0)
    with pytest.raises(ValueError):
        pad_sequences([])


def test_collate_seq2seq_shifts_the_target():
    tok = date_tokenizer()
    pairs = [("24 Nov 2026", "2026-11-24"), ("1.2.03", "2003-02-01")]
    b = collate_seq2seq(pairs, tok)
    assert b.src.shape == (2, 11) and b.src_lengths.tolist() == [11, 6]
    assert (b.tgt_in[:, 0] == tok.bos_id).all()
    assert torch.equal(b.tgt_in[:, 1:], b.tgt_out[:, :-1])
    assert (b.tgt_out[torch.arange(2), b.tgt_lengths - 1] == tok.eos_id).all()
    assert tok.decode(b.tgt_out[0]) == "2026-11-24" and tok.decode(b.src[1]) == "1.2.03"
    assert len(b) == 2 and b.to("cpu").src.equal(b.src)


def test_collate_lm_shifts_by_one():
    tok = text_tokenizer()
    b = collate_lm(["the dog runs .", "a cat sings ."], tok)
    assert (b.inputs[:, 0] == tok.bos_id).all()
    assert b.lengths.tolist() == [15, 14]
    for i in range(2):
        n = int(b.lengths[i])
        assert torch.equal(b.inputs[i, 1:n], b.targets[i, : n - 1])
        assert b.targets[i, n - 1] == tok.eos_id and (b.targets[i, n:] == tok.pad_id).all()


def _collect(stream, n):
    return [next(stream) for _ in range(n)]


def test_batch_stream_covers_each_epoch_once_and_is_seeded():
    examples = [str(i) * (1 + i % 7) for i in range(100)]
    ident = lambda batch: list(batch)  # noqa: E731
    for length in (None, len):
        stream = batch_stream(examples, 10, ident, seed=3, length=length, bucket_batches=4)
        epoch = [x for b in _collect(stream, 10) for x in b]
        assert sorted(epoch) == sorted(examples)
        again = batch_stream(examples, 10, ident, seed=3, length=length, bucket_batches=4)
        assert _collect(again, 25) == _collect(batch_stream(examples, 10, ident, seed=3, length=length,
                                                            bucket_batches=4), 25)  # fmt: skip
    other = batch_stream(examples, 10, ident, seed=4)
    assert _collect(other, 3) != _collect(batch_stream(examples, 10, ident, seed=3), 3)


def test_bucketing_reduces_padding():
    sp = date_splits(n_train=5_000, n_validation=10, n_test=10)
    tok = date_tokenizer()

    def padded(length):
        stream = batch_stream(sp.train, 100, lambda b: collate_seq2seq(b, tok), length=length)
        return sum(b.src.numel() for b in _collect(stream, 50))

    assert padded(lambda p: len(p[0])) < 0.75 * padded(None)


# ---- grammar -----------------------------------------------------------------


def test_samples_parse_once_with_the_samplers_probability():
    rng = random.Random(0)
    for _ in range(3_000):
        sentence, lp = GRAMMAR.sample_with_log_prob(rng)
        parses = GRAMMAR.parse(sentence)
        assert len(parses) == 1, sentence  # grammatical, and unambiguous
        assert parses[0] == pytest.approx(lp, abs=1e-9)
        assert GRAMMAR.log_prob(sentence) == pytest.approx(lp, abs=1e-9)


def test_the_grammar_has_nesting_agreement_and_prepositions():
    rng = random.Random(1)
    sentences = [GRAMMAR.sample(rng) for _ in range(2_000)]
    words = {w for s in sentences for w in s.split()}
    assert {"that", "an", "a", "two", "foxes", "fox", "run", "runs", "near"} <= words
    assert any(s.count("that") == 2 for s in sentences)  # depth 2
    assert not any(s.count("that") > 4 for s in sentences)
    assert is_grammatical("the two red foxes that the dog sees run .")


class TinyGrammar(Grammar):
    """One word per category: a finite language whose probabilities can be summed."""

    determiners = {"sg": ("a",), "pl": ("two",)}
    adjectives = ("old", "red")
    nouns = {"sg": ("owl",), "pl": ("owls",)}
    intransitive = {"sg": ("sings",), "pl": ("sing",)}
    transitive = {"sg": ("sees",), "pl": ("see",)}
    prepositions = ("near",)


@pytest.mark.parametrize(
    "kwargs,size",
    [
        # NP[n] = 5 (0, 1 or 2 different adjectives); VP[n] = 1 + 2 * 5 (PP) + 2 * 5 (object) = 21;
        # S = 2 numbers * 5 * 21.
        (dict(max_depth=0, p_adjectives=(0.6, 0.3, 0.1)), 210),
        # No adjectives. NP1 = 1, VP1 = 1 + 2 + 2 = 5, NP0 = 1 + 5 (subject relative) + 2 (object
        # relative) = 8, VP0 = 1 + 2 + 2 * 8 = 19; S = 2 * 8 * 19.
        (dict(max_depth=1, p_rel=0.5, p_pp=0.5, p_adjectives=(1.0, 0.0, 0.0)), 304),
    ],
)
def test_probabilities_of_a_finite_language_sum_to_one(kwargs, size):
    """A grammar with one word per slot has a finite language: sample it all, sum p(s)."""
    g = TinyGrammar(**kwargs)
    rng = random.Random(0)
    language = {g.sample(rng) for _ in range(30_000)}
    assert len(language) == size  # counted by hand above: every sentence was drawn
    assert sum(math.exp(g.log_prob(s)) for s in language) == pytest.approx(1.0, abs=1e-9)
    assert all(len(g.parse(s)) == 1 for s in language)


@pytest.mark.parametrize(
    "sentence",
    [
        "the dog run .",  # subject-verb agreement
        "the dogs runs .",
        "two fox runs .",  # determiner-noun agreement
        "a dogs run .",
        "these cat sleeps .",
        "a owl sleeps .",  # a / an
        "an dog sleeps .",
        "an big owl sleeps .",
        "the foxes that the dog see run .",  # agreement inside an object relative clause
        "the foxes that the dog sees runs .",  # ... and of the main verb across it
        "the fox that see the dog runs .",  # subject relative: the verb agrees with the head noun
        "the dog sees .",  # a transitive verb needs an object
        "the dog sleeps the cat .",  # an intransitive verb takes none
        "the dog runs",  # no full stop
        "the dog runs.",  # the full stop is its own word
        "the  dog runs .",  # two spaces
        "The dog runs .",  # capital letter
        "the red red dog runs .",  # the same adjective twice
        "the big red old dog runs .",  # three adjectives
        "dog the runs .",  # scrambles
        "the runs dog .",
        "runs the dog .",
        "the dog near the cat runs .",  # prepositional phrases follow intransitive verbs only
        "the dog runs near the cat that sleeps .",  # no relative clause inside one
        "the dog that runs .",  # a relative clause is not a sentence
        "that the dog runs .",
        "",
        ".",
    ],
)
def test_ungrammatical_sentences_are_rejected(sentence):
    assert not is_grammatical(sentence)


def test_depth_is_limited():
    deep = "the dog that the cat that the fox that the owl sees likes chases runs ."  # depth 3
    assert not is_grammatical(deep)
    assert is_grammatical(deep, Grammar(max_depth=3))
    assert is_grammatical("the dog that the cat that the fox likes chases runs .")  # depth 2
    assert not is_grammatical("the dog that the cat chases runs .", Grammar(max_depth=0))


def test_scrambled_samples_are_almost_always_rejected():
    rng = random.Random(2)
    rejected = total = 0
    for _ in range(500):
        words = GRAMMAR.sample(rng).split(" ")
        body = words[:-1]
        shuffled = body[:]
        rng.shuffle(shuffled)
        if shuffled == body:
            continue
        total += 1
        rejected += not is_grammatical(" ".join(shuffled + ["."]))
    assert rejected / total > 0.95


def test_grammar_validation():
    with pytest.raises(ValueError):
        Grammar(max_depth=-1)
    with pytest.raises(ValueError):
        Grammar(p_rel=1.5)
    with pytest.raises(ValueError):
        Grammar(p_adjectives=(0.5, 0.5, 0.5))


def test_text_corpus_held_out_is_new_and_grammatical():
    c = text_corpus(n_train=3_000, n_validation=300, n_test=300, seed=0)
    assert len(c.train) == 3_000 and len(c.validation) == 300 and len(c.test) == 300
    train = set(c.train)
    assert not train & set(c.validation) and not train & set(c.test)
    assert not set(c.validation) & set(c.test)
    assert all(is_grammatical(s) for s in c.train[:500] + c.test)
    assert text_corpus(n_train=3_000, n_validation=300, n_test=300, seed=0).test == c.test
    assert text_corpus(n_train=3_000, n_validation=300, n_test=300, seed=1).test != c.test
    tok = text_tokenizer()
    assert all(tok.unk_id not in tok.encode(s) for s in c.train)


def test_formats_of_finds_the_writing():
    import datetime

    d = datetime.date(2026, 11, 24)
    for fmt, write in D.DATE_FORMATS.items():
        assert fmt in D.formats_of(write(d), d.isoformat())
    assert D.formats_of("not a date", "2026-11-24") == []
