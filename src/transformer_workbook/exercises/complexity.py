"""Chapter 7 exercises: the parameter count, attention's FLOPs, and where attention overtakes.

Each known mistake is a real implementation of that mistake: the learner's
code is diagnosed with it when the two behave the same on every case. The
answers are whole numbers, compared exactly; the cases vary every size
(vocabulary, width, heads, feed-forward width, both depths, tying), so no
hard-coded constant and no mistake agrees with the reference everywhere.
"""

from __future__ import annotations

import torch

from .. import complexity as ref
from .api import register
from .core import Case
from .judging import Exercise, Mistake

CHAPTER = "07_complexity"


# ---------------------------------------------------------------------------
# complexity.parameter_count
# ---------------------------------------------------------------------------


def parameter_count_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    V = int(torch.randint(40, 400, (1,), generator=g))
    d_ff = int(torch.randint(20, 90, (1,), generator=g))
    return [
        Case("the paper's base model: V=37000, d_model=512, 8 heads, d_ff=2048, 6 + 6 layers",
             (37000, 512, 8, 2048, 6, 6)),
        Case(f"V={V}, d_model=16, 4 heads, d_ff=64, 2 + 3 layers, untied", (V, 16, 4, 64, 2, 3),
             {"tie_embeddings": False}),
        Case("V=1000, d_model=64, 8 heads, d_ff=256, 4 + 2 layers", (1000, 64, 8, 256, 4, 2)),
        Case(f"V=50, d_model=8, 2 heads, d_ff={d_ff}, 1 + 1 layers, untied", (50, 8, 2, d_ff, 1, 1),
             {"tie_embeddings": False}),
        Case("V=7, d_model=12, 3 heads, d_ff=5, 3 + 1 layers", (7, 12, 3, 5, 3, 1)),
        Case("the paper's big model: V=37000, d_model=1024, 16 heads, d_ff=4096, 6 + 6 layers",
             (37000, 1024, 16, 4096, 6, 6), {"tie_embeddings": True}),
        Case("V=30000, d_model=96, 12 heads, d_ff=384, 5 encoder layers and no decoder layer",
             (30000, 96, 12, 384, 5, 0)),
        Case("V=300, d_model=24, 1 head, d_ff=48, no encoder layer and 2 decoder layers",
             (300, 24, 1, 48, 0, 2)),
    ]


def _count_no_biases(vocab_size, d_model, n_heads, d_ff, n_encoder_layers, n_decoder_layers,
                     tie_embeddings=True):
    d = d_model
    embeddings = (1 if tie_embeddings else 3) * vocab_size * d
    encoder_layer = 4 * d * d + 2 * d * d_ff + 2 * 2 * d  # no projection or FFN biases
    decoder_layer = 8 * d * d + 2 * d * d_ff + 3 * 2 * d
    return embeddings + n_encoder_layers * encoder_layer + n_decoder_layers * decoder_layer


def _count_ignores_tying(vocab_size, d_model, n_heads, d_ff, n_encoder_layers, n_decoder_layers,
                         tie_embeddings=True):
    d = d_model
    embeddings = vocab_size * d  # one matrix, tied or not
    encoder_layer = (4 * d * d + 4 * d) + (2 * d * d_ff + d_ff + d) + 2 * 2 * d
    decoder_layer = 2 * (4 * d * d + 4 * d) + (2 * d * d_ff + d_ff + d) + 3 * 2 * d
    return embeddings + n_encoder_layers * encoder_layer + n_decoder_layers * decoder_layer


def _count_untied_two(vocab_size, d_model, n_heads, d_ff, n_encoder_layers, n_decoder_layers,
                      tie_embeddings=True):
    d = d_model
    embeddings = (1 if tie_embeddings else 2) * vocab_size * d  # forgets one of the three
    encoder_layer = (4 * d * d + 4 * d) + (2 * d * d_ff + d_ff + d) + 2 * 2 * d
    decoder_layer = 2 * (4 * d * d + 4 * d) + (2 * d * d_ff + d_ff + d) + 3 * 2 * d
    return embeddings + n_encoder_layers * encoder_layer + n_decoder_layers * decoder_layer


def _count_no_layernorm(vocab_size, d_model, n_heads, d_ff, n_encoder_layers, n_decoder_layers,
                        tie_embeddings=True):
    d = d_model
    embeddings = (1 if tie_embeddings else 3) * vocab_size * d
    encoder_layer = (4 * d * d + 4 * d) + (2 * d * d_ff + d_ff + d)  # no LayerNorm
    decoder_layer = 2 * (4 * d * d + 4 * d) + (2 * d * d_ff + d_ff + d)
    return embeddings + n_encoder_layers * encoder_layer + n_decoder_layers * decoder_layer


def _count_layernorm_gain_only(vocab_size, d_model, n_heads, d_ff, n_encoder_layers, n_decoder_layers,
                               tie_embeddings=True):
    d = d_model
    embeddings = (1 if tie_embeddings else 3) * vocab_size * d
    encoder_layer = (4 * d * d + 4 * d) + (2 * d * d_ff + d_ff + d) + 2 * d  # d per LayerNorm
    decoder_layer = 2 * (4 * d * d + 4 * d) + (2 * d * d_ff + d_ff + d) + 3 * d
    return embeddings + n_encoder_layers * encoder_layer + n_decoder_layers * decoder_layer


def _count_decoder_one_attention(vocab_size, d_model, n_heads, d_ff, n_encoder_layers, n_decoder_layers,
                                 tie_embeddings=True):
    d = d_model
    embeddings = (1 if tie_embeddings else 3) * vocab_size * d
    layer = (4 * d * d + 4 * d) + (2 * d * d_ff + d_ff + d) + 2 * 2 * d  # decoder = encoder layer
    return embeddings + (n_encoder_layers + n_decoder_layers) * layer


def _count_same_depth(vocab_size, d_model, n_heads, d_ff, n_encoder_layers, n_decoder_layers,
                      tie_embeddings=True):
    d = d_model
    embeddings = (1 if tie_embeddings else 3) * vocab_size * d
    encoder_layer = (4 * d * d + 4 * d) + (2 * d * d_ff + d_ff + d) + 2 * 2 * d
    decoder_layer = 2 * (4 * d * d + 4 * d) + (2 * d * d_ff + d_ff + d) + 3 * 2 * d
    return embeddings + n_encoder_layers * (encoder_layer + decoder_layer)  # both stacks as deep


def _count_output_bias(vocab_size, d_model, n_heads, d_ff, n_encoder_layers, n_decoder_layers,
                       tie_embeddings=True):
    total = ref.transformer_parameter_count(vocab_size, d_model, n_heads, d_ff, n_encoder_layers,
                                            n_decoder_layers, tie_embeddings)
    return total + vocab_size  # a bias on the output projection the model does not have


register(
    Exercise(
        id="complexity.parameter_count",
        title="Count the Transformer's parameters",
        target="transformer_parameter_count",
        chapter=CHAPTER,
        reference=ref.transformer_parameter_count,
        make_cases=parameter_count_cases,
        points=3,
        forbidden=(
            "transformer_workbook.complexity.attention_parameter_count",
            "transformer_workbook.complexity.feed_forward_parameter_count",
            "transformer_workbook.complexity.encoder_layer_parameter_count",
            "transformer_workbook.complexity.decoder_layer_parameter_count",
            "transformer_workbook.complexity.decoder_only_parameter_count",
            "transformer_workbook.model.Transformer",
            "torch.nn.Transformer",
        ),
        forbidden_reason="Write the formula from the layers' shapes: building a model and "
                         "counting its parameters is what the formula is checked against (and the "
                         "paper's big model would take seconds and gigabytes).",
        notes={"exception": "The cases differ in the vocabulary, d_model, the heads, d_ff, both "
                            "depths (one of them 0) and `tie_embeddings`."},
        mistakes=[
            Mistake(
                "no-biases",
                "Your count leaves out the biases: every nn.Linear of the model has one (4 d_model "
                "for an attention's four projections; d_ff + d_model for the feed-forward "
                "network), except the output projection.",
                _count_no_biases,
            ),
            Mistake(
                "untied-counted-once",
                "Your count is right with tie_embeddings=True but ignores it: untied, the source "
                "embedding, the target embedding and the output projection are three separate "
                "V x d_model matrices.",
                _count_ignores_tying,
            ),
            Mistake(
                "untied-two-matrices",
                "Untied, you count two V x d_model matrices; there are three: the source "
                "embedding, the target embedding and the output projection (tied, one matrix "
                "serves all three).",
                _count_untied_two,
            ),
            Mistake(
                "no-layernorm",
                "Your count leaves out the LayerNorms: each has a gain and a bias of d_model "
                "entries, two per encoder layer and three per decoder layer.",
                _count_no_layernorm,
            ),
            Mistake(
                "layernorm-gain-only",
                "You count d_model parameters per LayerNorm: each has a gain *and* a bias, "
                "2 d_model (two per encoder layer, three per decoder layer).",
                _count_layernorm_gain_only,
            ),
            Mistake(
                "decoder-one-attention",
                "Your decoder layers are counted like encoder layers: a decoder layer has a second "
                "attention, the cross-attention to the encoder (4 d_model^2 + 4 d_model more), and a "
                "third LayerNorm.",
                _count_decoder_one_attention,
            ),
            Mistake(
                "same-depth",
                "You use n_encoder_layers for both stacks: the decoder has n_decoder_layers "
                "layers, which may differ (or be 0).",
                _count_same_depth,
            ),
            Mistake(
                "output-bias",
                "You count a bias for the output projection (V parameters): the course's model, "
                "like the paper's, has none (`nn.Linear(d_model, V, bias=False)`; tied to the "
                "embedding, it could not have one).",
                _count_output_bias,
            ),
        ],
        hints=[
            "Add up layer by layer: the embedding matrix (or matrices), each encoder layer, each "
            "decoder layer. n_heads does not matter: the heads only cut d_model into pieces.",
            "nn.Linear(a, b) has a*b + b parameters; nn.LayerNorm(d) has 2d (gain and bias).",
            "An encoder layer: attention (four d x d projections with biases), a feed-forward "
            "network (d -> d_ff -> d), two LayerNorms. A decoder layer: two attentions, the "
            "feed-forward network, three LayerNorms.",
            "Embeddings: one V x d matrix when tied; three (source, target, output) when not. "
            "No output bias, no positional parameters (the sinusoidal table is fixed).",
        ],
    )
)


# ---------------------------------------------------------------------------
# complexity.attention_flops
# ---------------------------------------------------------------------------


def attention_flops_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    L = int(torch.randint(20, 300, (1,), generator=g))
    return [
        Case("self-attention, L=10, d_model=8", (10, 8)),
        Case(f"self-attention, L={L}, d_model=64", (L, 64)),
        Case("one new token against 37 cached keys: L=1, d_model=512, kv_len=37", (1, 512),
             {"kv_len": 37}),
        Case("cross-attention, 7 queries, 20 keys, d_model=12", (7, 12), {"kv_len": 20}),
        Case("self-attention without the projections, L=5, d_model=16", (5, 16), {"projections": False}),
        Case("cross-attention without the projections, 9 queries, 3 keys, d_model=4", (9, 4),
             {"kv_len": 3, "projections": False}),
        Case("self-attention, L=2048, d_model=512", (2048, 512)),
    ]


def _flops_macs(seq_len, d_model, kv_len=None, projections=True):
    lq, lk, d = seq_len, seq_len if kv_len is None else kv_len, d_model
    macs = 2 * lq * lk * d + (d * d * (lq + lk + lk + lq) if projections else 0)  # multiply-adds
    return macs


def _flops_no_values_product(seq_len, d_model, kv_len=None, projections=True):
    lq, lk, d = seq_len, seq_len if kv_len is None else kv_len, d_model
    flops = 2 * lq * lk * d  # Q K^T only
    if projections:
        flops += 2 * d * d * (lq + lk + lk + lq)
    return flops


def _flops_three_projections(seq_len, d_model, kv_len=None, projections=True):
    lq, lk, d = seq_len, seq_len if kv_len is None else kv_len, d_model
    flops = 4 * lq * lk * d
    if projections:
        flops += 2 * d * d * (lq + lk + lk)  # W_Q, W_K, W_V; no W_O
    return flops


def _flops_ignores_kv_len(seq_len, d_model, kv_len=None, projections=True):
    L, d = seq_len, d_model
    return 4 * L * L * d + (8 * L * d * d if projections else 0)


def _flops_projections_on_queries(seq_len, d_model, kv_len=None, projections=True):
    lq, lk, d = seq_len, seq_len if kv_len is None else kv_len, d_model
    return 4 * lq * lk * d + (8 * lq * d * d if projections else 0)  # K and V projected from the queries


def _flops_always_projections(seq_len, d_model, kv_len=None, projections=True):
    lq, lk, d = seq_len, seq_len if kv_len is None else kv_len, d_model
    return 4 * lq * lk * d + 2 * d * d * (lq + lk + lk + lq)


register(
    Exercise(
        id="complexity.attention_flops",
        title="Attention's FLOPs",
        target="attention_flops",
        chapter=CHAPTER,
        reference=ref.attention_flops,
        make_cases=attention_flops_cases,
        points=2,
        forbidden=(
            "torch.utils.flop_counter.FlopCounterMode",
            "transformer_workbook.complexity.encoder_layer_flops",
            "transformer_workbook.complexity.decoder_layer_flops",
            "transformer_workbook.complexity.transformer_flops",
            "transformer_workbook.complexity.decoder_only_flops",
        ),
        forbidden_reason="Count the matrix products yourself: PyTorch's FLOP counter is what the "
                         "formula is checked against.",
        notes={"exception": "The cases differ in seq_len, d_model, kv_len (left out, smaller or "
                            "larger than seq_len) and `projections`."},
        mistakes=[
            Mistake(
                "multiply-adds",
                "Your count is half the FLOPs: you count multiply-adds. A product of an (m, k) "
                "and a (k, n) matrix is m k n multiply-adds, 2 m k n FLOPs (one multiplication "
                "and one addition each), the convention of the 6 N D rule.",
                _flops_macs,
            ),
            Mistake(
                "no-values-product",
                "You count the scores Q K^T but not the weighted sum of the values, "
                "weights @ V: another 2 Lq Lk d_model FLOPs.",
                _flops_no_values_product,
            ),
            Mistake(
                "three-projections",
                "You count three projections (Q, K, V) and forget the output projection W_O: "
                "another 2 Lq d_model^2.",
                _flops_three_projections,
            ),
            Mistake(
                "ignores-kv-len",
                "Your count ignores kv_len: in cross-attention (or with a KV cache) the Lq queries "
                "meet Lk = kv_len keys, so the scores are Lq x Lk and K and V are projected on Lk "
                "positions.",
                _flops_ignores_kv_len,
            ),
            Mistake(
                "projections-on-queries",
                "You project all four on the Lq queries: W_K and W_V project the Lk keys and values "
                "(2 d_model^2 Lk FLOPs each); only W_Q and W_O work on the Lq queries.",
                _flops_projections_on_queries,
            ),
            Mistake(
                "ignores-projections-flag",
                "Your count always includes the projections: with projections=False, count only "
                "the scores and the weighted sum, 4 Lq Lk d_model.",
                _flops_always_projections,
            ),
        ],
        hints=[
            "Count the matrix products: (m, k) @ (k, n) is 2 m k n FLOPs. The heads do not "
            "matter: together they cover d_model.",
            "Scores Q K^T: (Lq, d) @ (d, Lk). Weighted sum: (Lq, Lk) @ (Lk, d). Projections: "
            "W_Q on Lq positions, W_K and W_V on Lk, W_O on Lq, each (L, d) @ (d, d).",
            "kv_len=None means self-attention: Lk = seq_len.",
        ],
    )
)


# ---------------------------------------------------------------------------
# complexity.crossover_length: a prediction from the formulas
# ---------------------------------------------------------------------------


def crossover_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    d = int(torch.randint(40, 200, (1,), generator=g))
    return [
        Case("the paper's base model: d_model=512, d_ff=2048", (512, 2048)),
        Case("d_model=64, d_ff=256", (64, 256)),
        Case("d_model=128, d_ff=1000", (128, 1000)),
        Case(f"d_model={d}, d_ff=3 * d_model", (d, 3 * d)),
        Case("d_model=256, d_ff=256 (a narrow feed-forward network)", (256, 256)),
        Case("d_model=48, d_ff=4096 (a very wide one)", (48, 4096)),
        Case("d_model=100, d_ff=200", (100, 200)),
    ]


def _crossover_ties(d_model, d_ff):
    return max(1, d_ff - 2 * d_model)  # where the costs are equal, not where attention is more


def _crossover_no_projections(d_model, d_ff):
    return d_ff + 1  # 4 L^2 d > 4 L d d_ff: only the L^2 term against the FFN


def _crossover_ignores_d_ff(d_model, d_ff):
    return 2 * d_model + 1  # d_ff = 4 d_model assumed, or "L > 2 d" from the projections


def _crossover_no_clamp(d_model, d_ff):
    return d_ff - 2 * d_model + 1  # 0 or negative when d_ff <= 2 d_model


def _crossover_whole_layer(d_model, d_ff):
    return 2 * d_model + d_ff + 1  # the L^2 term against projections and FFN together


register(
    Exercise(
        id="complexity.crossover_length",
        title="Predict where attention overtakes the feed-forward network",
        target="crossover_length",
        chapter=CHAPTER,
        reference=ref.crossover_length,
        make_cases=crossover_cases,
        points=3,
        notes={"exception": "The cases differ in d_model and d_ff (d_ff from d_model to 85 "
                            "d_model)."},
        mistakes=[
            Mistake(
                "ties",
                "Off by one: at L = d_ff - 2 d_model the two cost exactly the same. The question "
                "is the first length where attention costs *more*: one more.",
                _crossover_ties,
            ),
            Mistake(
                "no-projections",
                "You compare only attention's L^2 terms (4 L^2 d_model) with the feed-forward "
                "network. Attention's cost includes its four projections, 8 L d_model^2: count "
                "them, as attention_flops does.",
                _crossover_no_projections,
            ),
            Mistake(
                "ignores-d_ff",
                "Your answer does not depend on d_ff: 2 d_model + 1 is right only when d_ff = "
                "4 d_model (the paper's ratio). Compare attention with the feed-forward network's "
                "4 L d_model d_ff.",
                _crossover_ignores_d_ff,
            ),
            Mistake(
                "no-clamp",
                "When d_ff <= 2 d_model attention costs more from the very first token, but your "
                "answer is 0 or negative: a sequence has at least one position, so the answer is "
                "then 1.",
                _crossover_no_clamp,
            ),
            Mistake(
                "whole-layer",
                "You compare attention's L^2 terms with the projections *and* the feed-forward "
                "network together: that is where the L^2 term overtakes the whole rest of the "
                "layer. The question compares attention (projections included) with the "
                "feed-forward network alone.",
                _crossover_whole_layer,
            ),
        ],
        hints=[
            "Write both costs: attention_flops(L, d) = 8 L d^2 + 4 L^2 d, "
            "feed_forward_flops(L, d, d_ff) = 4 L d d_ff.",
            "Divide the inequality attention > feed-forward by 4 L d: it becomes linear in L.",
            "You want the smallest whole L >= 1 with L > d_ff - 2 d_model.",
            "You may also search: start at L = 1 and increase it until attention_flops(L, ...) > "
            "feed_forward_flops(L, ...) (both are in transformer_workbook.complexity).",
        ],
    )
)
