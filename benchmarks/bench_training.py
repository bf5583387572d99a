"""Chapters 8 and 9 timed: time to a target on held-out data, and generation with and without a KV cache.

:func:`train_to_target` trains a chapter's recipe (``training.DATE_RECIPE``,
``training.LM_RECIPE``), built exactly as ``train_date_model`` and
``train_language_model`` build it, and evaluates on the validation set every
``eval_every`` steps. Each evaluation records the step, the *training* seconds
so far (the evaluations' own time is left out) and the metric; the run stops at
the first evaluation that reaches the target (or after ``max_train_s`` seconds
of training, or at the recipe's last step). Steps are counted, never seconds,
so the step at which the target is reached is the same on any machine (for a
given torch build); only the seconds change.

- Chapter 8: validation exact match >= :data:`DATE_TARGET` (greedy decoding);
  also the exact match reached within :data:`NOTEBOOK_BUDGET_S` seconds of
  training, a chapter notebook's whole budget.
- Chapter 9: validation perplexity <= :data:`LM_TARGET_FACTOR` x the grammar's
  own perplexity of the same sentences (the best any model can do).

:func:`generation_rows`: tokens per second of ``generate`` (the language
model, one sample of 200 characters and a batch of 32 of 100) and ``greedy_decode`` (the date model,
decoding a batch of dates), with and without the KV cache, side by side. The
models have the recipes' shapes; their weights do not matter for speed (the
lengths are fixed: no end token stops them early), so they are not trained.

    python benchmarks/run.py training generation
"""

from __future__ import annotations

import math
import time

import torch
from bench_common import summary, time_side_by_side

from transformer_workbook import training as T
from transformer_workbook.data import (
    batch_stream,
    collate_lm,
    collate_seq2seq,
    date_splits,
    date_tokenizer,
    text_corpus,
    text_tokenizer,
)
from transformer_workbook.model import DecoderOnlyLM, Transformer, generate, greedy_decode

DATE_TARGET = 0.99
LM_TARGET_FACTOR = 1.10
NOTEBOOK_BUDGET_S = 30.0
EVAL_EVERY = 100


class _Reached(Exception):
    """Raised by the evaluation to end training early (the loop records its time in ``finally``)."""


def _setup(chapter: int, seed: int = 0, data_seed: int = 0):
    """The recipe's model, batches, config and evaluation, as ``train_date_model`` and
    ``train_language_model`` make them."""
    if chapter == 8:
        recipe = T.DATE_RECIPE
        splits = date_splits(seed=data_seed, **recipe.data)
        tok = date_tokenizer()
        torch.manual_seed(seed)
        model = Transformer(src_vocab_size=len(tok), tgt_vocab_size=len(tok), **recipe.model)
        stream = batch_stream(splits.train, recipe.batch_size, lambda b: collate_seq2seq(b, tok), seed=seed,
                              length=lambda pair: len(pair[0]))

        def metric(m):
            return T.exact_match(m, splits.validation, tok)[0]

        target = DATE_TARGET
        name, higher = "validation exact match", True
    else:
        recipe = T.LM_RECIPE
        corpus = text_corpus(seed=data_seed, **recipe.data)
        tok = text_tokenizer(corpus.grammar)
        torch.manual_seed(seed)
        model = DecoderOnlyLM(vocab_size=len(tok), **recipe.model)
        stream = batch_stream(corpus.train, recipe.batch_size, lambda b: collate_lm(b, tok), seed=seed,
                              length=len)

        def metric(m):
            return T.perplexity(m, corpus.validation, tok)

        n_tokens = sum(len(t) + 1 for t in corpus.validation)
        best = math.exp(-sum(corpus.grammar.log_prob(t) for t in corpus.validation) / n_tokens)
        target = LM_TARGET_FACTOR * best
        name, higher = "validation perplexity", False
    config = T.TrainConfig(d_model=recipe.model["d_model"], seed=seed, pad_id=tok.pad_id, **recipe.train)
    return recipe, model, stream, config, metric, target, name, higher


def train_to_target(chapter: int, eval_every: int = EVAL_EVERY, max_train_s: float = 240.0,
                    seed: int = 0) -> dict:
    """Train Chapter ``chapter``'s recipe until its target; the curve against training time."""
    recipe, model, stream, config, metric, target, name, higher = _setup(chapter, seed)
    history = T.History()
    curve: list[dict] = []
    clock = {"start": 0.0, "evaluating": 0.0}

    def evaluate(m):
        t0 = time.perf_counter()
        train_s = t0 - clock["start"] - clock["evaluating"]
        value = metric(m)
        clock["evaluating"] += time.perf_counter() - t0
        step = len(history.loss)
        curve.append({"step": step, "train_s": train_s, "value": value})
        print(f"   step {step:5}: {name} {value:.4f} after {train_s:6.1f} s of training", flush=True)
        if (value >= target) if higher else (value <= target):
            raise _Reached
        if max_train_s and train_s > max_train_s:
            raise _Reached  # not reached within the cap: the curve says so
        return {name: value}

    clock["start"] = time.perf_counter()
    try:
        T.train(model, stream, config, evaluate, eval_every, progress=False, history=history)
    except _Reached:
        pass
    reached = next((p for p in curve if ((p["value"] >= target) if higher else (p["value"] <= target))), None)
    train_s = history.seconds - clock["evaluating"]
    steps = len(history.loss)
    within = [p for p in curve if p["train_s"] <= NOTEBOOK_BUDGET_S]
    result = {
        "chapter": chapter, "metric": name, "higher_is_better": higher, "target": target,
        "recipe_steps": recipe.train["steps"], "eval_every": eval_every, "max_train_s": max_train_s,
        "steps": steps, "train_seconds": train_s, "eval_seconds": clock["evaluating"],
        "steps_per_second": steps / train_s if train_s > 0 else math.nan,
        "reached_step": reached["step"] if reached else None,
        "reached_seconds": reached["train_s"] if reached else None,
        "in_notebook_budget": within[-1] if within else None,
        "curve": curve,
    }
    if reached:
        print(f"   target {name} {'>=' if higher else '<='} {target:.4f} reached at step {reached['step']} "
              f"after {reached['train_s']:.1f} s of training ({result['steps_per_second']:.1f} steps/s)",
              flush=True)
    else:
        print(f"   target not reached in {steps} steps ({train_s:.1f} s of training)", flush=True)
    return result


def generation_rows(repeats: int = 5) -> list[dict]:
    """Tokens per second with and without the KV cache, side by side."""
    rows = []
    torch.manual_seed(0)
    tok = text_tokenizer()
    lm = DecoderOnlyLM(vocab_size=len(tok), **T.LM_RECIPE.model).eval()
    # One sample of 200 characters (a sentence is about 40), and a batch of 32 samples of 100.
    for batch, new_tokens in ((1, 200), (32, 100)):
        prompt = torch.full((batch, 1), tok.bos_id)
        times = time_side_by_side({
            "cache": lambda p=prompt, n=new_tokens: generate(lm, p, n, use_cache=True),
            "no cache": lambda p=prompt, n=new_tokens: generate(lm, p, n, use_cache=False),
        }, repeats=repeats)
        rows.append(_generation_row("Chapter 9's language model, generate", batch, new_tokens, times))

    dtok = date_tokenizer()
    seq2seq = Transformer(len(dtok), len(dtok), **T.DATE_RECIPE.model).eval()
    pairs = date_splits(n_train=1000, n_validation=500, n_test=10, seed=0).validation
    src = collate_seq2seq(pairs, dtok).src  # (500, S): exact_match decodes 500 at a time
    keep = src != dtok.pad_id
    new_tokens = max(len(t) for _, t in pairs) + 1
    times = time_side_by_side({
        "cache": lambda: greedy_decode(seq2seq, src, new_tokens, dtok.bos_id, None, keep, use_cache=True),
        "no cache": lambda: greedy_decode(seq2seq, src, new_tokens, dtok.bos_id, None, keep, use_cache=False),
    }, repeats=repeats)
    rows.append(_generation_row("Chapter 8's date model, greedy_decode", len(pairs), new_tokens, times))
    return rows


def _generation_row(what, batch, new_tokens, times) -> dict:
    n = batch * new_tokens
    row = {"what": what, "batch": batch, "new_tokens": new_tokens,
           "cache": summary([n / t for t in times["cache"]]),
           "no_cache": summary([n / t for t in times["no cache"]]),
           "speedup": summary([b / a for a, b in zip(times["cache"], times["no cache"], strict=True)])}
    print(f"   {what:40} batch {batch:4}: {row['cache']['median']:9.0f} tokens/s with the cache, "
          f"{row['no_cache']['median']:9.0f} without (x{row['speedup']['median']:.2f})", flush=True)
    return row
