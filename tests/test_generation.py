"""Decoding (Chapters 8 and 9): the filters, sampling, beam search, with and without KV caches.

The models are small and untrained (seeded): decoding must be right for any
model, and a random one makes varied, non-trivial choices.
"""

import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from transformer_workbook import generation as G
from transformer_workbook.model import DecoderOnlyLM, Transformer, generate, greedy_decode


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and spinning threads crawl on a loaded machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


V = 12  # ids: 0 pad, 1 bos, 2 eos, then 9 "characters"


@pytest.fixture(scope="module")
def seq2seq():
    torch.manual_seed(0)
    model = Transformer(V, V, 32, 4, 2, 64).eval()
    with torch.no_grad():  # sharpen the untrained model a little, so that outputs vary by source
        model.out_proj.weight.mul_(3)
    return model


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(1)
    model = DecoderOnlyLM(V, 32, 4, 2, 64, max_len=64).eval()
    with torch.no_grad():
        model.out_proj.weight.mul_(3)
    return model


def sources(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, V, (n, 9), generator=g)
    for i in range(n):
        src[i, 9 - i % 4 :] = 0  # right padding of different lengths
    return src


def prompt(n=5):
    return torch.ones(n, 1, dtype=torch.long)  # <bos>


def pad_after_eos(tokens, eos=2, pad=0):
    """model.greedy_decode repeats <eos> after the end; ours pads: compare the same way."""
    after = (tokens == eos).long().cumsum(1) - (tokens == eos).long()
    return tokens.masked_fill(after > 0, pad)


# ---- filters ----------------------------------------------------------------


def test_top_k_keeps_exactly_the_k_largest():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 20, generator=g)
    for k in (1, 2, 5, 19):
        out = G.top_k_filter(logits, k)
        kept = torch.isfinite(out)
        assert (kept.sum(-1) == k).all()
        torch.testing.assert_close(out[kept], logits[kept])
        smallest_kept = out.masked_fill(~kept, math.inf).amin(-1)
        largest_dropped = logits.masked_fill(kept, -math.inf).amax(-1)
        assert (smallest_kept > largest_dropped).all()
    assert torch.equal(G.top_k_filter(logits, 20), logits) and torch.equal(G.top_k_filter(logits, 99), logits)
    with pytest.raises(ValueError):
        G.top_k_filter(logits, 0)


def test_top_p_on_a_distribution_with_exact_sums():
    probs = torch.tensor([0.125, 0.5, 0.125, 0.25])  # sorted: 0.5, 0.25, 0.125, 0.125
    logits = probs.log()
    kept = lambda p: torch.isfinite(G.top_p_filter(logits, p)).nonzero().flatten().tolist()  # noqa: E731
    assert kept(0.3) == [1]
    assert kept(0.5) == [1]  # 0.5 reaches p: the smallest set is the top token alone
    assert kept(0.51) == [1, 3]  # the token that crosses p is kept
    assert kept(0.75) == [1, 3]
    assert kept(0.8) == [0, 1, 3]  # a tie (0.125, 0.125): the lower id first
    assert kept(1.0) == [0, 1, 2, 3]
    for p in (0.0, -0.1, 1.1):
        with pytest.raises(ValueError):
            G.top_p_filter(logits, p)


def test_top_p_keeps_the_smallest_set_whose_probability_reaches_p():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 30, generator=g) * 2
    probs = F.softmax(logits, -1)
    for p in (0.05, 0.3, 0.6, 0.9, 0.99):
        kept = torch.isfinite(G.top_p_filter(logits, p))
        for row in range(50):
            k = probs[row][kept[row]]
            assert k.sum() >= p - 1e-6  # the set reaches p
            assert k.sum() - k.min() < p + 1e-6  # without its least likely token it does not: smallest
            dropped = probs[row][~kept[row]]
            assert dropped.numel() == 0 or k.min() >= dropped.max()  # the most likely tokens
        torch.testing.assert_close(G.top_p_filter(logits, p)[kept], logits[kept])


def test_temperature():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    torch.testing.assert_close(G.apply_temperature(logits, 1.0), logits)
    sharp = F.softmax(G.apply_temperature(logits, 0.5), -1)
    flat = F.softmax(G.apply_temperature(logits, 4.0), -1)
    assert sharp[0, 0] > F.softmax(logits, -1)[0, 0] > flat[0, 0] > 1 / 3
    for bad in (0, 0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            G.apply_temperature(logits, bad)
    with pytest.raises(ValueError, match="greedy"):
        G.sample_with_temperature(logits, 0)


def test_transform_logits_order():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]])
    out = G.transform_logits(logits, temperature=2.0, top_k=3, top_p=0.5)
    expected = G.top_p_filter(G.top_k_filter(logits / 2.0, 3), 0.5)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(G.transform_logits(logits), logits)


def test_sample_with_temperature_follows_the_distribution():
    logits = torch.tensor([1.0, 0.0, -1.0, 0.5])
    g = torch.Generator().manual_seed(0)
    for t in (0.5, 1.0, 3.0):
        draws = G.sample_with_temperature(logits.expand(20_000, 4), t, generator=g)
        assert draws.shape == (20_000,)
        freq = torch.bincount(draws, minlength=4).float() / 20_000
        torch.testing.assert_close(freq, F.softmax(logits / t, -1), atol=0.015, rtol=0)


# ---- greedy, top-k 1, temperature 0, beam 1 ---------------------------------------------


def test_beam_size_1_is_greedy_encoder_decoder(seq2seq):
    src = sources()
    greedy = pad_after_eos(greedy_decode(seq2seq, src, 10, 1, 2, src != 0))
    beam = G.beam_search(seq2seq, src, 1, 10)
    assert torch.equal(beam, greedy)
    assert len({tuple(r.tolist()) for r in greedy}) > 1  # the test is not trivial


def test_beam_size_1_is_greedy_decoder_only(lm):
    greedy = generate(lm, prompt(), 15)[:, 1:]
    assert torch.equal(G.beam_search(lm, prompt(), 1, 15, eos_id=None), greedy)
    # With <eos>: the same up to and including it; the search stops once every row has ended.
    beam, expected = G.beam_search(lm, prompt(), 1, 15), pad_after_eos(greedy)
    assert torch.equal(beam, expected[:, : beam.size(1)]) and (expected[:, beam.size(1) :] == 0).all()


def test_top_k_1_and_temperature_0_are_greedy(seq2seq, lm):
    src = sources()
    greedy = pad_after_eos(greedy_decode(seq2seq, src, 10, 1, 2, src != 0))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(G.sample(seq2seq, src, 10, top_k=1, generator=g), greedy)
    assert torch.equal(G.sample(seq2seq, src, 10, temperature=5.0, top_k=1, generator=g), greedy)
    with pytest.warns(UserWarning, match="temperature=0: decoding greedily"):
        assert torch.equal(G.sample(seq2seq, src, 10, temperature=0), greedy)
    lm_greedy = generate(lm, prompt(), 12)[:, 1:]
    assert torch.equal(G.sample(lm, prompt(), 12, top_k=1, eos_id=None, generator=g), lm_greedy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(G.sample(lm, prompt(), 12, temperature=0, eos_id=None), lm_greedy)
    with pytest.raises(ValueError):
        G.sample(lm, prompt(), 12, temperature=-1)


def test_tiny_top_p_is_greedy(seq2seq):
    src = sources()
    greedy = pad_after_eos(greedy_decode(seq2seq, src, 10, 1, 2, src != 0))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(G.sample(seq2seq, src, 10, top_p=1e-6, generator=g), greedy)


# ---- sampling ----------------------------------------------------------------


def test_sampling_is_seeded_and_equal_with_and_without_the_cache(seq2seq, lm):
    src = sources()
    for model, inputs, kw in ((seq2seq, src, {}), (lm, prompt(8), {"eos_id": None})):
        runs = [
            G.sample(model, inputs, 12, temperature=1.3, top_p=0.95, use_cache=cache,
                     generator=torch.Generator().manual_seed(5), **kw)  # fmt: skip
            for cache in (True, False, True)
        ]
        assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
        other = G.sample(model, inputs, 12, temperature=1.3, generator=torch.Generator().manual_seed(6), **kw)
        assert not torch.equal(other, runs[0])


def test_sampled_tokens_respect_the_filters(lm):
    """Every sampled token is one the filters kept, at its step (checked by teacher forcing)."""
    out = G.sample(lm, prompt(20), 10, temperature=0.7, top_k=3, top_p=0.8, eos_id=None,
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    seqs = torch.cat([prompt(20), out], 1)  # (20, 11)
    logits = lm(seqs[:, :-1])  # (20, 10, V)
    allowed = torch.isfinite(G.transform_logits(logits, 0.7, 3, 0.8))  # (20, 10, V)
    assert allowed.gather(-1, out[..., None]).all()


def test_rows_stop_at_eos(seq2seq):
    out = G.sample(seq2seq, sources(), 20, generator=torch.Generator().manual_seed(0))
    for row in out.tolist():
        if 2 in row:
            assert all(t == 0 for t in row[row.index(2) + 1 :])


# ---- beam search ----------------------------------------------------------------


def sequence_log_prob(model, src, out, eos=2):
    """log p(out | src), teacher-forced, summed up to and including <eos>."""
    tgt_in = torch.cat([torch.ones(1, 1, dtype=torch.long), out[None, :-1]], 1)
    logp = F.log_softmax(model(src[None], tgt_in, src[None] != 0).float(), -1)[0]  # (T, V)
    total = 0.0
    for t, tok in enumerate(out.tolist()):
        total += logp[t, tok].item()
        if tok == eos:
            break
    return total


def test_beam_scores_are_the_sequences_log_probabilities(seq2seq):
    src = sources()
    beams, scores = G.beam_search(seq2seq, src, 4, 8, return_beams=True)
    assert beams.shape[:2] == (6, 4) and scores.shape == (6, 4)
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first
    for b in range(6):
        for k in range(4):
            expected = sequence_log_prob(seq2seq, src[b], beams[b, k])
            assert scores[b, k].item() == pytest.approx(expected, abs=1e-4)


def test_a_beam_as_wide_as_every_sequence_is_exact_search():
    """With K >= V**L, beam search keeps every hypothesis: it must find the most likely output."""
    torch.manual_seed(3)
    v = 5  # pad, bos, eos, two tokens
    model = Transformer(v, v, 16, 2, 1, 32).eval()
    with torch.no_grad():
        model.out_proj.weight.mul_(4)
    src = torch.tensor([[3, 4, 3, 3]])
    L = 3
    best, best_lp = None, -math.inf
    for seq in itertools.product(range(v), repeat=L):  # every output: any tokens, padding after <eos>
        if 2 in seq and any(t != 0 for t in seq[seq.index(2) + 1 :]):
            continue
        lp = sequence_log_prob(model, src[0], torch.tensor(seq))
        if lp > best_lp:
            best, best_lp = seq, lp
    out, scores = G.beam_search(model, src, v**L, L, return_beams=True)
    got = out[0, 0].tolist() + [0] * (L - out.size(2))
    assert tuple(got) == best and scores[0, 0].item() == pytest.approx(best_lp, abs=1e-5)


def test_length_penalty_ranks_by_normalized_score(seq2seq):
    src = sources()
    raw, raw_scores = G.beam_search(seq2seq, src, 5, 8, return_beams=True)
    norm, norm_scores = G.beam_search(seq2seq, src, 5, 8, length_penalty=1.0, return_beams=True)
    for b in range(6):
        lengths = {}
        for k in range(5):
            row = raw[b, k].tolist()
            n = row.index(2) + 1 if 2 in row else len(row)
            lengths[tuple(row)] = (raw_scores[b, k].item(), n)
        expected = sorted(lengths.values(), key=lambda sn: sn[0] / sn[1], reverse=True)
        got = [lengths[tuple(r.tolist())] for r in norm[b]]
        assert [s / n for s, n in got] == pytest.approx([s / n for s, n in expected])
        assert norm_scores[b].tolist() == pytest.approx([s / n for s, n in expected])


def test_beam_search_with_and_without_the_cache(seq2seq, lm):
    src = sources()
    for model, inputs, kw in ((seq2seq, src, {}), (lm, prompt(3), {"eos_id": None})):
        a = G.beam_search(model, inputs, 3, 10, return_beams=True, **kw)
        b = G.beam_search(model, inputs, 3, 10, return_beams=True, use_cache=False, **kw)
        assert torch.equal(a[0], b[0])
        torch.testing.assert_close(a[1], b[1])


def test_beam_search_validation_and_mode(seq2seq):
    with pytest.raises(ValueError):
        G.beam_search(seq2seq, sources(), 0, 5)
    seq2seq.train()
    G.beam_search(seq2seq, sources(), 2, 5)
    assert seq2seq.training
    seq2seq.eval()


def test_forward_helpers_mask_source_padding(seq2seq):
    src = sources()
    tgt_in = torch.ones(6, 4, dtype=torch.long)
    logits = G.seq2seq_forward(seq2seq, src, tgt_in)
    torch.testing.assert_close(logits, seq2seq(src, tgt_in, src != 0))
    # A padded source gives what the same source gives alone, unpadded: the padding is masked.
    for i in range(6):
        n = int((src[i] != 0).sum())
        alone = G.seq2seq_forward(seq2seq, src[i : i + 1, :n], tgt_in[:1])
        torch.testing.assert_close(alone[0], logits[i], atol=1e-5, rtol=1e-5)


def test_distinct_n_and_repetition_measures():
    from transformer_workbook.generation import distinct_n, repeated_ngram_share

    assert distinct_n(["a b c", "d e f"], 2) == 1.0
    assert distinct_n(["a b a b a b"], 2) == 2 / 5
    assert distinct_n(["a"], 2) == 0.0
    assert repeated_ngram_share("x y z x y z", 3) == 1 / 4
    assert repeated_ngram_share("the dog runs .", 3) == 0.0
    with pytest.raises(ValueError):
        distinct_n(["a"], 0)
