"""Chapter 5's whole models: Transformer and DecoderOnlyLM, weight tying, masks, generation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_workbook.decoder import Decoder
from transformer_workbook.encoder import Encoder
from transformer_workbook.masks import causal_mask, padding_mask
from transformer_workbook.model import (
    DecoderOnlyLM,
    Transformer,
    generate,
    greedy,
    greedy_decode,
    record_attention,
    shift_right,
)

V, D, H, N, FF = 13, 16, 4, 2, 32
B, LS, LT = 3, 7, 5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _batch():
    src = torch.randint(3, V, (B, LS))
    tgt = torch.randint(3, V, (B, LT))
    src_keep = padding_mask(torch.tensor([LS, 4, 2]), LS)
    return src.masked_fill(~src_keep, 0), tgt, src_keep


# ---------------------------------------------------------------------------
# Shapes, weight tying
# ---------------------------------------------------------------------------


def test_transformer_shapes():
    model = Transformer(V, V + 4, D, H, N, FF, max_len=16)
    src, tgt, keep = _batch()
    assert model(src, tgt, keep).shape == (B, LT, V + 4)
    memory = model.encode(src, keep)
    assert memory.shape == (B, LS, D)
    torch.testing.assert_close(model.decode(tgt, memory, keep), model(src, tgt, keep))


def test_tied_embeddings_share_storage_when_vocabularies_match():
    model = Transformer(V, V, D, H, N, FF)
    w = model.tgt_embed.token.weight
    assert model.out_proj.weight is w and model.src_embed.token.weight is w
    assert model.out_proj.weight.data_ptr() == w.data_ptr() == model.src_embed.token.weight.data_ptr()
    assert sum(p is w for p in model.parameters()) == 1  # listed once
    names = [k for k, v in model.state_dict().items() if v.data_ptr() == w.data_ptr()]
    assert set(names) == {"src_embed.token.weight", "tgt_embed.token.weight", "out_proj.weight"}
    untied = Transformer(V, V, D, H, N, FF, tie_embeddings=False)
    assert _count(untied) == _count(model) + 2 * V * D
    # a gradient step moves all three uses together
    src, tgt, keep = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    F.cross_entropy(model(src, tgt, keep).flatten(0, 1), tgt.flatten()).backward()
    opt.step()
    assert model.out_proj.weight.data_ptr() == model.src_embed.token.weight.data_ptr()
    torch.testing.assert_close(model.out_proj.weight, model.src_embed.token.weight, rtol=0, atol=0)


def test_state_dict_round_trip_keeps_the_tie():
    model = Transformer(V, V, D, H, N, FF)
    other = Transformer(V, V, D, H, N, FF)
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other.out_proj.weight, model.out_proj.weight, rtol=0, atol=0)
    assert other.out_proj.weight.data_ptr() == other.src_embed.token.weight.data_ptr()
    src, tgt, keep = _batch()
    torch.testing.assert_close(other.eval()(src, tgt, keep), model.eval()(src, tgt, keep))


def test_tied_embeddings_with_different_vocabularies():
    model = Transformer(V, V + 5, D, H, N, FF)
    assert model.out_proj.weight.data_ptr() == model.tgt_embed.token.weight.data_ptr()
    assert model.src_embed.token.weight.data_ptr() != model.tgt_embed.token.weight.data_ptr()
    assert _count(model) == _count(Transformer(V, V, D, H, N, FF)) + (V + 5) * D
    lm = DecoderOnlyLM(V, D, H, N, FF)
    assert lm.out_proj.weight.data_ptr() == lm.embed.token.weight.data_ptr()
    assert _count(DecoderOnlyLM(V, D, H, N, FF, tie_embeddings=False)) == _count(lm) + V * D


def test_final_norms_only_with_pre_ln():
    assert Transformer(V, V, D, H, N, FF).encoder.norm is None
    pre = Transformer(V, V, D, H, N, FF, norm_first=True)
    assert pre.encoder.norm is not None and pre.decoder.norm is not None
    assert _count(pre) == _count(Transformer(V, V, D, H, N, FF)) + 4 * D


def test_initial_logits_are_moderate():
    """Scaled N(0, 1/d) embeddings tied with the output: logits of order 1, loss near log(V)."""
    model = Transformer(V, V, 64, H, N, 128).eval()
    src, tgt, keep = _batch()
    logits = model(src, tgt, keep)
    assert logits.std() < 3
    loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten())
    assert abs(loss.item() - torch.log(torch.tensor(float(V))).item()) < 1.5


# ---------------------------------------------------------------------------
# Against nn.Transformer with the same weights
# ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_equals_nn_transformer_with_the_same_stacks(norm_first):
    """Our embeddings + nn.Transformer + our projection == our model with the stacks copied."""
    theirs = nn.Transformer(D, H, N, N, FF, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
    model = Transformer(V, V, D, H, N, FF, norm_first=norm_first).eval()
    model.encoder = Encoder.from_torch(theirs.encoder)  # nn.Transformer has final norms in both cases
    model.decoder = Decoder.from_torch(theirs.decoder)
    src, tgt, keep = _batch()
    expected = model.out_proj(
        theirs(
            model.src_embed(src), model.tgt_embed(tgt),
            tgt_mask=nn.Transformer.generate_square_subsequent_mask(LT), tgt_is_causal=True,
            src_key_padding_mask=(~keep).float().masked_fill(~keep, float("-inf")),
            memory_key_padding_mask=(~keep).float().masked_fill(~keep, float("-inf")),
        )
    )
    torch.testing.assert_close(model(src, tgt, keep), expected)


# ---------------------------------------------------------------------------
# Masks at the model level
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [False, True])
def test_no_leak_from_future_targets_or_source_padding(norm_first):
    model = Transformer(V, V, D, H, N, FF, norm_first=norm_first).eval()
    src, tgt, keep = _batch()
    logits = model(src, tgt, keep)
    for t in range(1, LT):
        changed = tgt.clone()
        changed[:, t:] = torch.randint(3, V, (B, LT - t))
        torch.testing.assert_close(model(src, changed, keep)[:, :t], logits[:, :t])
    garbage = src.masked_fill(~keep, 5)  # change only the padded source tokens
    torch.testing.assert_close(model(garbage, tgt, keep), logits)


def test_decoder_only_lm_is_causal():
    lm = DecoderOnlyLM(V, D, H, N, FF).eval()
    x = torch.randint(0, V, (B, 8))
    logits = lm(x)
    assert logits.shape == (B, 8, V)
    for t in range(1, 8):
        changed = x.clone()
        changed[:, t:] = torch.randint(0, V, (B, 8 - t))
        torch.testing.assert_close(lm(changed)[:, :t], logits[:, :t])


def test_shift_right():
    tgt = torch.tensor([[5, 6, 7, 2], [8, 2, 0, 0]])
    expected = torch.tensor([[1, 5, 6, 7], [1, 8, 2, 0]])
    torch.testing.assert_close(shift_right(tgt, start_id=1), expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------


def _reference_greedy(model, src, keep, n, start_id):
    """The textbook loop: re-run the whole decoder on everything generated so far."""
    ys = torch.full((src.size(0), 1), start_id)
    for _ in range(n):
        next_token = model(src, ys, keep)[:, -1].argmax(-1)  # (B,)
        ys = torch.cat([ys, next_token[:, None]], dim=1)
    return ys[:, 1:]


@pytest.mark.parametrize("norm_first", [False, True])
def test_greedy_decode_with_and_without_cache_equals_the_textbook_loop(norm_first):
    model = Transformer(V, V, D, H, N, FF, norm_first=norm_first).eval()
    src, _, keep = _batch()
    expected = _reference_greedy(model, src, keep, 6, start_id=1)
    torch.testing.assert_close(greedy_decode(model, src, 6, start_id=1, src_padding_mask=keep), expected)
    torch.testing.assert_close(
        greedy_decode(model, src, 6, start_id=1, src_padding_mask=keep, use_cache=False), expected
    )


def test_greedy_decode_stops_at_end_and_restores_training_mode():
    model = Transformer(V, V, D, H, N, FF, dropout=0.3)  # training mode, with dropout
    src, _, keep = _batch()
    free = greedy_decode(model, src, 8, start_id=1, src_padding_mask=keep)
    assert model.training  # put back
    end_id = int(free[0, 2])  # make sequence 0 finish at step 3 (or earlier)
    out = greedy_decode(model, src, 8, start_id=1, end_id=end_id, src_padding_mask=keep)
    for b in range(B):
        hits = (free[b] == end_id).nonzero()
        if len(hits):
            first = int(hits[0])
            torch.testing.assert_close(out[b, : first + 1], free[b, : first + 1])
            assert (out[b, first:] == end_id).all()  # filled after the end
        else:
            torch.testing.assert_close(out[b], free[b, : out.size(1)])
    if all((free[b] == end_id).any() for b in range(B)):
        assert out.size(1) < 8 or (out[:, -1] == end_id).all()


@pytest.fixture
def one_thread():
    """Tiny tensors gain nothing from two threads, and on a busy machine two spinning threads
    can make each step ten times slower; the result does not depend on it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_greedy_decode_learns_to_copy(one_thread):
    """A tiny model trained for about a second: greedy decoding reproduces the source."""
    torch.manual_seed(0)
    start, end, vocab, length = 1, 2, 8, 4
    model = Transformer(vocab, vocab, 32, 4, 1, 64, max_len=8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        src = torch.randint(3, vocab, (32, length))
        tgt = torch.cat([src, torch.full((32, 1), end)], dim=1)  # copy, then <end>
        logits = model(src, shift_right(tgt, start))
        loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    src = torch.randint(3, vocab, (32, length), generator=torch.Generator().manual_seed(1))
    out = greedy_decode(model, src, length + 3, start_id=start, end_id=end)
    assert out.shape == (32, length + 1)  # stopped at <end>
    assert (out[:, :length] == src).float().mean() > 0.9
    assert (out[:, length] == end).float().mean() > 0.9
    untrained = greedy_decode(Transformer(vocab, vocab, 32, 4, 1, 64, max_len=8), src, length, start)
    assert (untrained == src).float().mean() < 0.5


@pytest.mark.parametrize("norm_first", [False, True])
def test_lm_generate_with_and_without_cache(norm_first):
    lm = DecoderOnlyLM(V, D, H, N, FF, max_len=32, norm_first=norm_first).eval()
    prompt = torch.randint(0, V, (B, 3))
    out = generate(lm, prompt, 10)
    assert out.shape == (B, 13)
    torch.testing.assert_close(out[:, :3], prompt)
    torch.testing.assert_close(generate(lm, prompt, 10, use_cache=False), out)
    ys = prompt  # the textbook loop
    for _ in range(10):
        ys = torch.cat([ys, lm(ys)[:, -1].argmax(-1, keepdim=True)], dim=1)
    torch.testing.assert_close(out, ys)


def test_lm_generate_past_max_len_slides_the_window():
    lm = DecoderOnlyLM(V, D, H, N, FF, max_len=6).eval()
    prompt = torch.randint(0, V, (2, 4))
    out = generate(lm, prompt, 9)
    assert out.shape == (2, 13)
    torch.testing.assert_close(generate(lm, prompt, 9, use_cache=False), out)
    ys = prompt
    for _ in range(9):
        ys = torch.cat([ys, lm(ys[:, -6:])[:, -1].argmax(-1, keepdim=True)], dim=1)
    torch.testing.assert_close(out, ys)


def test_lm_generate_with_a_sampler():
    lm = DecoderOnlyLM(V, D, H, N, FF).eval()
    prompt = torch.randint(0, V, (B, 2))

    def sampler(seed):
        g = torch.Generator().manual_seed(seed)
        return lambda logits: torch.multinomial(torch.softmax(logits, -1), 1, generator=g)[:, 0]

    a = generate(lm, prompt, 12, pick=sampler(0))
    torch.testing.assert_close(generate(lm, prompt, 12, pick=sampler(0), use_cache=False), a)
    assert not torch.equal(a, generate(lm, prompt, 12))  # not greedy
    assert greedy(torch.tensor([[0.1, 3.0, -1.0]])).tolist() == [1]


def test_lm_forward_with_cache_equals_full_forward():
    lm = DecoderOnlyLM(V, D, H, N, FF).eval()
    x = torch.randint(0, V, (B, 7))
    cache = lm.decoder.new_cache()
    chunks = [lm(x[:, :3], cache=cache), lm(x[:, 3:4], cache=cache), lm(x[:, 4:], cache=cache)]
    torch.testing.assert_close(torch.cat(chunks, dim=1), lm(x))


def test_lm_padding_mask_left_padding():
    """Left-padded prompts: the padding mask keeps real tokens from attending to pads."""
    lm = DecoderOnlyLM(V, D, H, N, FF).eval()
    real = torch.randint(1, V, (1, 4))
    padded = torch.cat([torch.zeros(1, 2, dtype=torch.long), real], dim=1)  # 2 pads first
    keep = torch.tensor([[False, False, True, True, True, True]])
    out = lm(padded, padding_mask=keep)
    assert not out.isnan().any()  # the pad queries attend to nothing: zeros, not NaN
    # positions differ (shifted by 2), so compare with the same positions: no dependence on pad ids
    other = padded.clone()
    other[:, :2] = 7
    torch.testing.assert_close(lm(other, padding_mask=keep)[:, 2:], out[:, 2:])


def test_record_attention_on_the_model():
    model = Transformer(V, V, D, H, N, FF).eval()
    src, tgt, keep = _batch()
    logits = model(src, tgt, keep)
    with record_attention(model) as maps:
        torch.testing.assert_close(model(src, tgt, keep), logits)
    assert len(maps) == 3 * N
    cross = maps[f"decoder.layers.{N - 1}.cross_attn"]
    assert cross.shape == (B, H, LT, LS)
    assert (cross[2, ..., 2:] == 0).all()  # sequence 2 has 2 real source tokens
    assert (maps["decoder.layers.0.self_attn"][..., ~causal_mask(LT)] == 0).all()
