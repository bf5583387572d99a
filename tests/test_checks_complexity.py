"""Chapter 7's checks against answers written the way learners write them.

The registry tests check the reference and each known mistake's own
implementation; here, independently written answers: right ones in other
spellings (which must pass), wrong ones (which must be named).
"""

import math

import pytest

from transformer_workbook.exercises import check

PARAMS, FLOPS = "complexity.parameter_count", "complexity.attention_flops"
CROSS = "complexity.crossover_length"


def verdict(exercise_id, fn):
    return check(exercise_id, fn, quiet=True)


# ---------------------------------------------------------------------------
# complexity.parameter_count
# ---------------------------------------------------------------------------


def linear(n_in, n_out, bias=True):
    return n_in * n_out + (n_out if bias else 0)


def layer_norm(d):
    return 2 * d


def test_parameter_count_right_answers():
    def by_modules(vocab_size, d_model, n_heads, d_ff, n_encoder_layers, n_decoder_layers,
                   tie_embeddings=True):
        attention = 4 * linear(d_model, d_model)
        ffn = linear(d_model, d_ff) + linear(d_ff, d_model)
        encoder_layer = attention + ffn + 2 * layer_norm(d_model)
        decoder_layer = 2 * attention + ffn + 3 * layer_norm(d_model)
        embeddings = vocab_size * d_model * (1 if tie_embeddings else 3)
        return embeddings + n_encoder_layers * encoder_layer + n_decoder_layers * decoder_layer

    def expanded(V, d, h, f, ne, nd, tie_embeddings=True):
        total = ne * (4 * d * d + 2 * d * f + f + 9 * d) + nd * (8 * d * d + 2 * d * f + f + 15 * d)
        total += V * d if tie_embeddings else 3 * V * d
        return total

    for fn in (by_modules, expanded):
        res = verdict(PARAMS, fn)
        assert res.passed, (fn.__name__, res.message)


def _weights_only(V, d, h, f, ne, nd, tie_embeddings=True):
    enc = 4 * d * d + 2 * d * f + 4 * d
    dec = 8 * d * d + 2 * d * f + 6 * d
    return V * d * (1 if tie_embeddings else 3) + ne * enc + nd * dec


def _decoder_like_encoder(V, d, h, f, ne, nd, tie_embeddings=True):
    layer = 4 * linear(d, d) + linear(d, f) + linear(f, d) + 2 * layer_norm(d)
    return V * d * (1 if tie_embeddings else 3) + (ne + nd) * layer


def _tie_ignored(V, d, h, f, ne, nd, tie_embeddings=True):
    enc = 4 * linear(d, d) + linear(d, f) + linear(f, d) + 2 * layer_norm(d)
    dec = 8 * linear(d, d) + linear(d, f) + linear(f, d) + 3 * layer_norm(d)
    return V * d + ne * enc + nd * dec


def _as_float(V, d, h, f, ne, nd, tie_embeddings=True):
    enc = 4 * linear(d, d) + linear(d, f) + linear(f, d) + 2 * layer_norm(d)
    dec = 8 * linear(d, d) + linear(d, f) + linear(f, d) + 3 * layer_norm(d)
    return float(V * d * (1 if tie_embeddings else 3) + ne * enc + nd * dec)


def _builds_the_model(V, d, h, f, ne, nd, tie_embeddings=True):
    from transformer_workbook.model import Transformer

    model = Transformer(V, V, d, h, max(ne, nd), f, tie_embeddings=tie_embeddings)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("answer,mistake", [
    (_weights_only, "no-biases"),
    (_decoder_like_encoder, "decoder-one-attention"),
    (_tie_ignored, "untied-counted-once"),
    (_as_float, "wrong-type"),
    (_builds_the_model, "forbidden-call"),
])
def test_parameter_count_wrong_answers_are_named(answer, mistake):
    res = verdict(PARAMS, answer)
    assert res.status == "failed" and res.mistake == mistake, res.message


def test_parameter_count_with_per_head_matrices_is_wrong_values():
    def per_head(V, d, h, f, ne, nd, tie_embeddings=True):  # every head with its own d x d matrices
        attention = 4 * h * linear(d, d)
        enc = attention + linear(d, f) + linear(f, d) + 2 * layer_norm(d)
        dec = 2 * attention + linear(d, f) + linear(f, d) + 3 * layer_norm(d)
        return V * d * (1 if tie_embeddings else 3) + ne * enc + nd * dec

    res = verdict(PARAMS, per_head)
    # right only where there is one head
    assert res.status == "failed" and res.mistake == "wrong-values" and res.cases_passed == 1


# ---------------------------------------------------------------------------
# complexity.attention_flops
# ---------------------------------------------------------------------------


def test_attention_flops_right_answers():
    def matmul(m, k, n):
        return 2 * m * k * n

    def by_products(seq_len, d_model, kv_len=None, projections=True):
        lk = kv_len or seq_len
        total = matmul(seq_len, d_model, lk) + matmul(seq_len, lk, d_model)
        if projections:
            total += matmul(seq_len, d_model, d_model) * 2 + matmul(lk, d_model, d_model) * 2
        return total

    def per_head(seq_len, d_model, kv_len=None, projections=True, n_heads=8):
        # per head with d_head = d_model / 8, times 8 heads: the same total (integer maths)
        lk = seq_len if kv_len is None else kv_len
        core = n_heads * 4 * seq_len * lk * d_model // n_heads
        return core + (4 * d_model**2 * (seq_len + lk) if projections else 0)

    for fn in (by_products, per_head):
        res = verdict(FLOPS, fn)
        assert res.passed, (fn.__name__, res.message)


@pytest.mark.parametrize("answer,mistake", [
    (lambda L, d, kv_len=None, projections=True:
        L * (kv_len or L) * d * 2 + (4 * d * d * (L + (kv_len or L)) // 2 if projections else 0),
     "multiply-adds"),
    (lambda L, d, kv_len=None, projections=True: 4 * L * L * d + (8 * L * d * d if projections else 0),
     "ignores-kv-len"),
    (lambda L, d, kv_len=None, projections=True: 4 * L * (kv_len or L) * d + 8 * L * d * d * projections,
     "projections-on-queries"),
])
def test_attention_flops_wrong_answers_are_named(answer, mistake):
    res = verdict(FLOPS, answer)
    assert res.status == "failed" and res.mistake == mistake, res.message


def test_attention_flops_with_the_flop_counter_is_refused():
    def attention_flops(seq_len, d_model, kv_len=None, projections=True):
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        q = torch.randn(1, seq_len, d_model)
        k = torch.randn(1, kv_len or seq_len, d_model)
        with FlopCounterMode(display=False) as counter:
            q @ k.transpose(1, 2)
        return counter.get_total_flops()

    res = verdict(FLOPS, attention_flops)
    assert res.status == "failed" and res.mistake == "forbidden-call", res.message


# ---------------------------------------------------------------------------
# complexity.crossover_length
# ---------------------------------------------------------------------------


def test_crossover_right_answers():
    from transformer_workbook.complexity import attention_flops, feed_forward_flops

    def search(d_model, d_ff):
        L = 1
        while attention_flops(L, d_model) <= feed_forward_flops(L, d_model, d_ff):
            L += 1
        return L

    def closed_form(d_model, d_ff):
        return max(d_ff - 2 * d_model, 0) + 1

    def with_floor(d_model, d_ff):
        return max(1, math.floor(d_ff - 2 * d_model) + 1)

    for fn in (search, closed_form, with_floor):
        res = verdict(CROSS, fn)
        assert res.passed, (fn.__name__, res.message)


@pytest.mark.parametrize("answer,mistake", [
    (lambda d_model, d_ff: d_ff - 2 * d_model + 1, "no-clamp"),
    (lambda d_model, d_ff: max(1, d_ff - 2 * d_model), "ties"),
    (lambda d_model, d_ff: 2 * d_model + 1, "ignores-d_ff"),
    (lambda d_model, d_ff: d_ff + 1, "no-projections"),
])
def test_crossover_wrong_answers_are_named(answer, mistake):
    res = verdict(CROSS, answer)
    assert res.status == "failed" and res.mistake == mistake, res.message


def test_crossover_as_a_float_is_the_wrong_type():
    res = verdict(CROSS, lambda d_model, d_ff: max(1.0, d_ff / 1 - 2 * d_model + 1))
    assert res.status == "failed" and res.mistake == "wrong-type" and "int" in res.message
