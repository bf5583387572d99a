"""Time per training step: the course's model.Transformer against nn.Transformer.

A training step is forward + cross-entropy + backward + AdamW step, on a batch
shaped like Chapter 8's date-normalization task (batch 128, source ~30
characters with padding, target ~12). Both models have the same sizes, the
same embeddings (scaled, sinusoidal positions), the same tied output
projection and the same masks; only the encoder/decoder stacks differ. Steps
alternate between the two models, so a change in the machine's load hits
both; the report gives medians and the ratio ours / torch.

    python benchmarks/bench_model.py [--steps 30] [--d-model 64 128] [--dropout 0.1] [--threads 1]

On a machine whose cores are shared, compare with ``--threads 1``: two
OpenMP threads that must wait for each other on busy cores made single steps
4 to 15 times slower, at random, for both models (load average 4-19).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from transformer_workbook.masks import causal_mask, padding_mask, to_float_mask
from transformer_workbook.model import Transformer
from transformer_workbook.positional import sinusoidal_encoding


class TorchTransformer(nn.Module):
    """nn.Transformer (batch_first) with the course model's embeddings and output projection."""

    def __init__(self, vocab, d_model, n_heads, n_layers, d_ff, dropout, norm_first, max_len=64):
        super().__init__()
        self.d_model = d_model
        self.embed = nn.Embedding(vocab, d_model)
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.tr = nn.Transformer(
            d_model, n_heads, n_layers, n_layers, d_ff, dropout, batch_first=True, norm_first=norm_first
        )
        self.out = nn.Linear(d_model, vocab, bias=False)
        self.out.weight = self.embed.weight

    def _emb(self, ids):
        return self.drop(self.embed(ids) * math.sqrt(self.d_model) + self.pe[: ids.size(1)])

    def forward(self, src, tgt, src_keep):
        Lt = tgt.size(1)
        tgt_mask = to_float_mask(causal_mask(Lt))  # == generate_square_subsequent_mask(Lt)
        h = self.tr(
            self._emb(src), self._emb(tgt), tgt_mask=tgt_mask, tgt_is_causal=True,
            src_key_padding_mask=~src_keep, memory_key_padding_mask=~src_keep,
        )
        return self.out(h)


def make_batch(batch, vocab, src_len, tgt_len, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(src_len // 2, src_len + 1, (batch,), generator=g)
    lengths[0] = src_len
    keep = padding_mask(lengths, src_len)  # (B, Ls)
    src = torch.randint(4, vocab, (batch, src_len), generator=g).masked_fill(~keep, 0)
    tgt = torch.randint(4, vocab, (batch, tgt_len), generator=g)
    return src, tgt, keep


def step_fn(model, opt, src, tgt, keep, ours):
    def step():
        opt.zero_grad(set_to_none=True)
        tgt_in = tgt[:, :-1]
        logits = model(src, tgt_in, keep) if not ours else model(src, tgt_in, src_padding_mask=keep)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--d-model", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--dropout", type=float, nargs="+", default=[0.1])
    ap.add_argument("--norm-first", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--src-len", type=int, default=30)
    ap.add_argument("--tgt-len", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vocab, n_layers = 64, 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.2f} at start")
    print(f"{'d_model':>7} {'drop':>5} {'norm_first':>10} {'ours ms':>8} {'torch ms':>8} {'ratio':>6}")
    for d_model in args.d_model:
        for dropout in args.dropout:
            for norm_first in args.norm_first:
                n_heads, d_ff = 4, 4 * d_model
                torch.manual_seed(0)
                config = (d_model, n_heads, n_layers, d_ff)
                ours = Transformer(vocab, vocab, *config, 64, dropout, bool(norm_first))
                theirs = TorchTransformer(vocab, *config, dropout, bool(norm_first))
                n_ours = sum(p.numel() for p in ours.parameters())
                n_theirs = sum(p.numel() for p in theirs.parameters())
                extra = 0 if norm_first else 4 * d_model  # nn.Transformer always has two final LayerNorms
                assert n_ours + extra == n_theirs, (n_ours, n_theirs)
                src, tgt, keep = make_batch(args.batch, vocab, args.src_len, args.tgt_len + 1)
                steps = {
                    name: step_fn(m, torch.optim.AdamW(m.parameters(), 1e-3), src, tgt, keep, name == "ours")
                    for name, m in (("ours", ours), ("torch", theirs))
                }
                times = {k: [] for k in steps}
                for i in range(args.steps + 3):
                    for name in (("ours", "torch") if i % 2 else ("torch", "ours")):
                        t0 = time.perf_counter()
                        steps[name]()
                        if i >= 3:  # warm-up
                            times[name].append(time.perf_counter() - t0)
                mo, mt = (statistics.median(times[k]) * 1e3 for k in ("ours", "torch"))
                print(f"{d_model:>7} {dropout:>5} {norm_first:>10} {mo:>8.1f} {mt:>8.1f} {mo / mt:>6.3f}")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
