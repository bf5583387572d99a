"""Chapters 8 and 9: the data, generated in the package, never downloaded.

Three parts:

**Dates (Chapter 8).** A seq2seq task: rewrite a date written in one of many
human formats (``"24 Nov 2026"``, ``"November 24, 2026"``, ``"11/24/26"``,
``"Tuesday, the 24th of November 2026"``, ...) as ISO ``"2026-11-24"``.
Every date lies in :data:`DATE_MIN` .. :data:`DATE_MAX` (1950-01-01 to
2049-12-31), so a two-digit year is never ambiguous: **00-49 mean 2000-2049,
50-99 mean 1950-1999** (:func:`expand_two_digit_year`). Weekday names are the
true weekday of the date. No format is ambiguous (a string names one date):
month-first numeric dates use ``/`` (US), day-first ones use ``.``.
:func:`date_splits` assigns every *date* to exactly one of train, validation
and test, so the splits share no date and therefore no input string.

**Tokenization and batching (both chapters).** :class:`CharTokenizer` maps
characters to ids, with four special tokens: ``<pad>`` (0), ``<bos>`` (1),
``<eos>`` (2) and ``<unk>`` (3). :func:`pad_sequences` pads a batch and
returns the lengths; :func:`collate_seq2seq` and :func:`collate_lm` build the
tensors the masks of Chapter 6 are made from; :func:`batch_stream` yields
seeded, length-bucketed batches for as many steps as training asks.

**A toy English (Chapter 9).** :class:`Grammar` is a probabilistic grammar of
a small English-like language with agreement and nesting
(``"the two red foxes that the dog sees run ."``). It samples sentences with
a seeded generator, and its parser (:meth:`Grammar.parse`,
:func:`is_grammatical`) accepts exactly the sentences the grammar can
generate, so every sample a model writes can be checked. Because the grammar
is known, so is the probability of each sentence, and hence the best
perplexity any model could reach (:meth:`Grammar.log_prob`).
:func:`text_corpus` makes train, validation and test sets of sentences.
"""

from __future__ import annotations

import datetime as _dt
import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

__all__ = [
    "DATE_MIN",
    "DATE_MAX",
    "MONTHS",
    "WEEKDAYS",
    "DATE_FORMATS",
    "expand_two_digit_year",
    "ordinal",
    "format_date",
    "date_example",
    "formats_of",
    "all_dates",
    "DateSplits",
    "date_splits",
    "date_tokenizer",
    "PAD",
    "BOS",
    "EOS",
    "UNK",
    "CharTokenizer",
    "pad_sequences",
    "Seq2SeqBatch",
    "LMBatch",
    "collate_seq2seq",
    "collate_lm",
    "batch_stream",
    "Grammar",
    "GRAMMAR",
    "is_grammatical",
    "TextCorpus",
    "text_corpus",
    "text_tokenizer",
]

# ---------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------

DATE_MIN = _dt.date(1950, 1, 1)
"""The first date of the task."""
DATE_MAX = _dt.date(2049, 12, 31)
"""The last date of the task (a century, so two-digit years are unambiguous)."""

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def expand_two_digit_year(yy: int) -> int:
    """The century rule of the date task: 00-49 are 2000-2049, 50-99 are 1950-1999.

    It matches the task's range (:data:`DATE_MIN` .. :data:`DATE_MAX`), so
    ``"11/24/26"`` is 2026-11-24 and ``"3/7/87"`` is 1987-03-07.
    """
    if not 0 <= yy <= 99:
        raise ValueError(f"a two-digit year is 0..99, got {yy}")
    return 2000 + yy if yy < 50 else 1900 + yy


def ordinal(n: int) -> str:
    """English ordinal of a day of the month: 1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st, 22nd."""
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _mon(d: _dt.date) -> str:
    return MONTHS[d.month - 1][:3]


def _month(d: _dt.date) -> str:
    return MONTHS[d.month - 1]


def _wday(d: _dt.date) -> str:
    return WEEKDAYS[d.weekday()]


# Every format, with what it writes for Tuesday 2026-11-24 and 1987-03-07 (a Saturday).
# Day-first numeric dates use dots, month-first use slashes: no string names two dates.
DATE_FORMATS: dict[str, Callable[[_dt.date], str]] = {
    # "24 Nov 2026", "7 Mar 1987"
    "d Mon yyyy": lambda d: f"{d.day} {_mon(d)} {d.year}",
    # "24 November 2026"
    "d Month yyyy": lambda d: f"{d.day} {_month(d)} {d.year}",
    # "November 24, 2026"
    "Month d, yyyy": lambda d: f"{_month(d)} {d.day}, {d.year}",
    # "Nov 24, 2026"
    "Mon d, yyyy": lambda d: f"{_mon(d)} {d.day}, {d.year}",
    # "Nov. 24, 2026"
    "Mon. d, yyyy": lambda d: f"{_mon(d)}. {d.day}, {d.year}",
    # "Nov 24th, 2026", "Mar 7th, 1987"
    "Mon dth, yyyy": lambda d: f"{_mon(d)} {ordinal(d.day)}, {d.year}",
    # "24th November 2026"
    "dth Month yyyy": lambda d: f"{ordinal(d.day)} {_month(d)} {d.year}",
    # "the 24th of November, 2026"
    "the dth of Month, yyyy": lambda d: f"the {ordinal(d.day)} of {_month(d)}, {d.year}",
    # "Tuesday, the 24th of November 2026"
    "Weekday, the dth of Month yyyy": lambda d: f"{_wday(d)}, the {ordinal(d.day)} of {_month(d)} {d.year}",
    # "Tuesday, November 24, 2026"
    "Weekday, Month d, yyyy": lambda d: f"{_wday(d)}, {_month(d)} {d.day}, {d.year}",
    # "Tue 24 Nov 2026"
    "Wkd d Mon yyyy": lambda d: f"{_wday(d)[:3]} {d.day} {_mon(d)} {d.year}",
    # "24 NOV 2026"
    "d MON yyyy": lambda d: f"{d.day} {_mon(d).upper()} {d.year}",
    # "24-Nov-26", "07-Mar-87"
    "dd-Mon-yy": lambda d: f"{d.day:02d}-{_mon(d)}-{d.year % 100:02d}",
    # "11/24/26", "3/7/87" (US order, no leading zeros, two-digit year)
    "m/d/yy": lambda d: f"{d.month}/{d.day}/{d.year % 100:02d}",
    # "11/24/2026", "03/07/1987"
    "mm/dd/yyyy": lambda d: f"{d.month:02d}/{d.day:02d}/{d.year}",
    # "24.11.2026", "07.03.1987" (day first)
    "dd.mm.yyyy": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    # "24.11.26", "7.3.87"
    "d.m.yy": lambda d: f"{d.day}.{d.month}.{d.year % 100:02d}",
    # "2026/11/24"
    "yyyy/mm/dd": lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
    # "20261124"
    "yyyymmdd": lambda d: f"{d.year}{d.month:02d}{d.day:02d}",
    # "2026-11-24": already ISO, the model must learn to copy it
    "yyyy-mm-dd": lambda d: d.isoformat(),
}


def format_date(d: _dt.date, fmt: str) -> str:
    """Write date ``d`` in format ``fmt`` (a key of :data:`DATE_FORMATS`)."""
    if not DATE_MIN <= d <= DATE_MAX:
        raise ValueError(f"{d} is outside the task's range {DATE_MIN} .. {DATE_MAX}")
    try:
        return DATE_FORMATS[fmt](d)
    except KeyError:
        raise ValueError(f"unknown date format {fmt!r}; known: {list(DATE_FORMATS)}") from None


def date_example(d: _dt.date, fmt: str) -> tuple[str, str]:
    """One ``(source, target)`` pair: ``d`` written in ``fmt``, and ``d`` in ISO format."""
    return format_date(d, fmt), d.isoformat()


def formats_of(source: str, target: str) -> list[str]:
    """The formats (keys of :data:`DATE_FORMATS`) that write the date ``target`` as ``source``.

    ``target`` is an ISO date (``"2026-11-24"``). Usually one format; two when
    they coincide for this date (``"May 17, 1983"`` is both ``"Month d, yyyy"``
    and ``"Mon d, yyyy"``); none when ``source`` is not a writing of ``target``.
    Used to analyse a model's errors by format.
    """
    d = _dt.date.fromisoformat(target)
    return [fmt for fmt, write in DATE_FORMATS.items() if write(d) == source]


def all_dates() -> list[_dt.date]:
    """Every date of the task's range, in order (36,524 dates)."""
    n = (DATE_MAX - DATE_MIN).days + 1
    return [DATE_MIN + _dt.timedelta(days=i) for i in range(n)]


@dataclass
class DateSplits:
    """Train, validation and test ``(source, target)`` pairs, and the dates behind each split.

    Every date belongs to exactly one split, so the splits share no date and,
    since every source string names exactly one date, no source string either.
    """

    train: list[tuple[str, str]]
    validation: list[tuple[str, str]]
    test: list[tuple[str, str]]
    dates: dict[str, list[_dt.date]] = field(repr=False)


def _examples(dates: Sequence[_dt.date], n: int, formats: Sequence[str], rng: random.Random):
    """``n`` pairs with different sources: a date of ``dates`` and a format, both drawn uniformly.

    (Two formats can write a date the same way, e.g. ``"May 17, 1983"`` is
    both ``"Month d, yyyy"`` and ``"Mon d, yyyy"``: such a repeat is skipped.)
    """
    if n > len(dates) * len(formats) // 2:
        raise ValueError(f"{n} examples is too many for {len(dates)} dates x {len(formats)} formats")
    seen: set[str] = set()
    out = []
    while len(out) < n:
        source, target = date_example(rng.choice(dates), rng.choice(formats))
        if source not in seen:
            seen.add(source)
            out.append((source, target))
    return out


def date_splits(
    n_train: int = 100_000,
    n_validation: int = 1_000,
    n_test: int = 2_000,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    formats: Sequence[str] | None = None,
) -> DateSplits:
    """Seeded train/validation/test sets of the date task.

    The dates of the range are shuffled with ``seed`` and cut by ``fractions``
    (80/10/10 by default: 29,219 / 3,652 / 3,653 dates), so each date belongs
    to one split only. Each split then draws its examples uniformly: a date of
    its own, a format of ``formats`` (default: all of :data:`DATE_FORMATS`),
    with no source string twice within a split. The same
    arguments always give the same lists.
    """
    formats = list(DATE_FORMATS) if formats is None else list(formats)
    for fmt in formats:
        if fmt not in DATE_FORMATS:
            raise ValueError(f"unknown date format {fmt!r}")
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three positive numbers summing to 1, got {fractions}")
    dates = all_dates()
    rng = random.Random(f"date-splits-{seed}")
    rng.shuffle(dates)
    n_tr = round(fractions[0] * len(dates))
    n_va = round(fractions[1] * len(dates))
    by_split = {
        "train": sorted(dates[:n_tr]),
        "validation": sorted(dates[n_tr : n_tr + n_va]),
        "test": sorted(dates[n_tr + n_va :]),
    }
    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    pairs = {
        name: _examples(by_split[name], sizes[name], formats, random.Random(f"date-{name}-{seed}"))
        for name in by_split
    }
    return DateSplits(pairs["train"], pairs["validation"], pairs["test"], by_split)


# ---------------------------------------------------------------------------
# Tokenization
# ---------------------------------------------------------------------------

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)


class CharTokenizer:
    """Characters to ids and back, with four special tokens first.

    Ids: ``<pad>`` 0 (fills short sequences of a batch; never predicted),
    ``<bos>`` 1 (starts every decoder input), ``<eos>`` 2 (ends every
    target: the model says when it is done), ``<unk>`` 3 (any character not
    in the alphabet), then the alphabet's characters in the order given.

    Args:
        alphabet: the characters, each once.
    """

    def __init__(self, alphabet: Iterable[str]):
        chars = list(alphabet)
        if len(set(chars)) != len(chars):
            raise ValueError("the alphabet lists a character twice")
        if any(len(c) != 1 for c in chars):
            raise ValueError("the alphabet must be single characters")
        self.alphabet = "".join(chars)
        self.itos: list[str] = list(SPECIALS) + chars
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = 0, 1, 2, 3

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """A tokenizer whose alphabet is every character of ``texts``, sorted."""
        return cls(sorted(set("".join(texts))))

    @property
    def vocab_size(self) -> int:
        """Number of ids: 4 specials plus the alphabet."""
        return len(self.itos)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, alphabet={self.alphabet!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and other.alphabet == self.alphabet

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of ``text``'s characters (``<unk>`` for unknown ones), optionally framed by bos/eos."""
        ids = [self.stoi.get(c, self.unk_id) for c in text]
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """Text of ``ids``: stops at the first ``<eos>``, drops ``<pad>`` and ``<bos>``.

        ``<unk>`` is written as ``"?"`` (where the original character is lost).
        """
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"id {i} is outside the vocabulary (size {self.vocab_size})")
            out.append("?" if i == self.unk_id else self.itos[i])
        return "".join(out)

    def to_dict(self) -> dict:
        """A JSON-able description (saved with a model so it can be rebuilt)."""
        return {"alphabet": self.alphabet}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        return cls(d["alphabet"])


def date_tokenizer() -> CharTokenizer:
    """The date task's tokenizer: one vocabulary for sources and targets.

    Its alphabet is every character any format writes (letters of the month
    and weekday names, digits, space and ``,./-``); the targets use only
    digits and ``-``.
    """
    chars: set[str] = set("0123456789-")
    for d in (_dt.date(2001, 1, 1) + _dt.timedelta(days=i) for i in range(400)):
        for fmt in DATE_FORMATS:
            chars.update(format_date(d, fmt))
    return CharTokenizer(sorted(chars))


# ---------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack id lists of different lengths into ``(B, L_max)``, right-padded with ``pad_id``.

    Returns ``(ids, lengths)``: ``ids`` is int64 ``(B, L_max)``; ``lengths`` is
    int64 ``(B,)``, the true length of each row, from which the padding mask
    is ``arange(L_max) < lengths[:, None]``.
    """
    if len(seqs) == 0:
        raise ValueError("cannot pad an empty batch")
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)  # (B,)
    ids = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)  # (B, L_max)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return ids, lengths


@dataclass
class Seq2SeqBatch:
    """A padded seq2seq batch (teacher forcing).

    - ``src`` ``(B, S)``: source ids, right-padded with ``<pad>``; ``src_lengths`` ``(B,)``.
    - ``tgt_in`` ``(B, T)``: ``<bos> y_1 ... y_n``, the decoder's input.
    - ``tgt_out`` ``(B, T)``: ``y_1 ... y_n <eos>``, what it must predict
      (the input shifted left by one); ``<pad>`` where there is nothing to predict.
    - ``tgt_lengths`` ``(B,)``: ``n + 1`` for each row.
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    tgt_lengths: torch.Tensor

    def to(self, device: torch.device | str) -> Seq2SeqBatch:
        return Seq2SeqBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    def __len__(self) -> int:
        return self.src.size(0)


@dataclass
class LMBatch:
    """A padded language-model batch: predict each next character.

    - ``inputs`` ``(B, L)``: ``<bos> x_1 ... x_n``, right-padded with ``<pad>``.
    - ``targets`` ``(B, L)``: ``x_1 ... x_n <eos>``, ``<pad>`` after the end.
    - ``lengths`` ``(B,)``: ``n + 1`` for each row.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor

    def to(self, device: torch.device | str) -> LMBatch:
        return LMBatch(self.inputs.to(device), self.targets.to(device), self.lengths.to(device))

    def __len__(self) -> int:
        return self.inputs.size(0)


def collate_seq2seq(
    pairs: Sequence[tuple[str, str]], src_tokenizer: CharTokenizer, tgt_tokenizer: CharTokenizer | None = None
) -> Seq2SeqBatch:
    """Tokenize and pad ``(source, target)`` pairs into a :class:`Seq2SeqBatch`."""
    tgt_tokenizer = src_tokenizer if tgt_tokenizer is None else tgt_tokenizer
    src, src_lengths = pad_sequences([src_tokenizer.encode(s) for s, _ in pairs], src_tokenizer.pad_id)
    tgt = [tgt_tokenizer.encode(t, bos=True, eos=True) for _, t in pairs]  # <bos> y <eos>
    tgt_in, _ = pad_sequences([t[:-1] for t in tgt], tgt_tokenizer.pad_id)  # (B, T) <bos> y
    tgt_out, tgt_lengths = pad_sequences([t[1:] for t in tgt], tgt_tokenizer.pad_id)  # (B, T) y <eos>
    return Seq2SeqBatch(src, src_lengths, tgt_in, tgt_out, tgt_lengths)


def collate_lm(texts: Sequence[str], tokenizer: CharTokenizer) -> LMBatch:
    """Tokenize and pad texts into an :class:`LMBatch` (``<bos> x`` -> ``x <eos>``)."""
    seqs = [tokenizer.encode(t, bos=True, eos=True) for t in texts]
    inputs, _ = pad_sequences([s[:-1] for s in seqs], tokenizer.pad_id)  # (B, L)
    targets, lengths = pad_sequences([s[1:] for s in seqs], tokenizer.pad_id)  # (B, L)
    return LMBatch(inputs, targets, lengths)


def batch_stream(
    examples: Sequence,
    batch_size: int,
    collate: Callable[[list], object],
    seed: int = 0,
    length: Callable[[object], int] | None = None,
    bucket_batches: int = 32,
) -> Iterator:
    """Yield batches forever: seeded epochs over ``examples``, optionally bucketed by length.

    Each epoch shuffles the examples with a generator seeded by ``(seed,
    epoch)``. With ``length`` given (e.g. ``lambda pair: len(pair[0])``), each
    run of ``bucket_batches * batch_size`` shuffled examples is sorted by
    length and cut into batches, and the batches are shuffled: rows of a batch
    have similar lengths, so there is little padding to compute on, and the
    order is still random. The same arguments always give the same batches.
    The last incomplete batch of an epoch is dropped.
    """
    if batch_size < 1 or batch_size > len(examples):
        raise ValueError(f"batch_size must be in 1..{len(examples)}, got {batch_size}")
    epoch = 0
    while True:
        rng = random.Random(f"batches-{seed}-{epoch}")
        order = list(range(len(examples)))
        rng.shuffle(order)
        n_batches = len(order) // batch_size
        order = order[: n_batches * batch_size]
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if length is not None:
            pool = bucket_batches * batch_size
            batches = []
            for start in range(0, len(order), pool):
                chunk = sorted(order[start : start + pool], key=lambda i: length(examples[i]))
                batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
            rng.shuffle(batches)
        for b in batches:
            yield collate([examples[i] for i in b])
        epoch += 1


# ---------------------------------------------------------------------------
# A toy English: a probabilistic grammar and its parser
# ---------------------------------------------------------------------------

_SG, _PL = "sg", "pl"


@dataclass(frozen=True)
class Grammar:
    """A probabilistic grammar of a small English-like language (Chapter 9).

    The rules (``n`` and ``m`` are numbers, singular or plural, each drawn
    uniformly; ``d`` is the nesting depth of relative clauses)::

        S        -> NP[n, 0] VP[n, 0] "."
        NP[n, d] -> Det[n] Adj* N[n] (Rel[n, d + 1])     a relative clause only if d + 1 <= max_depth
        Det[sg]  -> "the" | "a" | "this" | "every"
        Det[pl]  -> "the" | "two" | "three" | "some" | "these" | "the two" | "the three"
        Rel[n, d] -> "that" VP[n, d]                     subject relative: "the dog that sees the cat"
                   | "that" NP[m, d] Vt[m]                object relative: "the foxes that the dog sees"
        VP[n, d] -> Vi[n] (PP)  |  Vt[n] NP[m, d]
        PP       -> P Det[m] Adj* N[m]                    "near the old owl" (no clause inside)

    Agreement: the determiner and the noun agree in number (``"a fox"``,
    ``"two foxes"``, not ``"two fox"``); a verb agrees with its subject,
    including across relative clauses (``"the foxes that the dog sees run"``:
    ``sees`` agrees with ``dog``, ``run`` with ``foxes``); ``a`` is written
    ``an`` before a vowel (``"an old fox"``). Adjectives: none, one, or two
    different ones. A sentence is words separated by single spaces, ending in
    ``" ."``. The grammar is unambiguous (every sentence has exactly one
    derivation; the tests check it on thousands of samples), so
    :meth:`log_prob` is the exact probability of a sentence.

    Args:
        max_depth: deepest nesting of relative clauses (``0``: none).
        p_rel: probability that a noun phrase gets a relative clause (where allowed).
        p_object_rel: probability that a relative clause is an object relative.
        p_transitive: probability that a verb phrase is transitive.
        p_pp: probability that an intransitive verb takes a prepositional phrase.
        p_adjectives: probabilities of 0, 1 and 2 adjectives.
    """

    max_depth: int = 2
    p_rel: float = 0.3
    p_object_rel: float = 0.5
    p_transitive: float = 0.5
    p_pp: float = 0.3
    p_adjectives: tuple[float, float, float] = (0.5, 0.35, 0.15)

    determiners = {
        _SG: ("the", "a", "this", "every"),
        _PL: ("the", "two", "three", "some", "these", "the two", "the three"),
    }
    adjectives = ("red", "big", "small", "old", "happy", "angry", "brown", "quiet")
    nouns = {
        _SG: ("fox", "dog", "cat", "bird", "child", "mouse", "owl", "horse", "wolf", "eagle"),
        _PL: ("foxes", "dogs", "cats", "birds", "children", "mice", "owls", "horses", "wolves", "eagles"),
    }
    intransitive = {
        _SG: ("runs", "sleeps", "sings", "waits", "jumps"),
        _PL: ("run", "sleep", "sing", "wait", "jump"),
    }
    transitive = {
        _SG: ("sees", "chases", "likes", "follows", "watches"),
        _PL: ("see", "chase", "like", "follow", "watch"),
    }
    prepositions = ("near", "behind", "under", "beside")

    def __post_init__(self):
        if self.max_depth < 0:
            raise ValueError("max_depth must be >= 0")
        for name in ("p_rel", "p_object_rel", "p_transitive", "p_pp"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability")
        if len(self.p_adjectives) != 3 or abs(sum(self.p_adjectives) - 1) > 1e-9:
            raise ValueError("p_adjectives must be 3 probabilities summing to 1")

    # ---- the words -------------------------------------------------------

    def words(self) -> set[str]:
        """Every word of the language, and ``"."``."""
        w = {"that", ".", "an", *self.adjectives, *self.prepositions}
        for n in (_SG, _PL):
            w.update(*(det.split(" ") for det in self.determiners[n]))
            w.update(self.nouns[n], self.intransitive[n], self.transitive[n])
        return w

    def alphabet(self) -> str:
        """Every character a sentence can contain, sorted."""
        return "".join(sorted(set(" ".join(self.words()))))

    # ---- sampling ----------------------------------------------------------

    def sample(self, rng: random.Random) -> str:
        """One sentence, drawn with ``rng`` (a :class:`random.Random`)."""
        return self.sample_with_log_prob(rng)[0]

    def sample_with_log_prob(self, rng: random.Random) -> tuple[str, float]:
        """One sentence and the log-probability of the choices that made it.

        The grammar is unambiguous, so this is ``log p(sentence)``, which
        :meth:`log_prob` recomputes from the sentence alone.
        """
        words: list[str] = []
        n = rng.choice((_SG, _PL))
        lp = math.log(0.5) + self._np(rng, words, n, 0) + self._vp(rng, words, n, 0)
        words.append(".")
        return " ".join(_a_an(words)), lp

    @staticmethod
    def _choice(rng, options) -> tuple[str, float]:
        return rng.choice(options), -math.log(len(options))

    @staticmethod
    def _coin(rng, p) -> tuple[bool, float]:
        """True with probability ``p``, and the log-probability of the outcome."""
        heads = rng.random() < p
        return heads, math.log(p if heads else 1 - p)

    def _np(self, rng, words, n, d, allow_rel=True) -> float:
        det, lp = self._choice(rng, self.determiners[n])
        words.extend(det.split(" "))  # "the two" is two words
        k = rng.choices((0, 1, 2), weights=self.p_adjectives)[0]
        lp += math.log(self.p_adjectives[k]) - sum(math.log(len(self.adjectives) - i) for i in range(k))
        words.extend(rng.sample(self.adjectives, k))  # k different adjectives, in random order
        noun, lp_noun = self._choice(rng, self.nouns[n])
        words.append(noun)
        lp += lp_noun
        if not (allow_rel and d + 1 <= self.max_depth):
            return lp
        rel, lp_rel = self._coin(rng, self.p_rel)
        lp += lp_rel
        if rel:
            words.append("that")
            obj, lp_obj = self._coin(rng, self.p_object_rel)
            lp += lp_obj
            if obj:  # "that" NP[m] Vt[m]: the head noun is the object of the clause
                m = rng.choice((_SG, _PL))
                lp += math.log(0.5) + self._np(rng, words, m, d + 1)
                verb, lp_verb = self._choice(rng, self.transitive[m])
                words.append(verb)
                lp += lp_verb
            else:  # "that" VP[n]: the head noun is the subject of the clause
                lp += self._vp(rng, words, n, d + 1)
        return lp

    def _vp(self, rng, words, n, d) -> float:
        transitive, lp = self._coin(rng, self.p_transitive)
        if transitive:
            verb, lp_verb = self._choice(rng, self.transitive[n])
            words.append(verb)
            m = rng.choice((_SG, _PL))
            return lp + lp_verb + math.log(0.5) + self._np(rng, words, m, d)
        verb, lp_verb = self._choice(rng, self.intransitive[n])
        words.append(verb)
        lp += lp_verb
        pp, lp_pp = self._coin(rng, self.p_pp)
        lp += lp_pp
        if pp:
            prep, lp_prep = self._choice(rng, self.prepositions)
            words.append(prep)
            m = rng.choice((_SG, _PL))
            lp += lp_prep + math.log(0.5) + self._np(rng, words, m, d, allow_rel=False)
        return lp

    # ---- parsing -----------------------------------------------------------

    def parse(self, sentence: str) -> list[float]:
        """The log-probability of every derivation of ``sentence`` (empty: not in the language).

        A recursive-descent recognizer that follows the rules above, trying
        every alternative (so it would find every derivation of an ambiguous
        sentence); the grammar is unambiguous, so a grammatical sentence gives
        exactly one. The sentence must be exactly as :meth:`sample` writes it:
        single spaces, lowercase, ending in ``" ."``.
        """
        tokens = sentence.split(" ")
        if not tokens or tokens[-1] != ".":
            return []
        try:
            words = _un_a_an(tokens[:-1])
        except ValueError:
            return []
        results = []
        for n in (_SG, _PL):
            for i, lp_np in self._parse_np(words, 0, n, 0):
                for j, lp_vp in self._parse_vp(words, i, n, 0):
                    if j == len(words):
                        results.append(math.log(0.5) + lp_np + lp_vp)
        return results

    def log_prob(self, sentence: str) -> float:
        """``log p(sentence)`` under the grammar (``-inf`` if not in the language)."""
        lps = self.parse(sentence)
        if not lps:
            return -math.inf
        top = max(lps)
        return top + math.log(sum(math.exp(lp - top) for lp in lps))

    def is_grammatical(self, sentence: str) -> bool:
        """Whether the grammar can generate ``sentence``."""
        return bool(self.parse(sentence))

    def _parse_np(self, w, i, n, d, allow_rel=True):
        """Yield ``(end, log p)`` for every NP[n, d] starting at word ``i``."""
        dets = self.determiners[n]
        for det in dets:  # a determiner of one word ("the") or two ("the two")
            det_words = det.split(" ")
            if w[i : i + len(det_words)] == det_words:
                lp_det = -math.log(len(dets))
                yield from self._parse_np_after_det(w, i + len(det_words), n, d, allow_rel, lp_det)

    def _parse_np_after_det(self, w, i, n, d, allow_rel, lp):
        # Adjectives: up to two, different.
        adjs = []
        while i < len(w) and w[i] in self.adjectives and len(adjs) < 2:
            adjs.append(w[i])
            i += 1
        if len(adjs) == 2 and adjs[0] == adjs[1]:
            return
        lp += math.log(self.p_adjectives[len(adjs)])
        for k in range(len(adjs)):
            lp -= math.log(len(self.adjectives) - k)
        if i >= len(w) or w[i] not in self.nouns[n]:
            return
        lp -= math.log(len(self.nouns[n]))
        i += 1
        can_rel = allow_rel and d + 1 <= self.max_depth
        p_rel = self.p_rel if can_rel else 0.0
        if p_rel < 1:
            yield i, lp + math.log(1 - p_rel)
        if p_rel > 0 and i < len(w) and w[i] == "that":
            lp_rel = lp + math.log(p_rel)
            if self.p_object_rel > 0:
                for m in (_SG, _PL):
                    for j, lp_inner in self._parse_np(w, i + 1, m, d + 1):
                        if j < len(w) and w[j] in self.transitive[m]:
                            yield (
                                j + 1,
                                lp_rel + math.log(self.p_object_rel) + math.log(0.5) + lp_inner
                                - math.log(len(self.transitive[m])),
                            )  # fmt: skip
            if self.p_object_rel < 1:
                for j, lp_vp in self._parse_vp(w, i + 1, n, d + 1):
                    yield j, lp_rel + math.log(1 - self.p_object_rel) + lp_vp

    def _parse_vp(self, w, i, n, d):
        """Yield ``(end, log p)`` for every VP[n, d] starting at word ``i``."""
        if i >= len(w):
            return
        if w[i] in self.transitive[n] and self.p_transitive > 0:
            lp = math.log(self.p_transitive) - math.log(len(self.transitive[n])) + math.log(0.5)
            for m in (_SG, _PL):
                for j, lp_np in self._parse_np(w, i + 1, m, d):
                    yield j, lp + lp_np
        if w[i] in self.intransitive[n] and self.p_transitive < 1:
            lp = math.log(1 - self.p_transitive) - math.log(len(self.intransitive[n]))
            if self.p_pp < 1:
                yield i + 1, lp + math.log(1 - self.p_pp)
            if self.p_pp > 0 and i + 1 < len(w) and w[i + 1] in self.prepositions:
                lp_pp = lp + math.log(self.p_pp) - math.log(len(self.prepositions)) + math.log(0.5)
                for m in (_SG, _PL):
                    for j, lp_np in self._parse_np(w, i + 2, m, d, allow_rel=False):
                        yield j, lp_pp + lp_np


def _a_an(words: list[str]) -> list[str]:
    """Write the determiner ``a`` as ``an`` before a word that starts with a vowel."""
    return [
        "an" if w == "a" and i + 1 < len(words) and words[i + 1][0] in "aeiou" else w
        for i, w in enumerate(words)
    ]


def _un_a_an(words: list[str]) -> list[str]:
    """The inverse of :func:`_a_an`: ``an`` back to ``a``; ``ValueError`` if a or an is misused."""
    out = []
    for i, w in enumerate(words):
        if w in ("a", "an"):
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if not nxt or (nxt[0] in "aeiou") != (w == "an"):
                raise ValueError(f"{w!r} before {nxt!r}")
            out.append("a")
        else:
            out.append(w)
    return out


GRAMMAR = Grammar()
"""The grammar of Chapter 9 (nesting depth at most 2)."""


def is_grammatical(sentence: str, grammar: Grammar = GRAMMAR) -> bool:
    """Whether ``sentence`` belongs to the language of ``grammar`` (default: :data:`GRAMMAR`)."""
    return grammar.is_grammatical(sentence)


@dataclass
class TextCorpus:
    """Train, validation and test sentences of the toy English (one sentence per string).

    Validation and test hold no sentence of the training set, and none of each other.
    """

    train: list[str]
    validation: list[str]
    test: list[str]
    grammar: Grammar = field(repr=False)


def text_corpus(
    n_train: int = 20_000, n_validation: int = 1_000, n_test: int = 2_000, seed: int = 0,
    grammar: Grammar = GRAMMAR,
) -> TextCorpus:  # fmt: skip
    """Seeded sentences of ``grammar``: train, then held-out sets of unseen sentences.

    The training sentences are ``n_train`` independent samples (a short
    sentence may occur several times, as it would in real text). The
    validation and test sentences are further samples, skipping any sentence
    already drawn for an earlier split, so held-out text is new text.
    """
    rng = random.Random(f"text-corpus-{seed}")
    train = [grammar.sample(rng) for _ in range(n_train)]
    seen = set(train)
    held_out = []
    for n in (n_validation, n_test):
        split = []
        while len(split) < n:
            s = grammar.sample(rng)
            if s not in seen:
                seen.add(s)
                split.append(s)
        held_out.append(split)
    return TextCorpus(train, held_out[0], held_out[1], grammar)


def text_tokenizer(grammar: Grammar = GRAMMAR) -> CharTokenizer:
    """The character tokenizer of the toy English (lowercase letters in use, space and ``.``)."""
    return CharTokenizer(grammar.alphabet())
