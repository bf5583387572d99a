"""Chapter 7's counts against the real models, PyTorch's FLOP counter and published sizes."""

from __future__ import annotations

import statistics

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from transformer_workbook.attention import scaled_dot_product_attention
from transformer_workbook.complexity import (
    Measurement,
    attention_flops,
    decoder_layer_parameter_count,
    decoder_only_flops,
    decoder_only_parameter_count,
    encoder_layer_parameter_count,
    feed_forward_flops,
    loglog_slope,
    peak_memory,
    sweep,
    time_call,
    training_flops,
    transformer_flops,
    transformer_parameter_count,
)
from transformer_workbook.decoder import Decoder, DecoderLayer
from transformer_workbook.encoder import Encoder, EncoderLayer, record_attention
from transformer_workbook.masks import padding_mask
from transformer_workbook.model import DecoderOnlyLM, Transformer


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------
# Parameter counts: formula == sum(p.numel()) of the course's modules
# ---------------------------------------------------------------------------

CONFIGS = [
    # vocab, d_model, n_heads, n_layers, d_ff
    (5, 4, 1, 1, 8),
    (11, 8, 2, 2, 16),
    (37, 12, 3, 1, 20),
    (64, 16, 4, 3, 64),
    (100, 24, 6, 2, 7),
    (7, 32, 8, 0, 32),
]


@pytest.mark.parametrize("vocab,d_model,n_heads,n_layers,d_ff", CONFIGS)
@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_parameter_count_equals_the_model(
    vocab, d_model, n_heads, n_layers, d_ff, tie, norm_first
):
    model = Transformer(vocab, vocab, d_model, n_heads, n_layers, d_ff, max_len=8,
                        norm_first=norm_first, tie_embeddings=tie)
    formula = transformer_parameter_count(vocab, d_model, n_heads, d_ff, n_layers, n_layers,
                                          tie_embeddings=tie, norm_first=norm_first)
    assert formula == _count(model)


@pytest.mark.parametrize("n_enc,n_dec", [(1, 3), (4, 0), (2, 5)])
def test_transformer_parameter_count_with_different_stack_depths(n_enc, n_dec):
    vocab, d, h, ff = 17, 8, 2, 12
    parts = _count(Encoder(d, h, n_enc, ff)) + _count(Decoder(d, h, n_dec, ff)) + vocab * d
    assert transformer_parameter_count(vocab, d, h, ff, n_enc, n_dec) == parts


@pytest.mark.parametrize("vocab,d_model,n_heads,n_layers,d_ff", CONFIGS)
@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_only_parameter_count_equals_the_model(
    vocab, d_model, n_heads, n_layers, d_ff, tie, norm_first
):
    lm = DecoderOnlyLM(vocab, d_model, n_heads, n_layers, d_ff, max_len=8, norm_first=norm_first,
                       tie_embeddings=tie)
    assert decoder_only_parameter_count(vocab, d_model, n_layers, d_ff, tie, norm_first) == _count(lm)


def test_layer_counts_equal_torch_layers():
    d, ff = 16, 40
    assert encoder_layer_parameter_count(d, ff) == _count(EncoderLayer(d, 4, ff))
    assert encoder_layer_parameter_count(d, ff) == _count(torch.nn.TransformerEncoderLayer(d, 4, ff))
    assert decoder_layer_parameter_count(d, ff) == _count(torch.nn.TransformerDecoderLayer(d, 4, ff))
    decoder_only_layer = DecoderLayer(d, 4, ff, cross_attention=False)
    assert decoder_layer_parameter_count(d, ff, cross_attention=False) == _count(decoder_only_layer)


def test_heads_do_not_change_the_count():
    counts = {transformer_parameter_count(100, 48, h, 96, 2, 2) for h in (1, 2, 3, 4, 6, 8, 12)}
    assert len(counts) == 1
    assert {_count(Transformer(100, 100, 48, h, 1, 96)) for h in (1, 4, 12)} == {
        transformer_parameter_count(100, 48, 1, 96, 1, 1)
    }


# ---------------------------------------------------------------------------
# Published sizes
# ---------------------------------------------------------------------------


def test_paper_base_and_big_models():
    """Table 3 of the paper: base 65M, big 213M (shared 37000-token vocabulary, post-LN, tied)."""
    base = transformer_parameter_count(37000, 512, 8, 2048, 6, 6)
    big = transformer_parameter_count(37000, 1024, 16, 4096, 6, 6)
    assert base == 63_082_496  # embeddings 18.9M + encoder 18.9M + decoder 25.2M
    assert big == 214_245_376
    assert abs(base / 65e6 - 1) < 0.035  # the paper rounds; 3% under
    assert abs(big / 213e6 - 1) < 0.01
    # the embedding matrix is 30% of the base model, 18% of the big one
    assert round(37000 * 512 / base, 2) == 0.30 and round(37000 * 1024 / big, 2) == 0.18


def test_gpt2_small_exactly_and_gpt3_sizes():
    """GPT-2 small has exactly 124,439,808 parameters (Hugging Face's count); GPT-3 Table 2.1."""
    gpt2 = decoder_only_parameter_count(50257, 768, 12, 4 * 768, norm_first=True, n_positions=1024)
    assert gpt2 == 124_439_808

    def gpt3(d_model, n_layers):
        return decoder_only_parameter_count(50257, d_model, n_layers, 4 * d_model, norm_first=True,
                                            n_positions=2048)

    assert abs(gpt3(12288, 96) / 175e9 - 1) < 0.005  # 174.6B
    assert abs(gpt3(768, 12) / 125e6 - 1) < 0.01  # GPT-3 Small
    assert abs(gpt3(2048, 24) / 1.3e9 - 1) < 0.015  # GPT-3 XL
    assert abs(gpt3(5120, 40) / 13e9 - 1) < 0.015  # GPT-3 13B: 12.85B
    # the layers are 12 d^2 (+ 13 d) each: 99.6% of GPT-3's parameters
    assert 96 * 12 * 12288**2 / gpt3(12288, 96) > 0.99


def test_six_n_d():
    assert training_flops(175e9, 300e9) == pytest.approx(3.15e23)  # the GPT-3 paper: 3.14e23
    assert training_flops(2, 3) == 36


# ---------------------------------------------------------------------------
# FLOPs: formulas, and PyTorch's FLOP counter on the real models
# ---------------------------------------------------------------------------


def test_attention_flops_formula():
    L, d = 10, 6
    assert attention_flops(L, d) == 8 * L * d * d + 4 * L * L * d
    assert attention_flops(L, d, projections=False) == 4 * L * L * d
    assert attention_flops(3, d, kv_len=7) == 2 * d * d * (3 + 7 + 7 + 3) + 4 * 3 * 7 * d
    # the quadratic term overtakes the projections at L = 2 d
    d = 64
    assert attention_flops(2 * d, d, projections=False) == attention_flops(2 * d, d) // 2
    assert feed_forward_flops(L, d, 4 * d) == 4 * L * d * 4 * d
    assert feed_forward_flops(L, d, 4 * d, gated=True) == 6 * L * d * 4 * d


def test_transformer_flops_equal_torch_flop_counter():
    """Every matrix product of a forward pass, counted by torch.utils.flop_counter."""
    model = Transformer(13, 13, 16, 4, 2, 40).eval()
    B, Ls, Lt = 3, 7, 5
    src, tgt = torch.randint(0, 13, (B, Ls)), torch.randint(0, 13, (B, Lt))
    keep = padding_mask(torch.tensor([7, 4, 2]), Ls)
    # Chapter 1's attention (matmuls the counter sees) instead of the fused kernel
    with record_attention(model), FlopCounterMode(display=False) as counter:
        model(src, tgt, keep)
    assert counter.get_total_flops() == B * transformer_flops(Ls, Lt, 13, 16, 40, 2, 2)


def test_decoder_only_flops_two_n_per_token_and_backward_twice_forward():
    lm = DecoderOnlyLM(13, 16, 4, 2, 40)
    B, L = 2, 9
    x = torch.randint(0, 13, (B, L))
    with record_attention(lm), FlopCounterMode(display=False) as counter:
        lm(x)
    forward = counter.get_total_flops()
    assert forward == B * decoder_only_flops(L, 13, 16, 40, 2)
    matrices = sum(p.numel() for p in lm.parameters() if p.dim() == 2)  # tied embedding once
    assert decoder_only_flops(L, 13, 16, 40, 2) == 2 * matrices * L + 4 * 2 * L * L * 16
    with record_attention(lm), FlopCounterMode(display=False) as counter:
        lm(x).sum().backward()
    assert counter.get_total_flops() == 3 * forward  # forward + backward: the 6 in 6ND


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------


def test_peak_memory_of_known_allocations():
    n = 500
    assert 4 * n * n <= peak_memory(lambda: torch.ones(n, n)) < 4 * n * n + 4096
    assert 8 * n * n <= peak_memory(lambda: torch.ones(n, n) + 1) < 8 * n * n + 4096  # two alive at once
    x = torch.ones(n, n)
    assert peak_memory(lambda: x.add_(1)) < 64  # in place: nothing but the wrapped scalar 1
    assert peak_memory(lambda: None) == 0


def test_peak_memory_grows_quadratically_for_materialized_weights():
    """The explicit attention stores (B, H, L, L) weights; the fused kernel does not."""
    lengths = [64, 256]

    def explicit(L):
        q = torch.randn(1, 2, L, 16)
        return lambda: scaled_dot_product_attention(q, q, q)

    def fused(L):
        q = torch.randn(1, 2, L, 16)
        return lambda: F.scaled_dot_product_attention(q, q, q)

    mem_explicit = [peak_memory(explicit(L)) for L in lengths]
    mem_fused = [peak_memory(fused(L)) for L in lengths]
    assert 1.9 < loglog_slope(lengths, mem_explicit) < 2.05
    assert loglog_slope(lengths, mem_fused) < 1.5
    assert mem_explicit[-1] >= 2 * 256 * 256 * 4  # at least the weights themselves


def test_peak_memory_is_quiet(capfd):
    """The profiler prints nothing on stderr (nbval compares a notebook's stderr).

    Kineto reads its log level when the first profiler of the process starts;
    peak_memory sets it first. (No other test starts a profiler before.)
    """
    assert peak_memory(lambda: torch.ones(10, 10)) == 400
    captured = capfd.readouterr()  # file-descriptor level: C++ output included
    assert captured.err == "" and captured.out == ""


def test_time_call_and_sweep_count_their_runs():
    calls = []
    times = time_call(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(times) == 4 and len(calls) == 6 and all(t >= 0 for t in times)
    with pytest.raises(ValueError):
        time_call(lambda: None, repeats=0)

    made = []

    def make(n):
        made.append(n)
        return lambda: torch.zeros(n)

    results = sweep(make, [10, 100], repeats=3, warmup=1)
    assert made == [10, 100]
    assert [r.value for r in results] == [10, 100]
    for r in results:
        assert isinstance(r, Measurement) and len(r.times) == 3
        assert r.seconds == statistics.median(r.times)
    assert [r.peak_bytes for r in results] == [40, 400]
    assert sweep(make, [5], repeats=1, memory=False)[0].peak_bytes is None


def test_loglog_slope():
    xs = [1, 2, 4, 8, 16]
    assert loglog_slope(xs, [3 * x**2 for x in xs]) == pytest.approx(2.0)
    assert loglog_slope(xs, [5 * x for x in xs]) == pytest.approx(1.0)
    assert loglog_slope(xs, [7.0] * 5) == pytest.approx(0.0)
    for bad in (([1], [1]), ([1, 2], [1]), ([0, 1], [1, 2]), ([2, 2], [1, 3])):
        with pytest.raises(ValueError):
            loglog_slope(*bad)


# ---------------------------------------------------------------------------
# Where attention overtakes the feed-forward network
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("d_model,d_ff", [(512, 2048), (64, 256), (128, 1000), (256, 256), (100, 200),
                                          (48, 4096), (1, 3), (8, 17)])
def test_crossover_length_is_the_first_length_where_attention_costs_more(d_model, d_ff):
    from transformer_workbook.complexity import crossover_length

    L = crossover_length(d_model, d_ff)
    assert L >= 1
    assert attention_flops(L, d_model) > feed_forward_flops(L, d_model, d_ff)
    if L > 1:
        assert attention_flops(L - 1, d_model) <= feed_forward_flops(L - 1, d_model, d_ff)
    assert crossover_length(512, 2048) == 1025  # the paper's base model: L = 2 d_model + 1


def test_crossover_length_against_torch_flop_counter():
    """Counted by PyTorch on the course's modules, attention overtakes the FFN exactly there."""
    from transformer_workbook.complexity import crossover_length
    from transformer_workbook.encoder import FeedForward
    from transformer_workbook.multihead import MultiHeadAttention

    d_model, d_ff = 16, 56
    attention, ffn = MultiHeadAttention(d_model, 4), FeedForward(d_model, d_ff)

    def counted(module, L, *extra):
        x = torch.randn(1, L, d_model)
        with FlopCounterMode(display=False) as counter:
            module(x, *extra)
        return counter.get_total_flops()

    L = crossover_length(d_model, d_ff)
    assert L == 25
    for n, more in ((L - 1, False), (L, True)):
        assert (counted(attention, n, torch.randn(1, n, d_model), torch.randn(1, n, d_model))
                > counted(ffn, n)) is more


# ---------------------------------------------------------------------------
# Measuring a GPU: synchronized times, the CUDA allocator's peak
# ---------------------------------------------------------------------------


def test_time_call_and_peak_memory_take_a_cpu_device():
    assert len(time_call(lambda: torch.ones(3), repeats=2, device="cpu")) == 2
    assert peak_memory(lambda: torch.ones(100, 100), device="cpu") == 40_000
    assert sweep(lambda n: (lambda: torch.zeros(n)), [10], repeats=1, device="cpu")[0].peak_bytes == 40


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_peak_memory_and_sweep_on_a_gpu():
    n = 1024
    peak = peak_memory(lambda: torch.ones(n, n, device="cuda"), device="cuda")
    assert 4 * n * n <= peak < 4 * n * n + 2**20
    results = sweep(lambda L: (lambda: torch.ones(L, L, device="cuda")), [256, 1024], repeats=2,
                    device="cuda")
    assert 1.9 < loglog_slope([256, 1024], [r.peak_bytes for r in results]) < 2.1
