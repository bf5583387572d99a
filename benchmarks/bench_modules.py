"""The course's modules against PyTorch's, side by side; attention's cost as the length grows.

- :func:`module_rows`: ``MultiHeadAttention``, ``EncoderLayer``, ``DecoderLayer``
  against ``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``,
  ``nn.TransformerDecoderLayer`` (weights copied with ``from_torch``, so the
  configuration is provably the same: the outputs are compared), and
  ``model.Transformer`` against ``nn.Transformer`` with the same embeddings and
  output projection (``bench_model.TorchTransformer``; the parameter counts are
  compared) on a real batch of Chapter 8's date task. Forward (eval mode, no
  gradients: PyTorch may take its fused inference path, as it would for a user)
  and training step (forward, backward, AdamW step, in train mode).
- :func:`size_rows`: the training step of the whole model at several widths.
- :func:`attention_scaling`: the course's teaching attention (Chapter 1's, which
  builds the weights) against ``F.scaled_dot_product_attention`` across sequence
  lengths, with :func:`transformer_workbook.complexity.sweep`,
  ``peak_memory`` and ``loglog_slope`` (Chapter 7's helpers).

    python benchmarks/run.py modules attention
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from bench_common import compare, summary, time_side_by_side
from bench_model import TorchTransformer
from torch import nn

from transformer_workbook import complexity
from transformer_workbook.attention import scaled_dot_product_attention
from transformer_workbook.decoder import DecoderLayer
from transformer_workbook.encoder import EncoderLayer
from transformer_workbook.masks import causal_mask, to_float_mask
from transformer_workbook.model import Transformer
from transformer_workbook.multihead import MultiHeadAttention
from transformer_workbook.training import DATE_RECIPE, label_smoothed_cross_entropy

#: The layers' configuration: Chapter 2's MultiHeadAttention comparison (batch 16,
#: d_model 256, 8 heads), sequences of 128, the paper's d_ff = 4 d_model and dropout 0.1.
LAYER = {"batch": 16, "length": 128, "d_model": 256, "n_heads": 8, "d_ff": 1024, "dropout": 0.1}
#: Chapter 8's model (training.DATE_RECIPE) on a batch of its own data.
MODEL_BATCH = DATE_RECIPE.batch_size
#: The widths of the size sweep (2 + 2 layers, 4 heads, d_ff = 4 d_model, Chapter 8's batch).
SIZES = (32, 64, 128, 256)
#: Attention's sweep: one sequence, 8 heads of 64 dimensions; lengths doubling.
ATTENTION = {"batch": 1, "n_heads": 8, "d_head": 64, "lengths": (128, 256, 512, 1024, 2048), "fit_from": 256}


def _train_step(module, optimizer, loss_of):
    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_of(module).backward()
        optimizer.step()

    return step


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _pair_row(name, what, config, ours_fn, theirs_fn, repeats, **extra):
    times = time_side_by_side({"ours": ours_fn, "theirs": theirs_fn}, repeats=repeats)
    row = {"module": name, "what": what, "config": config, **compare(times["ours"], times["theirs"]), **extra}
    r = row["ratio"]
    print(f"   {name:28} {what:24} ours {row['ours']['median'] * 1e3:8.2f} ms  "
          f"torch {row['theirs']['median'] * 1e3:8.2f} ms  ratio {r['median']:.2f} "
          f"({r['min']:.2f}-{r['max']:.2f})", flush=True)
    return row


def _forward_and_step(name, config, ours, theirs, inputs_ours, inputs_theirs, repeats, **extra):
    """Two rows: forward (eval, no grad) and training step (train mode, AdamW)."""
    rows = []
    ours.eval()
    theirs.eval()

    def fwd(m, kw):
        def run():
            with torch.no_grad():
                m(**kw)
        return run

    rows.append(_pair_row(name, "forward", config, fwd(ours, inputs_ours), fwd(theirs, inputs_theirs),
                          repeats, **extra))
    ours.train()
    theirs.train()

    def loss_of(kw):
        return lambda m: _first(m(**kw)).float().square().mean()

    step_ours = _train_step(ours, torch.optim.AdamW(ours.parameters(), 1e-4), loss_of(inputs_ours))
    step_theirs = _train_step(theirs, torch.optim.AdamW(theirs.parameters(), 1e-4), loss_of(inputs_theirs))
    rows.append(_pair_row(name, "training step", config, step_ours, step_theirs, repeats, **extra))
    return rows


def _max_diff(a, b) -> float:
    return float((_first(a) - _first(b)).abs().max())


def module_rows(repeats: int = 5) -> list[dict]:
    """Forward and training step of each module against PyTorch's (see the module docstring)."""
    torch.manual_seed(0)
    B, L, d, H, d_ff, p = (LAYER[k] for k in ("batch", "length", "d_model", "n_heads", "d_ff", "dropout"))
    config = f"batch {B}, length {L}, d_model {d}, {H} heads, d_ff {d_ff}, dropout {p}"
    x = torch.randn(B, L, d)
    memory = torch.randn(B, L, d)
    rows = []

    # Multi-head attention: the fused path (need_weights=False, what the layers use) ...
    theirs = nn.MultiheadAttention(d, H, dropout=p, batch_first=True)
    ours = MultiHeadAttention.from_torch(theirs)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        diff = _max_diff(ours(x, x, x, need_weights=False), theirs(x, x, x, need_weights=False))
    rows += _forward_and_step(
        "MultiHeadAttention", config, ours, theirs,
        {"query": x, "key": x, "value": x, "need_weights": False},
        {"query": x, "key": x, "value": x, "need_weights": False}, repeats, max_abs_diff=diff)
    # ... and Chapter 2's teaching path, which returns every head's weights.
    ours.eval(), theirs.eval()
    with torch.no_grad():
        diff = _max_diff(ours(x, x, x)[1], theirs(x, x, x, average_attn_weights=False)[1])

    def weights(m, **kw):
        def run():
            with torch.no_grad():
                m(x, x, x, need_weights=True, **kw)
        return run

    rows.append(_pair_row("MultiHeadAttention", "forward, with weights", config, weights(ours),
                          weights(theirs, average_attn_weights=False), repeats, max_abs_diff=diff))

    # Encoder layer, post-LN (the paper's; nn.TransformerEncoderLayer's default).
    theirs = nn.TransformerEncoderLayer(d, H, d_ff, p, batch_first=True)
    ours = EncoderLayer.from_torch(theirs)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        diff = _max_diff(ours(x), theirs(x))
    rows += _forward_and_step("EncoderLayer", config, ours, theirs, {"x": x}, {"src": x}, repeats,
                              max_abs_diff=diff)

    # Decoder layer: causal self-attention, cross-attention to a memory.
    theirs = nn.TransformerDecoderLayer(d, H, d_ff, p, batch_first=True)
    ours = DecoderLayer.from_torch(theirs)
    causal = causal_mask(L)  # (L, L), True = may attend
    float_causal = to_float_mask(causal)  # what nn.TransformerDecoderLayer takes
    ours.eval(), theirs.eval()
    with torch.no_grad():
        diff = _max_diff(ours(x, memory, causal),
                         theirs(x, memory, tgt_mask=float_causal, tgt_is_causal=True))
    rows += _forward_and_step(
        "DecoderLayer", config, ours, theirs, {"x": x, "memory": memory, "self_mask": causal},
        {"tgt": x, "memory": memory, "tgt_mask": float_causal, "tgt_is_causal": True}, repeats,
        max_abs_diff=diff)

    rows += model_rows(repeats)
    return rows


def date_batch(batch_size: int = MODEL_BATCH):
    """A batch of Chapter 8's training data (the first ``batch_size`` training pairs)."""
    from transformer_workbook.data import collate_seq2seq, date_splits, date_tokenizer

    tok = date_tokenizer()
    splits = date_splits(n_train=max(batch_size, 1000), n_validation=10, n_test=10, seed=0)
    return collate_seq2seq(splits.train[:batch_size], tok), len(tok)


def _models(vocab: int, d_model: int, n_heads: int, n_layers: int, d_ff: int, dropout: float,
            norm_first: bool, max_len: int):
    torch.manual_seed(0)
    ours = Transformer(vocab, vocab, d_model, n_heads, n_layers, d_ff, max_len, dropout, norm_first)
    theirs = TorchTransformer(vocab, d_model, n_heads, n_layers, d_ff, dropout, norm_first, max_len)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())
    extra = 0 if norm_first else 4 * d_model  # nn.Transformer always has two final LayerNorms
    assert n_ours + extra == n_theirs, (n_ours, n_theirs)
    return ours, theirs, n_ours


def _model_steps(ours, theirs, batch, label_smoothing: float):
    """Chapter 8's training step for both models: the same batch, masks, loss, clipping and AdamW."""
    keep = batch.src != 0  # (B, S): True at real tokens

    def loss_ours(m):
        logits = m(batch.src, batch.tgt_in, keep)  # (B, T, V)
        return label_smoothed_cross_entropy(logits, batch.tgt_out, label_smoothing)

    def loss_theirs(m):
        logits = m(batch.src, batch.tgt_in, keep)  # (B, T, V)
        return label_smoothed_cross_entropy(logits, batch.tgt_out, label_smoothing)

    def step(m, loss_of):
        opt = torch.optim.AdamW(m.parameters(), 1e-4, betas=(0.9, 0.98), eps=1e-9)

        def run():
            opt.zero_grad(set_to_none=True)
            loss_of(m).backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opt.step()
        return run

    ours.train(), theirs.train()
    return step(ours, loss_ours), step(theirs, loss_theirs)


def model_rows(repeats: int = 5) -> list[dict]:
    """``model.Transformer`` with Chapter 8's recipe against ``nn.Transformer`` of the same shape."""
    batch, vocab = date_batch()
    m = DATE_RECIPE.model
    config = (f"Chapter 8's model (d_model {m['d_model']}, {m['n_heads']} heads, {m['n_layers']} + "
              f"{m['n_layers']} layers, d_ff {m['d_ff']}, pre-LN, dropout {m['dropout']}); a batch of "
              f"{len(batch)} dates, source {batch.src.size(1)}, target {batch.tgt_in.size(1)} characters")
    ours, theirs, n_params = _models(vocab, **m)
    keep = batch.src != 0
    ours.eval(), theirs.eval()

    def fwd(model):
        def run():
            with torch.no_grad():
                model(batch.src, batch.tgt_in, keep)
        return run

    rows = [_pair_row("Transformer", "forward", config, fwd(ours), fwd(theirs), repeats, parameters=n_params)]
    step_ours, step_theirs = _model_steps(ours, theirs, batch, DATE_RECIPE.train["label_smoothing"])
    rows.append(_pair_row("Transformer", "training step", config, step_ours, step_theirs, repeats,
                          parameters=n_params))
    return rows


def size_rows(repeats: int = 5, sizes=SIZES) -> list[dict]:
    """The whole model's training step at several widths, ours against nn.Transformer."""
    batch, vocab = date_batch()
    rows = []
    for d in sizes:
        n_heads = 4
        ours, theirs, n_params = _models(vocab, d, n_heads, 2, 4 * d, 0.0, True, 64)
        step_ours, step_theirs = _model_steps(ours, theirs, batch, 0.1)
        config = f"d_model {d}, {n_heads} heads, 2 + 2 layers, d_ff {4 * d}, pre-LN"
        rows.append(_pair_row(f"Transformer d_model {d}", "training step", config, step_ours, step_theirs,
                              repeats, d_model=d, parameters=n_params))
    return rows


def attention_scaling(repeats: int = 5) -> dict:
    """Naive (weights built) against fused attention, time and peak memory, across lengths."""
    B, H, dh = ATTENTION["batch"], ATTENTION["n_heads"], ATTENTION["d_head"]
    lengths = ATTENTION["lengths"]

    def inputs(L):
        g = torch.Generator().manual_seed(L)
        return [torch.randn(B, H, L, dh, generator=g) for _ in range(3)]

    def make_naive(L):
        q, k, v = inputs(L)

        def run():
            with torch.no_grad():
                scaled_dot_product_attention(q, k, v)
        return run

    def make_fused(L):
        q, k, v = inputs(L)

        def run():
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v)
        return run

    points = []
    for i, L in enumerate(lengths):
        # Back to back at each length, in alternating order.
        order = [("naive", make_naive), ("fused", make_fused)]
        if i % 2:
            order.reverse()
        got = {name: complexity.sweep(make, [L], repeats=repeats)[0] for name, make in order}
        flops = 4 * B * H * L * L * dh  # Q K^T and weights @ V
        point = {"length": L, "flops": flops}
        for name, m in got.items():
            point[name] = {"time": summary(m.times), "peak_bytes": m.peak_bytes}
        point["time_ratio"] = point["naive"]["time"]["median"] / point["fused"]["time"]["median"]
        fused_peak = max(point["fused"]["peak_bytes"] or 0, 1)
        point["memory_ratio"] = (point["naive"]["peak_bytes"] or 0) / fused_peak
        points.append(point)
        naive, fused = point["naive"], point["fused"]
        print(f"   L={L:5}: naive {naive['time']['median'] * 1e3:8.2f} ms "
              f"{naive['peak_bytes'] / 2**20:7.1f} MiB   fused {fused['time']['median'] * 1e3:8.2f} ms "
              f"{fused['peak_bytes'] / 2**20:7.1f} MiB"
              f"   time ratio {point['time_ratio']:.2f}", flush=True)
    fit = [p for p in points if p["length"] >= ATTENTION["fit_from"]]
    xs = [p["length"] for p in fit]
    slopes = {}
    for name in ("naive", "fused"):
        slopes[f"{name}_time"] = complexity.loglog_slope(xs, [p[name]["time"]["median"] for p in fit])
        peaks = [p[name]["peak_bytes"] for p in fit]
        slopes[f"{name}_memory"] = complexity.loglog_slope(xs, peaks) if min(peaks) > 0 else math.nan
    print("   log-log slopes: " + ", ".join(f"{k} {v:.2f}" for k, v in slopes.items()), flush=True)
    return {"config": f"batch {B}, {H} heads, d_head {dh}; slopes fitted from L = {ATTENTION['fit_from']}",
            "fit_from": ATTENTION["fit_from"], "points": points, "slopes": slopes}
