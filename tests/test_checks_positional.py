"""Chapter 3's checks: the reference passes; every diagnosed mistake is named.

Two kinds of wrong answers are tried: the exercise's own Mistake
implementations (each must be diagnosed as itself, and no two may behave the
same on every case), and wrong answers written here the way a learner (or a
published tutorial) writes them, which must get the same diagnosis.
"""

import json
import math
import pathlib

import pytest
import torch

from transformer_workbook.exercises import check, get, run_cases
from transformer_workbook.exercises.core import ERROR
from transformer_workbook.exercises.judging import outcomes_agree
from transformer_workbook.exercises.positional import BUGGY_POSITIONAL_TABLE, ODD_NOTE

ROOT = pathlib.Path(__file__).resolve().parents[1]
CH3 = ["positional.sinusoidal_encoding", "positional.spot_the_bug", "positional.apply_rope"]
SIN = "positional.sinusoidal_encoding"
BUG = "positional.spot_the_bug"


def _gap(a, b) -> float:
    """How far apart two outcomes are: inf when one raises and the other does not."""
    if a.kind != b.kind:
        return math.inf
    if a.kind == ERROR:
        return 0.0
    x, y = a.value, b.value
    if x.shape != y.shape or x.dtype != y.dtype:
        return math.inf
    return float((x.double() - y.double()).abs().max()) if x.numel() else 0.0


@pytest.mark.parametrize("exercise_id", CH3)
def test_mistakes_are_distinguishable_from_the_reference_and_each_other(exercise_id):
    """On some case every two behaviours differ, by far more than float32 noise."""
    ex = get(exercise_id)
    cases = ex.cases()
    behaviours = [("reference", ex.reference)] + [(m.id, m.implementation) for m in ex.mistakes]
    outcomes = [run_cases(fn, cases) for _, fn in behaviours]
    for i in range(len(behaviours)):
        for j in range(i + 1, len(behaviours)):
            agree = [outcomes_agree(a, b, ex.tolerance) for a, b in zip(outcomes[i], outcomes[j],
                                                                      strict=True)]
            assert not all(agree), f"{behaviours[i][0]} and {behaviours[j][0]} agree on every case"
            gap = max(_gap(a, b) for a, b in zip(outcomes[i], outcomes[j], strict=True))
            assert gap > 0.05, f"{behaviours[i][0]} vs {behaviours[j][0]}: only {gap:.2g} apart"


def test_every_published_bug_is_covered():
    ids = {m.id for m in get(SIN).mistakes}
    assert {"exponent-doubled", "published-loop", "exponent-per-column", "cos-next-frequency",
            "base-1000", "sin-cos-swapped", "concatenated-halves", "positions-from-one",
            "odd-d_model-fails"} <= ids


def test_cases_cover_odd_and_tiny_sizes():
    cases = get(SIN).cases(0)
    d_models = {c.args[1] for c in cases}
    assert 2 in d_models and 3 in d_models and 7 in d_models
    assert any(c.args[0] == 1 for c in cases)


def test_not_attempted_stub():
    def sinusoidal_encoding(seq_len, d_model):
        raise NotImplementedError("Replace this line with your code.")

    res = check(SIN, sinusoidal_encoding, quiet=True)
    assert res.status == "not attempted"


# ---- learner-style answers, written independently ---------------------------------


def vectorised(*, base=10000.0, trim_odd=True, swap=False, start=0, dtype=torch.float32,
               exponent="arange2"):
    """The common `div_term` form (PyTorch tutorial), with one thing changed."""

    def sinusoidal_encoding(seq_len, d_model):
        position = torch.arange(start, seq_len + start, dtype=dtype).unsqueeze(1)  # (L, 1)
        if exponent == "arange2":
            k = torch.arange(0, d_model, 2, dtype=dtype)
        elif exponent == "pair-index":
            k = torch.arange(0, (d_model + 1) // 2, dtype=dtype)
        div_term = torch.exp(k * (-math.log(base) / d_model))
        pe = torch.zeros(seq_len, d_model, dtype=dtype)
        first, second = (torch.cos, torch.sin) if swap else (torch.sin, torch.cos)
        pe[:, 0::2] = first(position * div_term)
        pe[:, 1::2] = second(position * (div_term[: d_model // 2] if trim_odd else div_term))
        return pe

    return sinusoidal_encoding


def from_source(source: str, name: str):
    namespace = {"math": math, "torch": torch}
    exec(source, namespace)
    return namespace[name]


LOOP = '''
def sinusoidal_encoding(seq_len, d_model):
    pe = torch.zeros(seq_len, d_model)
    for pos in range(seq_len):
        for i in range(0, d_model, 2):
            pe[pos, i] = math.sin(pos / (10000 ** ({sin_exp})))
            if i + 1 < d_model:
                pe[pos, i + 1] = math.cos(pos / (10000 ** ({cos_exp})))
    return pe
'''


def loop(sin_exp, cos_exp):
    return from_source(LOOP.format(sin_exp=sin_exp, cos_exp=cos_exp), "sinusoidal_encoding")


PER_ENTRY = '''
def sinusoidal_encoding(seq_len, d_model):
    pe = torch.zeros(seq_len, d_model)
    for pos in range(seq_len):
        for col in range(d_model):
            angle = pos / 10000 ** (2 * (col // 2) / d_model)
            pe[pos, col] = math.sin(angle) if col % 2 == 0 else math.cos(angle)
    return pe
'''


def per_column(scale):
    """jadore801120-style: one exponent per column, `scale * col / d_model`."""

    def sinusoidal_encoding(seq_len, d_model):
        pos = torch.arange(seq_len, dtype=torch.float64)[:, None]
        col = torch.arange(d_model, dtype=torch.float64)
        angles = pos / torch.pow(10000.0, scale * col / d_model)  # (L, d)
        angles[:, 0::2] = torch.sin(angles[:, 0::2])
        angles[:, 1::2] = torch.cos(angles[:, 1::2])
        return angles.float()

    return sinusoidal_encoding


def concatenated(seq_len, d_model):
    pos = torch.arange(seq_len).float().unsqueeze(-1)
    freqs = 1.0 / (10000 ** (torch.arange(0, d_model, 2).float() / d_model))
    angles = pos * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles[:, : d_model // 2])], dim=-1)


def cat_sin_cos(seq_len, d_model):  # the common spelling: one column too many for odd d_model
    pos = torch.arange(seq_len).float().unsqueeze(-1)
    angles = pos / 10000 ** (torch.arange(0, d_model, 2).float() / d_model)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def wraps_the_package(seq_len, d_model):
    from transformer_workbook.positional import sinusoidal_encoding

    return sinusoidal_encoding(seq_len, d_model)


def uses_the_module(seq_len, d_model):
    from transformer_workbook.positional import PositionalEncoding

    return PositionalEncoding(d_model, max_len=seq_len)(torch.zeros(1, seq_len, d_model))[0]


@pytest.mark.parametrize(
    "fn,expected",
    [
        (vectorised(), None),
        (loop("i / d_model", "i / d_model"), None),
        (from_source(PER_ENTRY, "sinusoidal_encoding"), None),
        (vectorised(trim_odd=False), "odd-d_model-fails"),
        (loop("2 * i / d_model", "2 * i / d_model"), "exponent-doubled"),
        (loop("2 * i / d_model", "2 * (i + 1) / d_model"), "published-loop"),
        (per_column(2.0), "published-loop"),
        (per_column(1.0), "exponent-per-column"),
        (loop("i / d_model", "(i + 1) / d_model"), "exponent-per-column"),
        (loop("i / d_model", "(i + 2) / d_model"), "cos-next-frequency"),
        (vectorised(exponent="pair-index"), "exponent-not-doubled"),
        (loop("(i // 2) / d_model", "(i // 2) / d_model"), "exponent-not-doubled"),
        (vectorised(base=1000.0), "base-1000"),
        (vectorised(swap=True), "sin-cos-swapped"),
        (concatenated, "concatenated-halves"),
        (cat_sin_cos, "concatenated-halves"),
        (wraps_the_package, "uses-package"),
        (uses_the_module, "uses-package"),  # it runs the package's sinusoidal_encoding
        (vectorised(start=1), "positions-from-one"),
        (vectorised(dtype=torch.float64), "float64"),
    ],
)
def test_sinusoidal_learner_answers(fn, expected):
    res = check(SIN, fn, quiet=True)
    if expected is None:
        assert res.passed, res.message
    else:
        assert res.status == "failed" and res.mistake == expected, res.message
        assert ODD_NOTE not in res.message


@pytest.mark.parametrize(
    "fn,expected",
    [
        (vectorised(base=1000.0, trim_odd=False), "base-1000"),
        (vectorised(swap=True, trim_odd=False), "sin-cos-swapped"),
        (vectorised(start=1, trim_odd=False), "positions-from-one"),
        (vectorised(exponent="pair-index", trim_odd=False), "exponent-not-doubled"),
    ],
)
def test_sinusoidal_mistakes_that_also_fail_for_odd_d_model(fn, expected):
    res = check(SIN, fn, quiet=True)
    assert res.mistake == expected, res.message
    assert res.message.endswith(ODD_NOTE)


def test_the_published_loop_in_the_first_exercise():
    """The loop as published (it also crashes for odd d_model: it writes column i + 1)."""
    fn = from_source(BUGGY_POSITIONAL_TABLE, "positional_table")
    res = check(SIN, fn, quiet=True)
    assert res.mistake == "published-loop" and res.message.endswith(ODD_NOTE), res.message


def test_other_wrong_answers_get_generic_feedback():
    res = check(SIN, lambda seq_len, d_model: vectorised()(seq_len, d_model).unsqueeze(0),
                quiet=True)
    assert res.mistake == "wrong-shape"
    res = check(SIN, lambda seq_len, d_model: vectorised()(seq_len, d_model).numpy(), quiet=True)
    assert res.mistake == "wrong-type"
    # Two mistakes at once (maxjcohen/transformer #62 had base 1000 AND the per-column cosine):
    # no single diagnosis fits, so the check reports the first wrong case.
    res = check(SIN, per_column_base_1000, quiet=True)
    assert res.status == "failed" and res.mistake == "wrong-values", res.message


def per_column_base_1000(seq_len, d_model):
    pos = torch.arange(seq_len).unsqueeze(1)
    pe = torch.zeros(seq_len, d_model)
    pe[:, 0::2] = torch.sin(pos / torch.pow(1000, torch.arange(0, d_model, 2, dtype=torch.float32)
                                            / d_model))
    pe[:, 1::2] = torch.cos(pos / torch.pow(1000, torch.arange(1, d_model, 2, dtype=torch.float32)
                                            / d_model))
    return pe


# ---- spot the bug ---------------------------------------------------------------


def test_spot_the_bug_original_code_is_recognised():
    res = check(BUG, from_source(BUGGY_POSITIONAL_TABLE, "positional_table"), quiet=True)
    assert res.mistake == "unchanged", res.message


def _edited(sin_exp, cos_exp):
    source = BUGGY_POSITIONAL_TABLE.replace("(2 * i) / d_model", sin_exp, 1)
    source = source.replace("(2 * (i + 1)) / d_model", cos_exp, 1)
    return from_source(source, "positional_table")


@pytest.mark.parametrize(
    "sin_exp,cos_exp,expected",
    [
        ("i / d_model", "i / d_model", None),
        ("(i // 2) * 2 / d_model", "i / d_model", None),
        ("i / d_model", "(2 * (i + 1)) / d_model", "cos-still-next-pair"),
        ("i / d_model", "(i + 1) / d_model", "cos-per-column"),
        ("(2 * i) / d_model", "(2 * i) / d_model", "both-doubled"),
        ("(2 * i) / d_model", "i / d_model", "sin-still-doubled"),
    ],
)
def test_spot_the_bug_partial_fixes(sin_exp, cos_exp, expected):
    res = check(BUG, _edited(sin_exp, cos_exp), quiet=True)
    if expected is None:
        assert res.passed, res.message
    else:
        assert res.mistake == expected, res.message


def test_spot_the_bug_accepts_a_vectorised_rewrite():
    res = check(BUG, vectorised(), quiet=True)
    assert res.passed, res.message


def test_solutions_notebook_shows_the_same_buggy_code():
    path = ROOT / "solutions" / "03_positional_encoding.ipynb"
    if not path.exists():
        pytest.skip("the Chapter 3 solutions notebook is not written yet")
    markdown = "\n".join(
        "".join(c["source"]) for c in json.loads(path.read_text())["cells"]
        if c["cell_type"] == "markdown"
    )
    assert BUGGY_POSITIONAL_TABLE.strip() in markdown


# ---- apply_rope: learner-style answers ---------------------------------------------

ROPE = "positional.apply_rope"


def rope_vectorised(*, exponent="arange2", start=0, sign=1.0, use_positions=True, use_base=True,
                    keep_dtype=True):
    """The usual vectorised RoPE, with one thing changed."""

    def apply_rope(x, positions=None, base=10000.0):
        L, d = x.shape[-2], x.shape[-1]
        if d % 2:
            raise ValueError("d must be even")
        if positions is None or not use_positions:
            positions = torch.arange(start, start + L)
        b = base if use_base else 10000.0
        if exponent == "arange2":
            inv_freq = 1.0 / b ** (torch.arange(0, d, 2).double() / d)
        elif exponent == "pair-index":
            inv_freq = 1.0 / b ** (torch.arange(d // 2).double() / d)
        else:  # "doubled"
            inv_freq = 1.0 / b ** (2 * torch.arange(0, d, 2).double() / d)
        angle = torch.as_tensor(positions).double()[:, None] * inv_freq  # (L, d/2)
        cos, sin = angle.cos(), sign * angle.sin()
        x1, x2 = x[..., 0::2].double(), x[..., 1::2].double()
        out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
        return out.to(x.dtype) if keep_dtype else out

    return apply_rope


def rope_complex_numbers(x, positions=None, base=10000.0):  # right: pairs as complex numbers
    d = x.shape[-1]
    if d % 2 == 1:
        raise ValueError(f"RoPE rotates pairs of features: d = {d} is odd")
    if positions is None:
        positions = torch.arange(x.shape[-2])
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    rot = torch.polar(torch.ones(len(positions), d // 2, dtype=torch.float64),
                      torch.as_tensor(positions, dtype=torch.float64)[:, None] * theta)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(z * rot).flatten(-2).to(x.dtype)


def rope_conjugate(x, positions=None, base=10000.0):  # complex numbers, rotating by -angle
    d = x.shape[-1]
    if positions is None:
        positions = torch.arange(x.shape[-2])
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    rot = torch.polar(torch.ones(len(positions), d // 2, dtype=torch.float64),
                      torch.as_tensor(positions, dtype=torch.float64)[:, None] * theta)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(z * rot.conj()).flatten(-2).to(x.dtype)


def rope_hugging_face(x, positions=None, base=10000.0):  # the rotate_half layout
    d, L = x.shape[-1], x.shape[-2]
    if positions is None:
        positions = torch.arange(L)
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2).float() / d))
    freqs = torch.outer(torch.as_tensor(positions).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return (x * emb.cos() + torch.cat((-x2, x1), dim=-1) * emb.sin()).to(x.dtype)


def rope_loop(x, positions=None, base=10000.0):  # right, one pair at a time
    d = x.shape[-1]
    if d % 2 == 1:
        raise ValueError("odd")
    L = x.shape[-2]
    pos = list(range(L)) if positions is None else [float(p) for p in positions]
    out = x.clone()
    for j in range(L):
        for i in range(d // 2):
            a = pos[j] * base ** (-2 * i / d)
            c, s = math.cos(a), math.sin(a)
            x1, x2 = x[..., j, 2 * i], x[..., j, 2 * i + 1]
            out[..., j, 2 * i] = x1 * c - x2 * s
            out[..., j, 2 * i + 1] = x1 * s + x2 * c
    return out


def rope_uses_the_package(x, positions=None, base=10000.0):
    from transformer_workbook.positional import apply_rope

    return apply_rope(x, positions, base)


@pytest.mark.parametrize(
    "fn,expected",
    [
        (rope_vectorised(), None),
        (rope_complex_numbers, None),
        (rope_loop, None),
        (rope_hugging_face, "pairs-halves"),
        (rope_vectorised(exponent="pair-index"), "exponent-not-doubled"),
        (rope_vectorised(exponent="doubled"), "exponent-doubled"),
        (rope_vectorised(start=1), "positions-from-one"),
        (rope_vectorised(sign=-1.0), "rotates-backwards"),
        (rope_conjugate, "rotates-backwards"),
        (rope_vectorised(use_positions=False), "ignores-positions"),
        (rope_vectorised(use_base=False), "ignores-base"),
        (rope_vectorised(keep_dtype=False), "wrong-dtype"),
        (rope_uses_the_package, "uses-package"),
    ],
)
def test_rope_learner_answers(fn, expected):
    res = check(ROPE, fn, quiet=True)
    if expected is None:
        assert res.passed, res.message
    else:
        assert res.status == "failed" and res.mistake == expected, res.message


def test_rope_odd_d_must_raise():
    def no_check(x, positions=None, base=10000.0):  # pads silently instead of refusing
        if x.shape[-1] % 2:
            x = torch.nn.functional.pad(x, (0, 1))[..., : x.shape[-1]]
            return x
        return rope_vectorised()(x, positions, base)

    res = check(ROPE, no_check, quiet=True)
    assert res.status == "failed" and res.mistake == "should-raise", res.message


def test_rope_odd_d_must_raise_the_valueerror_the_statement_asks_for():
    """Raising by accident (a broadcast that fails further down) is not rejecting the input."""
    def no_parity_check(x, positions=None, base=10000.0):
        d = x.shape[-1]
        pos = torch.arange(x.shape[-2], dtype=torch.float64) if positions is None else positions.double()
        a = pos[:, None] * base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        c, s = a.cos().to(x.dtype), a.sin().to(x.dtype)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], -1).flatten(-2)

    def asserts(x, positions=None, base=10000.0):
        assert x.shape[-1] % 2 == 0, "d must be even"
        return no_parity_check(x, positions, base)

    class OddDimensionError(ValueError):
        pass

    def own_subclass(x, positions=None, base=10000.0):
        if x.shape[-1] % 2:
            raise OddDimensionError(f"d = {x.shape[-1]} is odd")
        return no_parity_check(x, positions, base)

    for wrong, raised in ((no_parity_check, "RuntimeError"), (asserts, "AssertionError")):
        res = check(ROPE, wrong, quiet=True)
        assert res.status == "failed" and res.mistake == "wrong-exception", res.message
        assert raised in res.message and "ValueError" in res.message
    assert check(ROPE, own_subclass, quiet=True).passed  # a subclass of ValueError is one
