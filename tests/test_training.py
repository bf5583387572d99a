"""The training loop of Chapters 8 and 9: schedule, loss, determinism, evaluation, checkpoints.

Models are tiny so that every test runs in a few seconds on two cores.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from transformer_workbook import training as T
from transformer_workbook.data import (
    CharTokenizer,
    batch_stream,
    collate_lm,
    collate_seq2seq,
    date_splits,
    date_tokenizer,
    text_tokenizer,
)
from transformer_workbook.model import DecoderOnlyLM, Transformer


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and spinning threads crawl on a loaded machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- schedule ----------------------------------------------------------------


@pytest.mark.parametrize("d_model,warmup,factor", [(512, 4000, 1.0), (64, 100, 2.0), (128, 1, 0.5)])
def test_noam_lr_is_the_papers_formula(d_model, warmup, factor):
    for step in [1, 2, 10, warmup - 1, warmup, warmup + 1, 3 * warmup, 10_000]:
        if step < 1:
            continue
        expected = factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
        assert T.noam_lr(step, d_model, warmup, factor) == pytest.approx(expected, rel=1e-12)


def test_noam_lr_rises_linearly_peaks_at_warmup_then_decays():
    lrs = [T.noam_lr(s, 512, 4000) for s in range(1, 20_001)]
    peak = max(range(len(lrs)), key=lrs.__getitem__) + 1
    assert peak == 4000
    assert lrs[3999] == pytest.approx(1 / math.sqrt(512 * 4000))
    assert lrs[1999] == pytest.approx(lrs[3999] / 2)  # linear warm-up: half-way, half the rate
    assert lrs[15999] == pytest.approx(lrs[3999] / 2)  # then 1/sqrt(step): 4x the steps, half the rate
    with pytest.raises(ValueError):
        T.noam_lr(0, 512, 4000)


def test_noam_schedule_drives_the_optimizer():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([p], lr=123.0)
    sched = T.noam_schedule(opt, d_model=64, warmup=10, factor=3.0)
    for step in range(1, 40):
        assert opt.param_groups[0]["lr"] == pytest.approx(T.noam_lr(step, 64, 10, 3.0))
        opt.step()
        sched.step()


# ---- loss ------------------------------------------------------------------------


def _logits_targets(pad_id=0, V=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 5, V, generator=g) * 2
    targets = torch.randint(1, V, (3, 5), generator=g)
    targets[0, 3:] = pad_id
    targets[2, 1:] = pad_id
    return logits, targets


def test_without_smoothing_it_is_cross_entropy_with_ignore_index():
    logits, targets = _logits_targets()
    ours = T.label_smoothed_cross_entropy(logits, targets, 0.0, pad_id=0)
    ref = F.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1), ignore_index=0)
    torch.testing.assert_close(ours, ref)


def test_smoothing_without_a_pad_id_is_pytorchs_label_smoothing():
    logits, targets = _logits_targets()
    for eps in (0.1, 0.3):
        ours = T.label_smoothed_cross_entropy(logits, targets, eps, pad_id=None)
        ref = F.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1), label_smoothing=eps)
        torch.testing.assert_close(ours, ref)


def test_smoothing_puts_no_mass_on_padding_and_ignores_padded_positions():
    logits, targets = _logits_targets(pad_id=0)
    eps, V = 0.1, 7
    keep = targets != 0
    # The target distribution, written out: 1 - eps on the true token, eps spread evenly over
    # the V - 1 tokens that are not padding (the true one included), 0 on padding.
    q = torch.full((int(keep.sum()), V), eps / (V - 1))
    q[:, 0] = 0.0
    q[torch.arange(q.size(0)), targets[keep]] += 1 - eps
    torch.testing.assert_close(q.sum(-1), torch.ones(q.size(0)))
    ref = F.cross_entropy(logits[keep], q)  # PyTorch with probability targets
    ours = T.label_smoothed_cross_entropy(logits, targets, eps, pad_id=0)
    torch.testing.assert_close(ours, ref)
    # PyTorch's own label smoothing (with ignore_index) spreads eps over all V tokens, padding too:
    theirs = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=0, label_smoothing=eps)
    assert not torch.allclose(ours, theirs)


def test_padding_logits_and_positions_do_not_matter():
    logits, targets = _logits_targets()
    base = T.label_smoothed_cross_entropy(logits, targets, 0.1)
    changed = logits.clone()
    changed[targets == 0] = torch.randn_like(changed[targets == 0]) * 10  # positions with a pad target
    torch.testing.assert_close(T.label_smoothed_cross_entropy(changed, targets, 0.1), base)
    # Lowering the padding token's logit everywhere lowers our loss (no mass wanted there);
    # PyTorch's smoothing, which wants eps / V on padding, is hurt by it.
    lower = logits.clone()
    lower[..., 0] -= 30
    assert T.label_smoothed_cross_entropy(lower, targets, 0.1) < base
    ce = lambda x: F.cross_entropy(x.reshape(-1, 7), targets.reshape(-1), ignore_index=0, label_smoothing=0.1)  # noqa: E731
    assert ce(lower) > ce(logits)


def test_loss_reductions_and_validation():
    logits, targets = _logits_targets()
    per = T.label_smoothed_cross_entropy(logits, targets, 0.2, reduction="none")
    assert per.shape == targets.shape and (per[targets == 0] == 0).all()
    total = T.label_smoothed_cross_entropy(logits, targets, 0.2, reduction="sum")
    mean = T.label_smoothed_cross_entropy(logits, targets, 0.2)
    torch.testing.assert_close(total, per.sum())
    torch.testing.assert_close(mean, total / (targets != 0).sum())
    with pytest.raises(ValueError):
        T.label_smoothed_cross_entropy(logits, targets, 1.0)
    with pytest.raises(ValueError):
        T.label_smoothed_cross_entropy(logits, targets, 0.1, reduction="max")


# ---- the loop -----------------------------------------------------------------------


def tiny_seq2seq(tok, seed=0, d_model=32, dropout=0.0):
    torch.manual_seed(seed)
    return Transformer(len(tok), len(tok), d_model, 4, 1, 64, dropout=dropout)


def _date_stream(pairs, tok, batch_size, seed=0):
    collate = lambda b: collate_seq2seq(b, tok)  # noqa: E731
    return batch_stream(pairs, batch_size, collate, seed=seed, length=lambda p: len(p[0]))


def test_tiny_model_overfits_a_few_dates():
    tok = date_tokenizer()
    pairs = date_splits(n_train=8, n_validation=1, n_test=1, seed=0).train
    model = tiny_seq2seq(tok)
    cfg = T.TrainConfig(steps=250, d_model=32, warmup=20, lr_factor=1.0, label_smoothing=0.0)
    history = T.train(model, _date_stream(pairs, tok, 8), cfg, progress=False)
    acc, predictions = T.exact_match(model, pairs, tok)
    assert acc == 1.0, list(zip(predictions, pairs, strict=True))
    assert history.loss[-1] < 0.05 and history.accuracy[-1] == 1.0
    assert len(history.loss) == len(history.lr) == len(history.grad_norm) == 250
    assert history.lr == pytest.approx([T.noam_lr(s, 32, 20) for s in range(1, 251)])


def test_training_is_deterministic():
    tok = date_tokenizer()
    pairs = date_splits(n_train=200, n_validation=1, n_test=1, seed=0).train
    cfg = T.TrainConfig(steps=15, d_model=32, warmup=5, label_smoothing=0.1, seed=3)
    params = []
    for _ in range(2):
        model = tiny_seq2seq(tok, dropout=0.1)  # dropout draws from the generator train() seeds
        T.train(model, _date_stream(pairs, tok, 16), cfg, progress=False)
        params.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*params, strict=True):
        assert torch.equal(a, b)


def test_average_last_is_the_mean_of_the_last_steps_parameters():
    tok = date_tokenizer()
    pairs = date_splits(n_train=200, n_validation=1, n_test=1, seed=0).train
    snapshots = []

    def snapshot(m):
        snapshots.append([p.detach().clone() for p in m.parameters()])
        return {}

    cfg = T.TrainConfig(steps=8, d_model=32, warmup=4)
    stream = _date_stream(pairs, tok, 16)
    T.train(tiny_seq2seq(tok), stream, cfg, evaluate=snapshot, eval_every=1, progress=False)
    averaged = tiny_seq2seq(tok)
    cfg_avg = T.TrainConfig(steps=8, d_model=32, warmup=4, average_last=3)
    T.train(averaged, _date_stream(pairs, tok, 16), cfg_avg, progress=False)
    for i, p in enumerate(averaged.parameters()):
        expected = torch.stack([snap[i] for snap in snapshots[-3:]]).mean(0)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(list(averaged.parameters())[0], snapshots[-1][0])
    with pytest.raises(ValueError, match="average_last"):
        T.train(averaged, [], T.TrainConfig(steps=2, d_model=32, average_last=3), progress=False)


def test_gradient_clipping_bounds_the_update():
    tok = date_tokenizer()
    pairs = date_splits(n_train=64, n_validation=1, n_test=1, seed=0).train
    model = tiny_seq2seq(tok)
    cfg = T.TrainConfig(steps=3, d_model=32, warmup=1, clip_norm=1e-3)
    h = T.train(model, _date_stream(pairs, tok, 16), cfg, progress=False)
    assert min(h.grad_norm) > 1e-3  # the norms before clipping are recorded
    # After clipping, the global gradient norm is at most clip_norm.
    batch = collate_seq2seq(pairs[:16], tok)
    logits, targets = T.batch_logits(model, batch)
    T.label_smoothed_cross_entropy(logits, targets).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
    total = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters() if p.grad is not None))
    assert total <= 1e-3 * (1 + 1e-5)


def test_evaluate_callback_and_running_out_of_batches():
    tok = date_tokenizer()
    pairs = date_splits(n_train=64, n_validation=1, n_test=1, seed=0).train
    model = tiny_seq2seq(tok)
    calls = []

    def evaluate(m):
        assert not m.training and not torch.is_grad_enabled()
        calls.append(1)
        return {"val": 0.5}

    cfg = T.TrainConfig(steps=7, d_model=32, warmup=2)
    h = T.train(model, _date_stream(pairs, tok, 16), cfg, evaluate=evaluate, eval_every=3, progress=False)
    assert [s for s, _ in h.evals] == [3, 6, 7] and len(calls) == 3
    assert not model.training
    batches = [collate_seq2seq(pairs[:16], tok)] * 2
    with pytest.raises(ValueError, match="ran out after 2 of 7"):
        T.train(model, batches, cfg, progress=False)


def test_progress_bar_runs():
    tok = date_tokenizer()
    pairs = date_splits(n_train=64, n_validation=1, n_test=1, seed=0).train
    cfg = T.TrainConfig(steps=2, d_model=32)
    h = T.train(tiny_seq2seq(tok), _date_stream(pairs, tok, 16), cfg, progress=True)
    assert h.steps == 2 and h.seconds > 0


def test_language_model_training_lowers_perplexity():
    tok = text_tokenizer()
    texts = ["the dog runs .", "two cats sleep .", "a red fox sings .", "these owls see the dog ."]
    torch.manual_seed(0)
    lm = DecoderOnlyLM(len(tok), 32, 4, 1, 64, max_len=64)
    before = T.perplexity(lm, texts, tok)
    stream = batch_stream(texts, 4, lambda b: collate_lm(b, tok), seed=0)
    T.train(lm, stream, T.TrainConfig(steps=150, d_model=32, warmup=10, label_smoothing=0.0), progress=False)
    after = T.perplexity(lm, texts, tok)
    assert before > 10 and after < 1.5


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    tok = CharTokenizer("abcdef")
    lm = DecoderOnlyLM(len(tok), 16, 2, 1, 32, max_len=32)
    with torch.no_grad():
        lm.out_proj.weight.zero_()  # (tied with the embedding) every logit is 0
    assert T.perplexity(lm, ["abc", "fedcba", "a"], tok) == pytest.approx(len(tok), rel=1e-5)


def test_exact_match_counts_whole_strings():
    tok = date_tokenizer()
    pairs = date_splits(n_train=16, n_validation=1, n_test=1, seed=0).train
    model = tiny_seq2seq(tok)
    acc, predictions = T.exact_match(model, pairs, tok, batch_size=5)
    assert len(predictions) == 16
    assert acc == sum(p == t for p, (_, t) in zip(predictions, pairs, strict=True)) / 16
    acc_beam, _ = T.exact_match(model, pairs, tok, beam_size=3)
    assert 0 <= acc_beam <= 1


# ---- saving and loading --------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    tok = date_tokenizer()
    config = dict(src_vocab_size=len(tok), tgt_vocab_size=len(tok), d_model=32, n_heads=4, n_layers=1,
                  d_ff=64)  # fmt: skip
    torch.manual_seed(0)
    model = Transformer(**config)
    path = tmp_path / "dates.pt"
    T.save_model(path, model, config, tok, steps=123, test_accuracy=0.5)
    loaded, tok2, info = T.load_model(path, device="cpu")
    assert type(loaded) is Transformer and not loaded.training
    assert tok2 == tok and info["config"] == config and info["extra"] == {"steps": 123, "test_accuracy": 0.5}
    assert loaded.out_proj.weight.data_ptr() == loaded.src_embed.token.weight.data_ptr()  # still tied
    batch = collate_seq2seq([("24 Nov 2026", "2026-11-24")], tok)
    torch.testing.assert_close(
        loaded(batch.src, batch.tgt_in), model.eval()(batch.src, batch.tgt_in), rtol=0, atol=0
    )


def test_save_refuses_classes_outside_the_package(tmp_path):
    with pytest.raises(ValueError, match="course's package"):
        T.save_model(tmp_path / "x.pt", torch.nn.Linear(2, 2), {"in_features": 2, "out_features": 2})


def test_default_device():
    assert T.default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


# ---- recipes ------------------------------------------------------------------------


def test_recipe_replace():
    r = T.DATE_RECIPE.replace(steps=10, d_model=32, batch_size=8, n_train=100)
    assert r.train["steps"] == 10 and r.model["d_model"] == 32
    assert r.batch_size == 8 and r.data["n_train"] == 100
    assert T.DATE_RECIPE.train["steps"] != 10  # the original is unchanged
    with pytest.raises(KeyError):
        T.DATE_RECIPE.replace(nope=1)


def test_recipes_train_in_one_call():
    small = dict(steps=4, d_model=16, n_heads=2, d_ff=32, batch_size=8, n_train=200, n_validation=20,
                 n_test=20, average_last=2)  # fmt: skip
    dates = T.train_date_model(T.DATE_RECIPE.replace(**small), progress=False, eval_every=2, device="cpu")
    assert dates.history.steps == 4 and [s for s, _ in dates.history.evals] == [2, 4]
    assert type(dates.model)(**dates.model_config).state_dict().keys() == dates.model.state_dict().keys()
    assert len(dates.data.test) == 20 and dates.config.average_last == 2
    lm = T.train_language_model(T.LM_RECIPE.replace(**small), progress=False, eval_every=4, device="cpu")
    assert lm.history.steps == 4 and "val_perplexity" in lm.history.evals[0][1]
    assert len(lm.data.train) == 200


@pytest.mark.parametrize("kind", list(T.DIAGNOSES))
def test_diagnose_run_reads_clear_cut_synthetic_runs(kind):
    from transformer_workbook.exercises.training import example_run

    for seed in (0, 1):
        train, val = example_run(kind, 600, 12, seed=seed, nan=(kind == "diverged" and seed == 0))
        assert train.shape == (600,) and val.shape == (12,)
        assert T.diagnose_run(train, val) == kind


def test_synthetic_run_rejects_unknown_kinds():
    with pytest.raises(ValueError):
        T.synthetic_run("bored")
