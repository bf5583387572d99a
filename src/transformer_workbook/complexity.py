"""Chapter 7: what a Transformer costs, in parameters, FLOPs, time and memory.

**Parameters.** Every count here equals ``sum(p.numel() for p in model.parameters())``
of the course's modules with the same configuration (tested), and says exactly
what it includes: weight matrices *and* biases of every linear layer, the gain
and bias of every LayerNorm, the embedding matrices (a tied matrix once), no
positional parameters (the course's encoding is sinusoidal, a fixed table)
unless ``n_positions`` asks for a learned table, and no output bias (the
course's output projection has none). The number of heads never matters:
multi-head attention has ``4 d^2 + 4 d`` parameters for any ``n_heads``.

**FLOPs.** One multiply-add is 2 FLOPs. The counts are the forward pass's
*matrix multiplications*, per sequence (multiply by the batch size), the
convention of Kaplan et al. (2020) and of the ``C = 6 N D`` rule. Left out:
softmax, scaling, masking, biases, activations, normalizations, residual
additions and embedding lookups, each ``O(L d)`` or ``O(H L^2)``, small next to
the matrix products. Attention scores are counted for the full ``Lq x Lk``
matrix, masked or not. A backward pass costs about twice the forward, so
training costs about 3x the forward FLOPs: :func:`training_flops`.

**Time and memory.** :func:`sweep` runs a function for each value of a
parameter and returns the median time over repeats and the peak memory.
Peak memory on the CPU is measured with PyTorch's profiler: with
``profile_memory=True`` it records every allocation and free of PyTorch's CPU
allocator, in order, so the running sum of those events gives the most bytes
of tensors alive at once during the call, above what was alive when it began
(:func:`peak_memory`). It sees only memory allocated by PyTorch for tensors
(not Python objects, not the process's other memory); ``tracemalloc`` cannot
see it at all, and the process's resident size mixes it with everything else
and does not go down reliably. On a GPU (``device="cuda"``) the CUDA
allocator's own peak statistic is used, and every timed run is synchronized.
:func:`loglog_slope` fits ``y ~ x^k`` to a sweep's results: ``k`` close to 2
means quadratic growth.

**Where attention's square overtakes the rest.** :func:`crossover_length`
is the shortest sequence on which a self-attention costs more than the
feed-forward network (``d_ff - 2 d_model + 1``).
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "attention_flops",
    "feed_forward_flops",
    "encoder_layer_flops",
    "decoder_layer_flops",
    "transformer_flops",
    "decoder_only_flops",
    "training_flops",
    "crossover_length",
    "attention_parameter_count",
    "feed_forward_parameter_count",
    "encoder_layer_parameter_count",
    "decoder_layer_parameter_count",
    "transformer_parameter_count",
    "decoder_only_parameter_count",
    "Measurement",
    "time_call",
    "peak_memory",
    "sweep",
    "loglog_slope",
]


# ---------------------------------------------------------------------------
# FLOPs (forward pass, per sequence, 2 FLOPs per multiply-add)
# ---------------------------------------------------------------------------


def attention_flops(seq_len: int, d_model: int, kv_len: int | None = None, projections: bool = True) -> int:
    """Forward FLOPs of one multi-head attention over one sequence.

    With ``Lq = seq_len`` queries and ``Lk = kv_len`` keys (default ``seq_len``,
    self-attention):

    - scores ``Q K^T``: ``2 Lq Lk d_model`` (each head ``Lq x Lk`` dot products
      of length ``d_head``; the heads together, ``d_model``);
    - weights times values: ``2 Lq Lk d_model``;
    - with ``projections`` (default), the four ``d_model x d_model``
      projections: ``2 d^2 (Lq + Lk + Lk + Lq)`` for Q, K, V and the output.

    Self-attention: ``8 L d^2 + 4 L^2 d``; the ``L^2`` term overtakes the
    ``L d^2`` term when ``L > 2 d``. Independent of the number of heads.
    """
    lq, lk, d = seq_len, seq_len if kv_len is None else kv_len, d_model
    flops = 2 * lq * lk * d + 2 * lq * lk * d  # Q K^T and weights @ V, all heads
    if projections:
        flops += 2 * d * d * (lq + lk + lk + lq)  # W_Q on queries, W_K and W_V on keys, W_O
    return flops


def feed_forward_flops(seq_len: int, d_model: int, d_ff: int, gated: bool = False) -> int:
    """Forward FLOPs of the position-wise feed-forward network on ``seq_len`` positions.

    Two matrices ``d_model x d_ff``: ``4 L d d_ff``; a gated network
    (:class:`~transformer_workbook.encoder.SwiGLU`, three matrices): ``6 L d d_ff``.
    """
    n_matrices = 3 if gated else 2
    return 2 * n_matrices * seq_len * d_model * d_ff


def encoder_layer_flops(seq_len: int, d_model: int, d_ff: int) -> int:
    """Forward FLOPs of one encoder layer: self-attention + feed-forward."""
    return attention_flops(seq_len, d_model) + feed_forward_flops(seq_len, d_model, d_ff)


def decoder_layer_flops(tgt_len: int, src_len: int | None, d_model: int, d_ff: int) -> int:
    """Forward FLOPs of one decoder layer: self-attention, cross-attention (``src_len`` keys), FFN.

    ``src_len=None``: a decoder-only layer, without cross-attention.
    """
    flops = attention_flops(tgt_len, d_model) + feed_forward_flops(tgt_len, d_model, d_ff)
    if src_len is not None:
        flops += attention_flops(tgt_len, d_model, kv_len=src_len)
    return flops


def transformer_flops(
    src_len: int,
    tgt_len: int,
    vocab_size: int,
    d_model: int,
    d_ff: int,
    n_encoder_layers: int,
    n_decoder_layers: int,
) -> int:
    """Forward FLOPs of :class:`~transformer_workbook.model.Transformer` on one (source, target) pair.

    The encoder's layers on ``src_len`` positions, the decoder's on
    ``tgt_len``, and the output projection ``2 Lt d V`` (embedding lookups
    cost no FLOPs).
    """
    return (
        n_encoder_layers * encoder_layer_flops(src_len, d_model, d_ff)
        + n_decoder_layers * decoder_layer_flops(tgt_len, src_len, d_model, d_ff)
        + 2 * tgt_len * d_model * vocab_size
    )


def decoder_only_flops(seq_len: int, vocab_size: int, d_model: int, d_ff: int, n_layers: int) -> int:
    """Forward FLOPs of :class:`~transformer_workbook.model.DecoderOnlyLM` on one sequence.

    Equals ``2 N' L + 4 n_layers L^2 d_model``, where ``N'`` counts the weight
    matrices (the embedding once, as the output projection): the ``2 N``
    FLOPs per token of the ``6 N D`` rule, plus attention's ``L^2`` term.
    """
    return n_layers * decoder_layer_flops(seq_len, None, d_model, d_ff) + 2 * seq_len * d_model * vocab_size


def training_flops(n_params: float, n_tokens: float) -> float:
    """``C = 6 N D``: the FLOPs to train ``N`` parameters on ``D`` tokens (Kaplan et al., 2020).

    The forward pass costs about ``2 N`` FLOPs per token (a multiply-add per
    parameter), the backward pass about twice that (gradients with respect to
    the activations and to the weights). It ignores attention's ``L^2`` term,
    small while the context is short next to ``12 d_model``. GPT-3 (175B
    parameters, 300B tokens): ``3.15e23`` FLOPs, the paper's 3.14e23.
    """
    return 6 * n_params * n_tokens


def crossover_length(d_model: int, d_ff: int) -> int:
    """The shortest sequence on which one self-attention costs more FLOPs than the feed-forward network.

    Self-attention (:func:`attention_flops`, projections included) costs
    ``8 L d^2 + 4 L^2 d``, the feed-forward network (:func:`feed_forward_flops`)
    ``4 L d d_ff``. Divided by ``4 L d``, attention costs more exactly when
    ``2 d + L > d_ff``, that is ``L > d_ff - 2 d``: the answer is the smallest
    whole ``L >= 1`` above that, ``max(1, d_ff - 2 d + 1)``. With the paper's
    ``d_ff = 4 d``: ``L = 2 d + 1`` (1025 for the base model); when ``d_ff <= 2 d``
    attention costs more from the first token.
    """
    return max(1, d_ff - 2 * d_model + 1)


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------


def attention_parameter_count(d_model: int) -> int:
    """``MultiHeadAttention``: four ``d x d`` projections with biases, ``4 d^2 + 4 d`` (any ``n_heads``)."""
    return 4 * d_model * d_model + 4 * d_model


def feed_forward_parameter_count(d_model: int, d_ff: int) -> int:
    """``FeedForward``: ``d x d_ff`` and ``d_ff x d`` with biases, ``2 d d_ff + d_ff + d``."""
    return 2 * d_model * d_ff + d_ff + d_model


def encoder_layer_parameter_count(d_model: int, d_ff: int) -> int:
    """``EncoderLayer``: attention, feed-forward, two LayerNorms (gain and bias each)."""
    return attention_parameter_count(d_model) + feed_forward_parameter_count(d_model, d_ff) + 2 * 2 * d_model


def decoder_layer_parameter_count(d_model: int, d_ff: int, cross_attention: bool = True) -> int:
    """``DecoderLayer``: self- and cross-attention, feed-forward, three LayerNorms (two without cross)."""
    n_attention, n_norms = (2, 3) if cross_attention else (1, 2)
    return (
        n_attention * attention_parameter_count(d_model)
        + feed_forward_parameter_count(d_model, d_ff)
        + n_norms * 2 * d_model
    )


def transformer_parameter_count(
    vocab_size: int,
    d_model: int,
    n_heads: int,
    d_ff: int,
    n_encoder_layers: int,
    n_decoder_layers: int,
    tie_embeddings: bool = True,
    norm_first: bool = False,
) -> int:
    """Parameters of an encoder-decoder Transformer with one vocabulary of ``vocab_size`` on both sides.

    Equals ``sum(p.numel() for p in Transformer(vocab_size, vocab_size, d_model,
    n_heads, n_layers, d_ff, norm_first=norm_first,
    tie_embeddings=tie_embeddings).parameters())`` when both stacks have
    ``n_layers`` layers. It counts

    - embeddings: one ``V x d`` matrix shared by the source embedding, the
      target embedding and the output projection when ``tie_embeddings``
      (the paper), three otherwise; no output bias, no positional parameters;
    - every encoder and decoder layer (projections with biases, LayerNorms);
    - with ``norm_first``, the final LayerNorm of each stack.

    ``n_heads`` does not change the count (it is accepted so the call reads
    like the model's). The paper's base model (``V = 37000``, ``d = 512``,
    ``d_ff = 2048``, 6 + 6 layers): 63.1M (the paper says 65M); big
    (``d = 1024``, ``d_ff = 4096``, 16 heads): 214.3M (the paper: 213M).
    """
    del n_heads  # the count does not depend on it
    embeddings = (1 if tie_embeddings else 3) * vocab_size * d_model
    encoder = n_encoder_layers * encoder_layer_parameter_count(d_model, d_ff)
    decoder = n_decoder_layers * decoder_layer_parameter_count(d_model, d_ff)
    final_norms = 2 * 2 * d_model if norm_first else 0
    return embeddings + encoder + decoder + final_norms


def decoder_only_parameter_count(
    vocab_size: int,
    d_model: int,
    n_layers: int,
    d_ff: int,
    tie_embeddings: bool = True,
    norm_first: bool = False,
    n_positions: int = 0,
) -> int:
    """Parameters of a decoder-only model (:class:`~transformer_workbook.model.DecoderOnlyLM`).

    The embedding matrix (once when tied to the output projection, twice
    otherwise), ``n_layers`` decoder layers without cross-attention
    (``12 d^2 + 13 d`` each when ``d_ff = 4 d``), the final LayerNorm when
    ``norm_first``, and ``n_positions x d`` for a learned position table
    (0, the default, for the course's sinusoidal encoding; GPT-2 and GPT-3
    learn one, ``n_positions`` = the context length). With the defaults it
    equals ``sum(p.numel())`` of ``DecoderOnlyLM(vocab_size, d_model, n_heads,
    n_layers, d_ff, norm_first=norm_first, tie_embeddings=tie_embeddings)``.

    GPT-3 175B (``d = 12288``, 96 layers, ``d_ff = 4 d``, ``V = 50257``,
    ``n_positions = 2048``, ``norm_first=True``): 174.6B.
    """
    embeddings = (1 if tie_embeddings else 2) * vocab_size * d_model
    layers = n_layers * decoder_layer_parameter_count(d_model, d_ff, cross_attention=False)
    final_norm = 2 * d_model if norm_first else 0
    return embeddings + layers + final_norm + n_positions * d_model


# ---------------------------------------------------------------------------
# Measuring: time, peak memory, sweeps, slopes
# ---------------------------------------------------------------------------


@dataclass
class Measurement:
    """One point of a :func:`sweep`.

    Attributes:
        value: the swept parameter's value (e.g. the sequence length).
        seconds: the median of ``times``.
        peak_bytes: peak tensor memory of one call (:func:`peak_memory`), or None.
        times: every timed repeat, in seconds.
    """

    value: Any
    seconds: float
    peak_bytes: int | None
    times: list[float] = field(default_factory=list)


def _is_cuda(device: Any) -> bool:
    return device is not None and str(device).startswith("cuda")


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1, device: Any = None) -> list[float]:
    """Run ``fn()`` ``warmup`` times untimed, then ``repeats`` times; return each run's seconds.

    Report the *median* of the returned times: on a shared machine single runs
    are noisy, and the median ignores the occasional slow one. On a GPU
    (``device="cuda"``), kernels run asynchronously: the clock would stop
    before they finish, so each run is bracketed by ``torch.cuda.synchronize``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    sync = _synchronizer(device)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def _synchronizer(device: Any) -> Callable[[], None]:
    if not _is_cuda(device):
        return lambda: None
    import torch

    return lambda: torch.cuda.synchronize(device)


def peak_memory(fn: Callable[[], Any], device: Any = None) -> int:
    """The peak bytes of PyTorch tensors alive during ``fn()``, above those alive when it started.

    On the CPU (the default) it runs ``fn()`` once under
    ``torch.profiler.profile(profile_memory=True)``, which records every
    allocation (+bytes) and free (-bytes) of PyTorch's CPU allocator in
    order; the peak is the largest running sum (0 if ``fn`` allocates
    nothing). Tensors ``fn`` returns count (they are alive at its end);
    memory freed by ``fn`` that was allocated before it counts negatively,
    which can hide part of a peak, so start from a clean state. The profiler
    slows ``fn`` down: time it separately (:func:`time_call`).

    On a GPU (``device="cuda"``) it reads the CUDA allocator's own peak
    statistic instead (``torch.cuda.max_memory_allocated``, reset first).
    """
    if _is_cuda(device):
        import torch

        gc.collect()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return max(0, torch.cuda.max_memory_allocated(device) - before)
    from torch.profiler import ProfilerActivity, profile

    # Kineto (the profiler's backend) prints start/stop messages on stderr,
    # which would land in a notebook's output; level 6 silences them. It reads
    # the variable once, when the first profiler in the process starts.
    quiet = "KINETO_LOG_LEVEL" not in os.environ
    if quiet:
        os.environ["KINETO_LOG_LEVEL"] = "6"
    gc.collect()
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    finally:
        if quiet:
            del os.environ["KINETO_LOG_LEVEL"]
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    alive = peak = 0
    for event in events:
        alive += event.nbytes()  # + on allocation, - on free
        peak = max(peak, alive)
    return peak


def sweep(
    make_fn: Callable[[Any], Callable[[], Any]],
    values: Sequence[Any],
    repeats: int = 5,
    warmup: int = 1,
    memory: bool = True,
    device: Any = None,
) -> list[Measurement]:
    """Time (and measure the peak memory of) a function for each value of a parameter.

    ``make_fn(value)`` prepares everything that should *not* be measured
    (inputs, modules) and returns a function of no arguments that runs the
    thing to measure. For example, attention at several sequence lengths::

        def make(L):
            q = k = v = torch.randn(1, 4, L, 64)
            return lambda: F.scaled_dot_product_attention(q, k, v)

        results = sweep(make, [256, 512, 1024, 2048])
        loglog_slope([r.value for r in results], [r.seconds for r in results])

    Returns one :class:`Measurement` per value: the median of ``repeats``
    timed runs after ``warmup`` untimed ones, and (with ``memory``) the peak
    memory of one more, profiled, run. ``device="cuda"`` measures a GPU
    (see :func:`time_call` and :func:`peak_memory`).
    """
    results = []
    for value in values:
        fn = make_fn(value)
        times = time_call(fn, repeats, warmup, device)
        peak = peak_memory(fn, device) if memory else None
        results.append(Measurement(value, statistics.median(times), peak, times))
    return results


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The exponent ``k`` of the power law ``y ~ c x^k`` that best fits the points (least squares in log-log).

    The slope of the straight line through ``(log x, log y)``: about 1 for
    linear growth, 2 for quadratic. Fit only the sizes where the growth has
    set in: at small sizes fixed overheads flatten the curve.
    """
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("need at least two (x, y) points, as many xs as ys")
    if min(xs) <= 0 or min(ys) <= 0:
        raise ValueError("a log-log fit needs positive values")
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    if sxx == 0:
        raise ValueError("the xs must not all be equal")
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sxx
