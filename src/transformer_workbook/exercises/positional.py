"""Chapter 3 exercises: the sinusoidal encoding, spot the bug in a published loop, RoPE.

Each known mistake is a real implementation of that mistake: the learner's
code is diagnosed with it when the two behave the same on every case. Most of
them were really published (see the issue threads cited in the notebook):

- ``2 * i`` in the exponent where ``i`` already steps by 2 (SamLynnEvans/Transformer
  #25, copied into at least two books), together with ``2 * (i + 1)`` in the
  cosine's exponent; the same table comes from indexing the exponent per column
  as ``2 * col / d_model`` (jadore801120/attention-is-all-you-need-pytorch #32);
- the exponent indexed per column as ``col / d_model`` and base 1000
  (maxjcohen/transformer #62);
- a crash for odd ``d_model`` (the PyTorch tutorial's form; gc-os-ai/pyaptamer #526).

Each differs from the paper by up to 2.0 somewhere in a small table, so the
cases below (small, odd and tiny ``d_model``) tell every one apart from the
reference and from each other (``tests/test_checks_positional.py`` checks that).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from .. import positional as ref
from .api import register
from .core import RAISES, Case, randn
from .judging import Exercise, Mistake, Tolerance

CHAPTER = "03_positional_encoding"

#: Generous next to float32 rounding (about 3e-6 on these tables), tiny next to
#: any mistake (each is off by more than 0.05 somewhere).
TOLERANCE = Tolerance(rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# Building blocks of the known mistakes: the paper's table, one piece swappable
# ---------------------------------------------------------------------------


def _pair_exponent(k: torch.Tensor, d: int) -> torch.Tensor:
    """The paper's exponent 2i/d for pair index k (= i)."""
    return 2 * k / d


def _angles(seq_len: int, d_model: int, exponent, *, base: float = 10000.0, start: int = 0):
    """``(L, ceil(d/2))`` sine angles and ``(L, floor(d/2))`` cosine angles, float64.

    ``exponent`` is ``(sin_exp, cos_exp)``: the exponent ``e`` of pair ``k``'s
    frequency ``base ** -e`` for its sine column (2k) and its cosine column (2k + 1).
    """
    sin_exp, cos_exp = exponent
    pos = torch.arange(start, start + seq_len, dtype=torch.float64)[:, None]  # (L, 1)
    k_sin = torch.arange((d_model + 1) // 2, dtype=torch.float64)  # (ceil(d/2),)
    k_cos = torch.arange(d_model // 2, dtype=torch.float64)  # (floor(d/2),)
    return pos * base ** -sin_exp(k_sin, d_model), pos * base ** -cos_exp(k_cos, d_model)


def _interleave(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """Columns 0, 2, 4, ... from ``even`` and 1, 3, 5, ... from ``odd``, as float32."""
    pe = torch.zeros(even.shape[0], even.shape[1] + odd.shape[1], dtype=torch.float64)  # (L, d)
    pe[:, 0::2] = even
    pe[:, 1::2] = odd
    return pe.float()


PAPER = (_pair_exponent, _pair_exponent)


def _with_exponents(sin_exp, cos_exp):
    """The table with other exponents for the sine and the cosine columns."""

    def wrong(seq_len, d_model):
        a_sin, a_cos = _angles(seq_len, d_model, (sin_exp, cos_exp))
        return _interleave(a_sin.sin(), a_cos.cos())

    return wrong


def _base_1000(seq_len, d_model):
    a_sin, a_cos = _angles(seq_len, d_model, PAPER, base=1000.0)
    return _interleave(a_sin.sin(), a_cos.cos())


def _sin_cos_swapped(seq_len, d_model):
    a_sin, a_cos = _angles(seq_len, d_model, PAPER)
    return _interleave(a_sin.cos(), a_cos.sin())


def _concatenated(seq_len, d_model):
    a_sin, a_cos = _angles(seq_len, d_model, PAPER)
    return torch.cat([a_sin.sin(), a_cos.cos()], dim=-1).float()  # all sines, then all cosines


def _cat_sin_cos(seq_len, d_model):
    """The common `torch.cat([sin, cos], -1)` table: halves, and d_model + 1 columns when odd."""
    pos = torch.arange(seq_len, dtype=torch.float64)[:, None]  # (L, 1)
    angles = pos / 10000.0 ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (L, ceil(d/2))
    return torch.cat([angles.sin(), angles.cos()], dim=-1).float()  # (L, 2 * ceil(d/2))


def _positions_from_one(seq_len, d_model):
    a_sin, a_cos = _angles(seq_len, d_model, PAPER, start=1)
    return _interleave(a_sin.sin(), a_cos.cos())


def _odd_d_model_fails(seq_len, d_model):
    if d_model % 2:
        raise RuntimeError("shape mismatch: the cosine columns are one fewer than the frequencies")
    return ref.sinusoidal_encoding(seq_len, d_model)


def _float64(seq_len, d_model):
    return ref.sinusoidal_encoding(seq_len, d_model).double()


def _doubled(k, d):  # i steps by 2 and the exponent still says 2 * i: 2 * (2k) / d
    return 4 * k / d


def _next_pair_after_doubling(k, d):  # 2 * (i + 1) / d with i = 2k
    return (4 * k + 2) / d


def _per_column(k, d):  # column / d, for the cosine column 2k + 1
    return (2 * k + 1) / d


def _next_pair(k, d):  # the frequency of pair k + 1
    return (2 * k + 2) / d


def _not_doubled(k, d):  # the pair index over d: k / d
    return k / d


# ---------------------------------------------------------------------------
# positional.sinusoidal_encoding
# ---------------------------------------------------------------------------


def sinusoidal_cases(seed: int) -> list[Case]:
    # No randomness: a table is determined by its two sizes. (``seed`` is
    # accepted like every exercise's case maker.) No d_model=1: code that
    # fails for odd d_model raises for it or not depending on how it is
    # written (a 1-column table broadcasts into the 0 cosine columns), which
    # would split the odd-d_model diagnoses in two; 3 and 7 are odd for all.
    del seed
    sizes = [
        ("seq_len=6, d_model=8", 6, 8, frozenset()),
        ("seq_len=10, d_model=16", 10, 16, frozenset()),
        ("odd d_model", 5, 7, frozenset({"odd"})),
        ("d_model=2, a single pair", 3, 2, frozenset({"tiny"})),
        ("odd d_model=3", 9, 3, frozenset({"odd", "tiny"})),
        ("a single position", 1, 4, frozenset()),
        ("a longer table", 50, 64, frozenset()),
    ]
    return [Case(name, (seq_len, d_model), {}, tags) for name, seq_len, d_model, tags in sizes]


ODD_NOTE = (
    " Your function also fails when d_model is odd: then the last column is a sine with no "
    "cosine partner, so there is one cosine column fewer than there are frequencies (use "
    "`angles[:, : d_model // 2]` for the cosines)."
)

_VALUE_MISTAKES = [
    Mistake(
        "exponent-doubled",
        "Your frequencies fall off twice too fast: the exponent of column pair i must be "
        "2i/d_model where i counts *pairs* (0, 1, 2, ...). If your loop is `for i in range(0, "
        "d_model, 2)`, then i is already 2 x the pair index, and `10000 ** (2 * i / d_model)` "
        "doubles it again: write `10000 ** (i / d_model)` (or loop over pairs).",
        _with_exponents(_doubled, _doubled),
    ),
    Mistake(
        "published-loop",
        "This is the table of a loop that was published and copied widely: `for i in range(0, "
        "d_model, 2)` with `sin(pos / 10000 ** (2 * i / d_model))` and `cos(pos / 10000 ** (2 * "
        "(i + 1) / d_model))` (or, the same table, the exponent `2 * col / d_model` for every "
        "column). Two bugs: i already steps by 2, so `2 * i` doubles the exponent; and a sine "
        "and its cosine share one frequency, so the cosine must not use i + 1. Both lines "
        "should use `10000 ** (i / d_model)`.",
        _with_exponents(_doubled, _next_pair_after_doubling),
    ),
    Mistake(
        "exponent-per-column",
        "Your cosine columns use the exponent (2i + 1)/d_model, their own column index over "
        "d_model. The exponent is indexed per *pair*: column 2i (sine) and column 2i + 1 "
        "(cosine) share the frequency 1 / 10000^(2i/d_model). Use `col - col % 2` (or "
        "`2 * (col // 2)`), not `col`.",
        _with_exponents(_pair_exponent, _per_column),
    ),
    Mistake(
        "cos-next-frequency",
        "Your sines are right, but each cosine uses the next pair's frequency, "
        "1 / 10000^(2(i+1)/d_model). A sine and its cosine share one frequency: "
        "PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)), the same i as the sine.",
        _with_exponents(_pair_exponent, _next_pair),
    ),
    Mistake(
        "exponent-not-doubled",
        "Your exponent is i/d_model where i is the pair index (0, 1, 2, ...), so your "
        "frequencies fall off half as fast as the paper's. The exponent is 2i/d_model: with "
        "`torch.arange(0, d_model, 2)` you get 2i directly.",
        _with_exponents(_not_doubled, _not_doubled),
    ),
    Mistake(
        "base-1000",
        "Your table uses base 1000; the paper uses 10000: the frequencies are "
        "1 / 10000^(2i/d_model). (A published implementation had this typo.)",
        _base_1000,
    ),
    Mistake(
        "sin-cos-swapped",
        "Sine and cosine are swapped: the even columns (0, 2, 4, ...) hold sin and the odd "
        "columns hold cos. Row 0 (position 0) should read [0, 1, 0, 1, ...].",
        _sin_cos_swapped,
    ),
    Mistake(
        "concatenated-halves",
        "You put all the sines first and all the cosines after them (torch.cat). The paper "
        "interleaves them: column 2i is the sine and column 2i + 1 the cosine of pair i. "
        "Assign `pe[:, 0::2] = ...` and `pe[:, 1::2] = ...` (or stack and flatten).",
        _concatenated,
    ),
    Mistake(
        "positions-from-one",
        "Your positions start at 1; the first position is 0 (`torch.arange(seq_len)`), so "
        "row 0 reads [0, 1, 0, 1, ...] (sin 0 = 0, cos 0 = 1).",
        _positions_from_one,
    ),
]


def _with_odd_failure(m: Mistake) -> Mistake:
    """The same mistake in code that also crashes for odd d_model (the common vectorised form)."""
    impl = m.implementation

    def wrong(seq_len, d_model):
        if d_model % 2:
            raise RuntimeError("shape mismatch")
        return impl(seq_len, d_model)

    return dataclasses.replace(m, message=m.message + ODD_NOTE, implementation=wrong)


SINUSOIDAL_MISTAKES = [
    *_VALUE_MISTAKES,
    # The common vectorised spelling: its odd-d_model table has one column too many.
    Mistake(
        "concatenated-halves",
        "You put all the sines first and all the cosines after them (`torch.cat([sin, cos], "
        "-1)`). The paper interleaves them: column 2i is the sine and column 2i + 1 the cosine "
        "of pair i. Assign `pe[:, 0::2] = ...` and `pe[:, 1::2] = ...`. For odd d_model this "
        "version also gives one column too many: the last sine has no cosine partner.",
        _cat_sin_cos,
    ),
    Mistake(
        "odd-d_model-fails",
        "Right for even d_model, but your function fails when d_model is odd. Then the last "
        "column is a sine with no cosine partner: there are ceil(d_model/2) sine columns and "
        "floor(d_model/2) cosine columns, so use `angles[:, : d_model // 2]` for the cosines. "
        "(The `div_term` version of the PyTorch tutorial has this problem too.)",
        _odd_d_model_fails,
    ),
    Mistake(
        "float64",
        "Your values are right, but the table is float64. Return float32, torch's default "
        "(build it with torch.zeros(seq_len, d_model) and float32 positions, or call "
        "`.float()` at the end): adding a float64 table to float32 embeddings would silently "
        "turn the whole model into float64.",
        _float64,
    ),
    *[_with_odd_failure(m) for m in _VALUE_MISTAKES],
]


register(
    Exercise(
        id="positional.sinusoidal_encoding",
        title="The sinusoidal positional encoding",
        target="sinusoidal_encoding",
        chapter=CHAPTER,
        reference=ref.sinusoidal_encoding,
        make_cases=sinusoidal_cases,
        points=3,
        tolerance=TOLERANCE,
        forbidden=("transformer_workbook.positional.PositionalEncoding",),
        forbidden_reason="Build the table yourself.",
        notes={"exception": "The cases differ in seq_len and d_model (odd, tiny, a single position)."},
        mistakes=SINUSOIDAL_MISTAKES,
        hints=[
            "Build the angles as a (seq_len, n_pairs) table: positions (seq_len, 1) times one "
            "frequency per pair (n_pairs,), broadcast.",
            "The exponent is 2i/d_model where i counts PAIRS of columns: columns 0 and 1 use "
            "exponent 0, columns 2 and 3 use 2/d_model, ... `torch.arange(0, d_model, 2)` gives "
            "2i directly (do not double it again).",
            "Even columns get sin, odd columns get cos of the same angle: "
            "`pe[:, 0::2] = torch.sin(angles)`, `pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])` "
            "(for odd d_model there is one cosine column fewer).",
            "Positions start at 0, so row 0 is [0, 1, 0, 1, ...]. Return a float32 tensor of "
            "shape (seq_len, d_model).",
        ],
    )
)


# ---------------------------------------------------------------------------
# positional.spot_the_bug
# ---------------------------------------------------------------------------

#: The buggy code the learner starts from (shown in the notebook). The loop
#: is the one published in "How to code The Transformer in PyTorch" (2018) and
#: its repository (SamLynnEvans/Transformer, issue #25), wrapped in a function.
BUGGY_POSITIONAL_TABLE = '''\
def positional_table(max_len, d_model):
    """The sinusoidal table of "Attention Is All You Need": shape (max_len, d_model)."""
    pe = torch.zeros(max_len, d_model)
    for pos in range(max_len):
        for i in range(0, d_model, 2):
            pe[pos, i] = math.sin(pos / (10000 ** ((2 * i) / d_model)))
            pe[pos, i + 1] = math.cos(pos / (10000 ** ((2 * (i + 1)) / d_model)))
    return pe
'''


def positional_table(max_len: int, d_model: int) -> torch.Tensor:
    """The sinusoidal table of "Attention Is All You Need": shape (max_len, d_model)."""
    pe = torch.zeros(max_len, d_model)  # (max_len, d_model)
    for pos in range(max_len):
        for i in range(0, d_model, 2):  # i = 2 x the pair index: it already is the paper's "2i"
            pe[pos, i] = math.sin(pos / (10000 ** (i / d_model)))
            pe[pos, i + 1] = math.cos(pos / (10000 ** (i / d_model)))  # same frequency as the sine
    return pe


def spot_the_bug_cases(seed: int) -> list[Case]:
    del seed  # the sizes determine the table
    sizes = [(6, 8), (10, 4), (3, 2), (12, 16)]
    return [Case(f"max_len={n}, d_model={d}", (n, d)) for n, d in sizes]


register(
    Exercise(
        id="positional.spot_the_bug",
        title="Spot the bug: a published positional-encoding loop",
        target="positional_table",
        chapter=CHAPTER,
        reference=positional_table,
        make_cases=spot_the_bug_cases,
        points=2,
        tolerance=TOLERANCE,
        mistakes=[
            Mistake(
                "unchanged",
                "This still behaves exactly like the published loop: both exponents are still "
                "off. What values does i take in `range(0, d_model, 2)`, and what does the paper "
                "call 2i?",
                _with_exponents(_doubled, _next_pair_after_doubling),
            ),
            Mistake(
                "cos-still-next-pair",
                "The sine line is fixed; the cosine line still uses `2 * (i + 1)`. A sine and its "
                "cosine share one frequency: column i + 1 uses the same exponent as column i, "
                "`i / d_model`.",
                _with_exponents(_pair_exponent, _next_pair_after_doubling),
            ),
            Mistake(
                "cos-per-column",
                "Almost: the sine line is right, but the cosine uses `(i + 1) / d_model`, its own "
                "column index. Column i + 1 is the cosine of the *same* pair as column i, so it "
                "uses the same exponent, `i / d_model`.",
                _with_exponents(_pair_exponent, _per_column),
            ),
            Mistake(
                "both-doubled",
                "Both lines now use the same frequency (good: that was one bug), but `2 * i` "
                "still doubles the exponent. i steps by 2, so it already is the paper's 2i: the "
                "exponent is `i / d_model`.",
                _with_exponents(_doubled, _doubled),
            ),
            Mistake(
                "sin-still-doubled",
                "The cosine line is fixed; the sine line still has `2 * i`. i already steps by "
                "2 (it is the paper's 2i), so the exponent is `i / d_model`.",
                _with_exponents(_doubled, _pair_exponent),
            ),
        ],
        hints=[
            "There are two bugs, one in each line inside the inner loop.",
            "Write out i for d_model = 8: range(0, 8, 2) gives 0, 2, 4, 6. The paper's exponent "
            "for columns 2k and 2k + 1 is 2k/d_model. What is 2k here?",
            "Column i (sine) and column i + 1 (cosine) form one pair: do they share a frequency?",
        ],
    )
)


# ---------------------------------------------------------------------------
# positional.apply_rope: rotary position embeddings
# ---------------------------------------------------------------------------


def rope_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # Positions stay below 20 (float32 angles are exact to about 1e-6 there),
    # d and the number of leading dimensions vary, and some cases pass
    # positions or a base, so ignoring them shows.
    return [
        Case("(L, d) = (5, 8), default positions", (randn(g, 5, 8),)),
        Case("(B, L, d) = (2, 6, 4), default positions", (randn(g, 2, 6, 4),)),
        Case("(B, H, L, d) = (2, 3, 4, 6), default positions", (randn(g, 2, 3, 4, 6),)),
        Case("(L, d) = (6, 8), positions 10 to 15", (randn(g, 6, 8),),
             {"positions": torch.arange(10, 16)}, frozenset({"positions"})),
        Case("(B, L, d) = (2, 4, 6), positions not in order, not integers", (randn(g, 2, 4, 6),),
             {"positions": torch.tensor([0.5, 3.0, 2.0, 7.25])}, frozenset({"positions"})),
        Case("(L, d) = (5, 8), base = 100", (randn(g, 5, 8),), {"base": 100.0},
             frozenset({"base"})),
        Case("a single pair: (L, d) = (7, 2)", (randn(g, 7, 2),)),
        Case("float64 input, (B, L, d) = (1, 5, 10)", (randn(g, 1, 5, 10, dtype=torch.float64),)),
        Case("odd d = 5 (must raise)", (randn(g, 3, 5),), tags=frozenset({RAISES}),
             raises=("ValueError",)),
    ]


def _rope_positions(x, positions, start=0):
    if positions is None:
        return torch.arange(start, start + x.shape[-2], dtype=torch.float64)  # (L,)
    return torch.as_tensor(positions).to(torch.float64)


def _rope_angle(x, positions, base, exponent, start=0):
    """(L, d/2) angles pos * base^(-exponent(i, d)), i = 0, 1, ... the pair index."""
    d = x.shape[-1]
    if d % 2:
        raise ValueError("odd d")
    i = torch.arange(d // 2, dtype=torch.float64)  # (d/2,)
    return _rope_positions(x, positions, start)[:, None] * base ** (-exponent(i, d))


def _rotate_adjacent(x, angle, sign=1.0):
    """Turn pairs (x_2i, x_2i+1) by sign * angle."""
    cos, sin = torch.cos(angle).to(x.dtype), (sign * torch.sin(angle)).to(x.dtype)
    x_even, x_odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], dim=-1).flatten(-2)


def _paper(i, d):  # theta_i = base^(-2i/d)
    return 2 * i / d


def _rope_halves(x, positions=None, base=10000.0):
    return ref.apply_rope_half(x, positions, base)  # pairs (i, i + d/2)


def _rope_exponent_not_doubled(x, positions=None, base=10000.0):
    return _rotate_adjacent(x, _rope_angle(x, positions, base, lambda i, d: i / d))


def _rope_exponent_doubled(x, positions=None, base=10000.0):
    return _rotate_adjacent(x, _rope_angle(x, positions, base, lambda i, d: 4 * i / d))


def _rope_positions_from_one(x, positions=None, base=10000.0):
    return _rotate_adjacent(x, _rope_angle(x, positions, base, _paper, start=1))


def _rope_backwards(x, positions=None, base=10000.0):
    return _rotate_adjacent(x, _rope_angle(x, positions, base, _paper), sign=-1.0)


def _rope_ignores_positions(x, positions=None, base=10000.0):
    return _rotate_adjacent(x, _rope_angle(x, None, base, _paper))


def _rope_ignores_base(x, positions=None, base=10000.0):
    return _rotate_adjacent(x, _rope_angle(x, positions, 10000.0, _paper))


register(
    Exercise(
        id="positional.apply_rope",
        title="Rotary position embeddings (RoPE)",
        target="apply_rope",
        chapter=CHAPTER,
        reference=ref.apply_rope,
        make_cases=rope_cases,
        points=3,
        forbidden=("transformer_workbook.positional.apply_rope_half",),
        forbidden_reason="Rotate the pairs yourself.",
        notes={
            "exception": "The cases differ in the number of leading dimensions (none, a batch, "
                         "a batch and heads), in L and d (d = 2: a single pair), and some pass "
                         "`positions` or `base`.",
            "must-raise": "With an odd d the last feature has no partner to rotate with: raise "
                          "a ValueError.",
        },
        mistakes=[
            Mistake(
                "pairs-halves",
                "You pair feature i with feature i + d/2 (the `rotate_half` layout of Hugging "
                "Face's Llama code). That is RoPE too, with the features permuted, but this "
                "exercise, like the paper and the package, pairs *adjacent* features: "
                "(x[2i], x[2i+1]) is turned by pos * theta_i. Weights trained for one layout do "
                "not work with the other.",
                _rope_halves,
            ),
            Mistake(
                "exponent-not-doubled",
                "Your frequencies are base^(-i/d) with i the pair index: they fall off half as "
                "fast as RoPE's theta_i = base^(-2i/d), the sinusoidal encoding's. With "
                "`torch.arange(0, d, 2)` you get 2i directly.",
                _rope_exponent_not_doubled,
            ),
            Mistake(
                "exponent-doubled",
                "Your frequencies fall off twice too fast: theta_i = base^(-2i/d) where i counts "
                "pairs. If you build `torch.arange(0, d, 2)`, that already is 2i: do not double "
                "it again.",
                _rope_exponent_doubled,
            ),
            Mistake(
                "positions-from-one",
                "Your default positions start at 1; the first position is 0 "
                "(`torch.arange(L)`), which is not rotated at all.",
                _rope_positions_from_one,
            ),
            Mistake(
                "rotates-backwards",
                "You rotate by -pos * theta_i: your 2x2 matrix is [[cos, sin], [-sin, cos]]. "
                "RoPE turns each pair counterclockwise: x'[2i] = x[2i] cos - x[2i+1] sin, "
                "x'[2i+1] = x[2i] sin + x[2i+1] cos. (Scores would still depend only on the "
                "offset, but with the opposite sign, so weights trained one way would not work "
                "the other.)",
                _rope_backwards,
            ),
            Mistake(
                "ignores-positions",
                "Right with the default positions, but you ignore the `positions` argument: "
                "when it is given, row j is rotated by positions[j] * theta_i (positions need "
                "not start at 0, be in order or be integers).",
                _rope_ignores_positions,
            ),
            Mistake(
                "ignores-base",
                "Right for base 10000, but you ignore the `base` argument: theta_i = "
                "base^(-2i/d).",
                _rope_ignores_base,
            ),
        ],
        hints=[
            "Pair i is (x[..., 2i], x[..., 2i + 1]); each pair is turned by the angle "
            "pos * theta_i, theta_i = base^(-2i/d). `x[..., 0::2]` and `x[..., 1::2]` give all "
            "the first and all the second members at once.",
            "Angles: positions (L,) as a column times the frequencies (d/2,) as a row: an "
            "(L, d/2) table, which broadcasts against (..., L, d/2).",
            "Rotation by a: (a1, a2) -> (a1 cos a - a2 sin a, a1 sin a + a2 cos a). Then put the "
            "two halves back in alternating order: `torch.stack([first, second], dim=-1)"
            ".flatten(-2)`.",
            "Keep x's dtype (compute cos and sin, then `.to(x.dtype)`), and raise a ValueError "
            "when d is odd.",
        ],
    )
)
