"""Chapters 8 and 9: training a Transformer, the same loop for seq2seq and for a language model.

- :func:`noam_lr` and :func:`noam_schedule`: the learning-rate schedule of
  "Attention Is All You Need" (section 5.3), a linear warm-up followed by an
  inverse-square-root decay.
- :func:`label_smoothed_cross_entropy`: the loss, with label smoothing
  (section 5.4) that never puts probability on the padding token, and padded
  positions ignored.
- :func:`train`: the loop (AdamW, the schedule, gradient clipping, a
  ``tqdm.auto`` progress bar, a :class:`History` of every step). It counts
  steps, never seconds: the same seed gives the same model on a busy machine
  as on an idle one.
- :func:`exact_match` (the date task) and :func:`perplexity` (the language
  model): evaluation on held-out data.
- :func:`diagnose_run`: read a run's loss curves (healthy, still improving,
  not learning, overfitting, diverged), and :func:`synthetic_run`, curves of
  each kind to practise on.
- :func:`save_model` and :func:`load_model`: a model's weights with its
  configuration (and tokenizer), so training can be resumed or reused.

Everything runs on :func:`default_device`: CUDA when a GPU is present, the CPU
otherwise.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .data import CharTokenizer, LMBatch, Seq2SeqBatch, collate_lm, collate_seq2seq

__all__ = [
    "default_device",
    "noam_lr",
    "noam_schedule",
    "label_smoothed_cross_entropy",
    "batch_logits",
    "TrainConfig",
    "History",
    "train",
    "exact_match",
    "perplexity",
    "DIAGNOSES",
    "synthetic_run",
    "diagnose_run",
    "save_model",
    "load_model",
    "Recipe",
    "DATE_RECIPE",
    "LM_RECIPE",
    "Trained",
    "train_date_model",
    "train_language_model",
]


def default_device() -> torch.device:
    """``cuda`` when a GPU is available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------
# Learning-rate schedule
# ---------------------------------------------------------------------------


def noam_lr(step: int, d_model: int, warmup: int, factor: float = 1.0) -> float:
    """The paper's learning rate at ``step`` (counted from 1).

    .. math::

        lrate = factor \\cdot d_{model}^{-0.5} \\cdot \\min(step^{-0.5},\\ step \\cdot warmup^{-1.5})

    It rises linearly for ``warmup`` steps, peaks at
    ``factor / sqrt(d_model * warmup)`` at ``step == warmup``, then decays as
    ``1 / sqrt(step)``. The paper uses ``factor = 1``, ``warmup = 4000``;
    ``factor`` rescales the whole curve (a small model can take a larger one).
    """
    if step < 1:
        raise ValueError(f"steps are counted from 1, got {step}")
    if warmup < 1 or d_model < 1:
        raise ValueError("warmup and d_model must be >= 1")
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def noam_schedule(
    optimizer: torch.optim.Optimizer, d_model: int, warmup: int, factor: float = 1.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler that sets every parameter group's learning rate to :func:`noam_lr`.

    The optimizer's own ``lr`` is overwritten (the multiplier is applied to a
    base of 1). Call ``scheduler.step()`` after each ``optimizer.step()``: the
    first update uses ``noam_lr(1, ...)``.
    """
    for group in optimizer.param_groups:
        group["lr"] = 1.0
        group["initial_lr"] = 1.0
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: noam_lr(i + 1, d_model, warmup, factor)
    )


# ---------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------


def label_smoothed_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    smoothing: float = 0.0,
    pad_id: int | None = 0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy against smoothed targets, ignoring padded positions.

    With smoothing ``eps`` the target distribution of a position whose true
    token is ``y`` is

    .. math::

        q = (1 - \\varepsilon)\\, \\mathrm{onehot}(y) + \\varepsilon\\, u

    where ``u`` is uniform over the vocabulary **without the padding token**
    (``V - 1`` tokens): padding is never a right answer, so smoothing puts no
    probability on it, and the model may drive its probability to 0. (PyTorch's
    ``F.cross_entropy(label_smoothing=eps)`` spreads ``eps`` over all ``V``
    tokens, the padding token included; with ``pad_id=None`` this function
    computes exactly that.) Positions whose target is ``pad_id`` contribute
    nothing, as with ``ignore_index``; the mean is over the other positions.

    Args:
        logits: ``(..., V)`` unnormalized scores.
        targets: ``(...)`` token ids.
        smoothing: ``eps`` in [0, 1).
        pad_id: the padding id (ignored as a target, excluded from ``u``), or ``None``.
        reduction: ``"mean"`` (over non-pad positions), ``"sum"`` or ``"none"`` (per position, 0 at pads).
    """
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    V = logits.size(-1)
    logp = F.log_softmax(logits.float(), dim=-1)  # (..., V)
    keep = torch.ones_like(targets, dtype=torch.bool) if pad_id is None else targets != pad_id  # (...)
    safe_targets = targets.masked_fill(~keep, 0)  # a valid index where the target is padding
    nll = -logp.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)  # (...)
    if smoothing > 0:
        if pad_id is None:
            smooth = -logp.mean(dim=-1)  # (...): cross-entropy with u uniform over V tokens
        else:
            not_pad = torch.ones(V, dtype=torch.bool, device=logits.device)
            not_pad[pad_id] = False
            smooth = -logp[..., not_pad].sum(dim=-1) / (V - 1)  # (...): u uniform over V - 1 tokens
        loss = (1 - smoothing) * nll + smoothing * smooth  # (...)
    else:
        loss = nll
    loss = loss * keep  # (...): 0 at padded positions
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / keep.sum().clamp(min=1)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


# ---------------------------------------------------------------------------
# One batch through a model
# ---------------------------------------------------------------------------


def batch_logits(model: nn.Module, batch: Seq2SeqBatch | LMBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (B, T, V), targets (B, T))`` of a batch, teacher-forced.

    A :class:`~transformer_workbook.data.Seq2SeqBatch` goes through an
    encoder-decoder (``model(src, tgt_in, src_lengths=..., tgt_lengths=...)``
    must return logits); an :class:`~transformer_workbook.data.LMBatch` through
    a decoder-only model (``model(inputs)``; causal masking is the model's job,
    and padding sits after every real token, so no real position attends to it).
    """
    if isinstance(batch, Seq2SeqBatch):
        from . import generation

        logits = generation.seq2seq_forward(model, batch.src, batch.tgt_in)  # (B, T, V)
        return logits, batch.tgt_out
    if isinstance(batch, LMBatch):
        from . import generation

        return generation.lm_forward(model, batch.inputs), batch.targets  # (B, L, V)
    raise TypeError(f"expected a Seq2SeqBatch or an LMBatch, got {type(batch).__name__}")


# ---------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """What :func:`train` needs besides the model and the data.

    Attributes:
        steps: number of optimizer steps (training is counted in steps, never seconds).
        d_model, warmup, lr_factor: the schedule, :func:`noam_lr`.
        label_smoothing: ``eps`` of :func:`label_smoothed_cross_entropy`.
        clip_norm: gradients are rescaled so that their global norm is at most this (``None``: no clipping).
        weight_decay, betas, eps: AdamW's (the paper: Adam, betas (0.9, 0.98), eps 1e-9).
        seed: seeds PyTorch's generator before the first step (dropout masks).
        pad_id: the padding id of the targets.
        average_last: when set, the trained model's parameters are the uniform
            average of its parameters after each of the last ``average_last``
            steps (the continuous version of the paper's averaging of its last
            checkpoints, section 6.1): it smooths out the noise of the last
            updates. ``None``: the parameters after the last step.
    """

    steps: int
    d_model: int
    warmup: int = 400
    lr_factor: float = 1.0
    label_smoothing: float = 0.1
    clip_norm: float | None = 1.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    seed: int = 0
    pad_id: int = 0
    average_last: int | None = None


@dataclass
class History:
    """What happened at each step of :func:`train`, and each evaluation.

    ``loss``, ``accuracy`` (share of non-pad target tokens predicted right,
    teacher-forced), ``lr`` and ``grad_norm`` (before clipping) have one entry
    per step; ``evals`` holds ``(step, metrics)`` for each evaluation.
    ``seconds`` is the wall time of the loop (reported, never used to decide
    anything).
    """

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    evals: list[tuple[int, dict]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        return len(self.loss)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("nan")


def train(
    model: nn.Module,
    batches: Iterable[Seq2SeqBatch | LMBatch],
    config: TrainConfig,
    evaluate: Callable[[nn.Module], dict] | None = None,
    eval_every: int | None = None,
    progress: bool = True,
    device: torch.device | str | None = None,
    history: History | None = None,
) -> History:
    """Train ``model`` for ``config.steps`` steps on ``batches``; return the :class:`History`.

    Each step: forward a batch (teacher forcing), the label-smoothed loss,
    backward, clip the gradients' global norm, an AdamW step at the
    :func:`noam_lr` learning rate. ``batches`` is any iterable of
    :class:`~transformer_workbook.data.Seq2SeqBatch` or
    :class:`~transformer_workbook.data.LMBatch` (e.g.
    :func:`~transformer_workbook.data.batch_stream`); it must yield at least
    ``config.steps`` batches.

    ``evaluate(model)`` (in eval mode, without gradients) is called every
    ``eval_every`` steps and after the last one; its metrics go to
    ``history.evals`` and the progress bar. The model is left in eval mode.

    Deterministic: the same model initialization, batches and config give
    the same parameters, whatever the machine's load (nothing depends on time).
    Pass the ``history`` of an earlier call to continue its curves (the
    schedule restarts; see :func:`save_model` for resuming).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1.0, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay
    )
    scheduler = noam_schedule(optimizer, config.d_model, config.warmup, config.lr_factor)
    history = History() if history is None else history
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, desc="training", unit="step")
    import time

    start = time.perf_counter()
    it: Iterator = iter(batches)
    if config.average_last is not None and not 1 <= config.average_last <= config.steps:
        raise ValueError(f"average_last must be in 1..steps, got {config.average_last}")
    first_averaged = config.steps - config.average_last + 1 if config.average_last else None
    params = [p for p in model.parameters() if p.requires_grad]
    average: list[torch.Tensor] = []
    model.train()
    try:
        for step in range(1, config.steps + 1):
            try:
                batch = next(it).to(device)
            except StopIteration:
                raise ValueError(f"the batches ran out after {step - 1} of {config.steps} steps") from None
            logits, targets = batch_logits(model, batch)  # (B, T, V), (B, T)
            loss = label_smoothed_cross_entropy(logits, targets, config.label_smoothing, config.pad_id)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            max_norm = config.clip_norm if config.clip_norm is not None else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            if first_averaged is not None and step >= first_averaged:
                with torch.no_grad():
                    if not average:
                        average = [p.detach().clone() for p in params]
                    else:  # running mean of the parameters after steps first_averaged..step
                        n = step - first_averaged + 1
                        for a, p in zip(average, params, strict=True):
                            a.add_(p.detach() - a, alpha=1 / n)
                    if step == config.steps:
                        for a, p in zip(average, params, strict=True):
                            p.copy_(a)
            with torch.no_grad():
                keep = targets != config.pad_id  # (B, T)
                correct = ((logits.argmax(-1) == targets) & keep).sum()
                acc = (correct / keep.sum().clamp(min=1)).item()
            history.loss.append(loss.item())
            history.accuracy.append(acc)
            history.lr.append(lr)
            history.grad_norm.append(float(grad_norm))
            if evaluate is not None and ((eval_every and step % eval_every == 0) or step == config.steps):
                model.eval()
                with torch.no_grad():
                    metrics = evaluate(model)
                model.train()
                history.evals.append((step, metrics))
                if bar is not None:
                    bar.set_postfix({k: round(v, 4) for k, v in metrics.items()}, refresh=False)
            if bar is not None:
                bar.update(1)
                if step % 10 == 0 or step == config.steps:
                    bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.3f}", refresh=False)
    finally:
        history.seconds += time.perf_counter() - start
        if bar is not None:
            bar.close()
        model.eval()
    return history


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


@torch.no_grad()
def exact_match(
    model: nn.Module,
    pairs: Sequence[tuple[str, str]],
    tokenizer: CharTokenizer,
    batch_size: int = 500,
    max_len: int | None = None,
    beam_size: int = 1,
) -> tuple[float, list[str]]:
    """Share of ``(source, target)`` pairs whose decoded output equals the target exactly.

    Decodes greedily (``beam_size=1``, :func:`~transformer_workbook.model.greedy_decode`)
    or with :func:`~transformer_workbook.generation.beam_search`.
    ``max_len`` defaults to the longest target plus one (room for ``<eos>``).
    Returns ``(accuracy, predictions)``.
    """
    from .generation import beam_search
    from .model import greedy_decode

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if max_len is None:
        max_len = max(len(t) for _, t in pairs) + 1
    predictions: list[str] = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        batch = collate_seq2seq(chunk, tokenizer).to(device)
        if beam_size == 1:
            src_mask = batch.src != tokenizer.pad_id  # (B, S): True at real tokens
            out = greedy_decode(model, batch.src, max_len, tokenizer.bos_id, tokenizer.eos_id, src_mask)
        else:
            out = beam_search(model, batch.src, beam_size, max_len, tokenizer.bos_id, tokenizer.eos_id)
        predictions += [tokenizer.decode(row) for row in out]
    model.train(was_training)
    correct = sum(p == t for p, (_, t) in zip(predictions, pairs, strict=True))
    return correct / len(pairs), predictions


@torch.no_grad()
def perplexity(
    model: nn.Module, texts: Sequence[str], tokenizer: CharTokenizer, batch_size: int = 256
) -> float:
    """Per-token perplexity of a decoder-only model on ``texts``: ``exp(mean negative log-likelihood)``.

    Each text is scored as ``<bos> x_1 ... x_n <eos>``: every character and the
    final ``<eos>`` is predicted (``n + 1`` tokens), from everything before it.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(texts), batch_size):
        batch = collate_lm(texts[i : i + batch_size], tokenizer).to(device)
        logits, targets = batch_logits(model, batch)  # (B, L, V), (B, L)
        total += label_smoothed_cross_entropy(logits, targets, 0.0, tokenizer.pad_id, "sum").item()
        count += int((targets != tokenizer.pad_id).sum())
    model.train(was_training)
    return math.exp(total / count)


# ---------------------------------------------------------------------------
# Reading loss curves
# ---------------------------------------------------------------------------

#: What a pair of loss curves can say, and what to do about it.
DIAGNOSES: dict[str, str] = {
    "healthy": "both losses fell and levelled off together: the run is done",
    "still improving": "both losses are still falling at the end: train longer (or faster)",
    "not learning": "the training loss never moved from where it started: is optimizer.step() "
                    "called, is the learning rate 0, are the parameters frozen?",
    "overfitting": "the training loss keeps falling while the validation loss turned back up: "
                   "more data, regularization (dropout, weight decay) or stop earlier",
    "diverged": "the loss blew up (to NaN, or far above its best): lower the learning rate, "
                "warm up longer, clip the gradients",
}


def synthetic_run(kind: str, steps: int = 600, evals: int = 12, seed: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss curves shaped like a real run of the given ``kind`` (a key of :data:`DIAGNOSES`).

    Returns ``(train_loss (steps,), val_loss (evals,))``, float32: a noisy
    training loss at every step, and the validation loss measured at
    ``evals`` evenly spaced steps, the last one at the last step. The loss
    starts near ``log(vocabulary)`` (2.5 to 4.5) and its shape follows the
    kind: an exponential fall that levels off early (healthy) or has not
    levelled off by the end (still improving); a flat line (not learning); a
    validation loss that turns up while the training loss keeps falling
    (overfitting); a fall, then a blow-up, sometimes to NaN (diverged). The
    levels, speeds and noise are drawn from ``seed``, so practising on one
    seed and checking on another tests the reading, not the numbers.
    """
    if kind not in DIAGNOSES:
        raise ValueError(f"kind must be one of {list(DIAGNOSES)}, got {kind!r}")
    if steps < 200 or not 5 <= evals <= steps:
        raise ValueError("need steps >= 200 and 5 <= evals <= steps")
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=f64))

    start, floor = uniform(2.5, 4.5), uniform(0.05, 0.8)
    t = torch.arange(1, steps + 1, dtype=f64)  # (steps,)
    at = torch.linspace(steps / evals, steps, evals, dtype=f64).round().long() - 1  # (evals,) step indices
    gap = uniform(0.02, 0.15)  # validation loss above the training loss

    def fall(tau: float) -> torch.Tensor:
        return floor + (start - floor) * torch.exp(-t / tau)  # (steps,)

    if kind == "healthy":
        train = fall(steps * uniform(0.05, 0.12))
        val = train[at] + gap
    elif kind == "still improving":
        train = fall(steps * uniform(0.8, 1.5))
        val = train[at] + gap
    elif kind == "not learning":
        train = start * (1 - uniform(0.0, 0.02) * t / steps)
        val = train[at] + gap
    elif kind == "overfitting":
        train = fall(steps * uniform(0.05, 0.12))
        turn = steps * uniform(0.25, 0.45)
        rise = (start - floor) * uniform(0.25, 0.5) * torch.relu(t - turn) / (steps - turn)
        val = (train + gap + rise)[at]
        train = train - 0.3 * floor * torch.relu(t - turn) / (steps - turn)  # it keeps falling
    else:  # diverged
        train = fall(steps * uniform(0.05, 0.12))
        blow = steps * uniform(0.35, 0.65)
        width = steps * uniform(0.03, 0.08)
        train = train + torch.expm1(torch.relu(t - blow) / width).clamp(max=1e4)
        if uniform(0, 1) < 0.5:  # the blow-up reaches inf, then NaN
            train = torch.where(t > blow + 6 * width, torch.full_like(train, math.nan), train)
        val = train[at] + gap
    train = train * torch.exp(uniform(0.02, 0.06) * torch.randn(steps, generator=g, dtype=f64))
    val = val * torch.exp(uniform(0.005, 0.02) * torch.randn(evals, generator=g, dtype=f64))
    return train.float(), val.float()


def diagnose_run(train_loss: torch.Tensor, val_loss: torch.Tensor) -> str:
    """Name what a pair of loss curves says: one of the keys of :data:`DIAGNOSES`.

    ``train_loss`` ``(steps,)`` is the training loss at every step (noisy);
    ``val_loss`` ``(evals,)`` the validation loss at evenly spaced steps, the
    last at the end. The rules, in order, on curves smoothed over a tenth of
    the run:

    1. a NaN or infinite loss, or a training loss that ends closer to where it
       started than to its best (it went back up more than half of what it
       had gained): ``"diverged"``;
    2. a training loss that fell by less than a fifth: ``"not learning"``;
    3. a validation loss that ends above its best by more than a tenth of
       what the training loss gained: ``"overfitting"``;
    4. a training loss still falling over the last fifth of the run (by more
       than 5% of its total fall): ``"still improving"``;
    5. otherwise ``"healthy"``.
    """
    train = torch.as_tensor(train_loss, dtype=torch.float64).flatten()  # (steps,)
    val = torch.as_tensor(val_loss, dtype=torch.float64).flatten()  # (evals,)
    if not (torch.isfinite(train).all() and torch.isfinite(val).all()):
        return "diverged"
    k = max(1, len(train) // 10)
    smooth = train.unfold(0, k, 1).mean(dim=-1)  # (steps - k + 1,): running means over k steps
    first, last, best = smooth[0], smooth[-1], smooth.min()
    gained = first - best
    if last - best > 0.5 * gained and gained > 0.2 * first:
        return "diverged"
    if gained < 0.2 * first:
        return "not learning"
    if val[-1] - val.min() > 0.1 * gained:
        return "overfitting"
    fifth = smooth[int(0.8 * (len(smooth) - 1))]
    if fifth - last > 0.05 * gained:
        return "still improving"
    return "healthy"


# ---------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------


def save_model(
    path: str | os.PathLike,
    model: nn.Module,
    config: dict,
    tokenizer: CharTokenizer | None = None,
    **extra,
) -> None:
    """Save ``model``'s weights with what is needed to rebuild it.

    ``config`` holds the keyword arguments of the model's class
    (``type(model)(**config)`` must rebuild it); the class is recorded by
    name and must live in the ``transformer_workbook`` package. The tokenizer
    (its alphabet) and any JSON-able ``extra`` (training steps, the test
    accuracy, ...) are saved too. The file loads with
    ``torch.load(weights_only=True)``: no pickled code.
    """
    cls = type(model)
    if not cls.__module__.startswith("transformer_workbook"):
        raise ValueError(f"{cls.__module__}.{cls.__qualname__} is not a class of the course's package")
    torch.save(
        {
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "config": dict(config),
            "state_dict": model.state_dict(),
            "tokenizer": None if tokenizer is None else tokenizer.to_dict(),
            "extra": extra,
        },
        path,
    )


def load_model(
    path: str | os.PathLike, device: torch.device | str | None = None
) -> tuple[nn.Module, CharTokenizer | None, dict]:
    """Rebuild a model saved by :func:`save_model`.

    Returns ``(model, tokenizer, info)``; ``info`` has the ``config`` and the
    ``extra`` values that were saved. The model is in eval mode on ``device``
    (default: :func:`default_device`).
    """
    device = default_device() if device is None else torch.device(device)
    ckpt = torch.load(path, map_location=device, weights_only=True)
    module_name, qualname = ckpt["class"].split(":")
    if not module_name.startswith("transformer_workbook"):
        raise ValueError(f"refusing to load class {ckpt['class']!r} from outside the course's package")
    cls = importlib.import_module(module_name)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    model = cls(**ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    model.to(device).eval()
    tok = None if ckpt["tokenizer"] is None else CharTokenizer.from_dict(ckpt["tokenizer"])
    return model, tok, {"config": ckpt["config"], "extra": ckpt["extra"]}


# ---------------------------------------------------------------------------
# The chapters' recipes: tuned configurations, trained in one call
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """A model shape, data sizes and a training configuration that are known to work.

    Attributes:
        model: keyword arguments of the model class (without the vocabulary sizes).
        batch_size: examples per step.
        train: keyword arguments of :class:`TrainConfig` (without ``d_model``, ``seed``).
        data: keyword arguments of the data generator (sizes of the splits).
    """

    model: dict
    batch_size: int
    train: dict
    data: dict

    def replace(self, **changes) -> Recipe:
        """A copy with some entries of ``model``, ``train``, ``data`` or ``batch_size`` changed."""
        fields = {"model": dict(self.model), "train": dict(self.train), "data": dict(self.data),
                  "batch_size": self.batch_size}  # fmt: skip
        for key, value in changes.items():
            if key == "batch_size":
                fields["batch_size"] = value
                continue
            for part in ("model", "train", "data"):
                if key in fields[part]:
                    fields[part][key] = value
                    break
            else:
                raise KeyError(f"{key!r} is not a setting of this recipe")
        return Recipe(**fields)


DATE_RECIPE = Recipe(
    model=dict(d_model=64, n_heads=4, n_layers=2, d_ff=256, dropout=0.0, norm_first=True, max_len=64),
    batch_size=64,
    train=dict(steps=2400, warmup=200, lr_factor=1.5, label_smoothing=0.1, clip_norm=1.0, average_last=600),
    data=dict(n_train=100_000, n_validation=1_000, n_test=2_000),
)
"""Chapter 8's date model and its training (see ``benchmarks/train_dates.py`` for measurements)."""

LM_RECIPE = Recipe(
    model=dict(d_model=64, n_heads=4, n_layers=2, d_ff=256, dropout=0.0, norm_first=True, max_len=256),
    batch_size=64,
    train=dict(steps=1200, warmup=100, lr_factor=1.5, label_smoothing=0.0, clip_norm=1.0, average_last=300),
    data=dict(n_train=100_000, n_validation=1_000, n_test=2_000),
)
"""Chapter 9's character-level language model (see ``benchmarks/train_lm.py``)."""


@dataclass
class Trained:
    """What :func:`train_date_model` and :func:`train_language_model` return.

    ``model_config`` rebuilds the model (``type(model)(**model_config)``, as
    :func:`save_model` stores it); ``data`` is the
    :class:`~transformer_workbook.data.DateSplits` or
    :class:`~transformer_workbook.data.TextCorpus` it was trained on.
    """

    model: nn.Module
    tokenizer: CharTokenizer
    data: object
    history: History
    model_config: dict
    config: TrainConfig


def train_date_model(
    recipe: Recipe = DATE_RECIPE,
    seed: int = 0,
    data_seed: int = 0,
    progress: bool = True,
    device: torch.device | str | None = None,
    eval_every: int | None = None,
) -> Trained:
    """Chapter 8 in one call: generate the date task, build the model, train it.

    ``data_seed`` draws the splits; ``seed`` the initialization, the order of
    the batches and dropout. With ``eval_every``, the exact match on the
    validation set is measured during training (it costs time, and changes
    nothing else). Everything is counted in steps, so the result is the same
    on a busy machine. Evaluate with :func:`exact_match` on ``data.test``.
    """
    from .data import batch_stream, date_splits, date_tokenizer
    from .model import Transformer

    device = default_device() if device is None else torch.device(device)
    splits = date_splits(seed=data_seed, **recipe.data)
    tok = date_tokenizer()
    model_config = dict(src_vocab_size=len(tok), tgt_vocab_size=len(tok), **recipe.model)
    torch.manual_seed(seed)
    model = Transformer(**model_config).to(device)
    stream = batch_stream(
        splits.train, recipe.batch_size, lambda b: collate_seq2seq(b, tok), seed=seed,
        length=lambda pair: len(pair[0]),
    )  # fmt: skip
    config = TrainConfig(d_model=recipe.model["d_model"], seed=seed, pad_id=tok.pad_id, **recipe.train)
    evaluate = None
    if eval_every:
        def evaluate(m):
            return {"val_exact_match": exact_match(m, splits.validation, tok)[0]}
    history = train(model, stream, config, evaluate, eval_every, progress, device)
    return Trained(model, tok, splits, history, model_config, config)


def train_language_model(
    recipe: Recipe = LM_RECIPE,
    seed: int = 0,
    data_seed: int = 0,
    progress: bool = True,
    device: torch.device | str | None = None,
    eval_every: int | None = None,
) -> Trained:
    """Chapter 9 in one call: generate the toy-English corpus, build a decoder-only model, train it.

    Seeds and ``eval_every`` (validation perplexity) as in :func:`train_date_model`.
    Evaluate with :func:`perplexity` on ``data.test``.
    """
    from .data import batch_stream, text_corpus, text_tokenizer
    from .model import DecoderOnlyLM

    device = default_device() if device is None else torch.device(device)
    corpus = text_corpus(seed=data_seed, **recipe.data)
    tok = text_tokenizer(corpus.grammar)
    model_config = dict(vocab_size=len(tok), **recipe.model)
    torch.manual_seed(seed)
    model = DecoderOnlyLM(**model_config).to(device)
    collate = lambda b: collate_lm(b, tok)  # noqa: E731
    stream = batch_stream(corpus.train, recipe.batch_size, collate, seed=seed, length=len)
    config = TrainConfig(d_model=recipe.model["d_model"], seed=seed, pad_id=tok.pad_id, **recipe.train)
    evaluate = None
    if eval_every:
        def evaluate(m):
            return {"val_perplexity": perplexity(m, corpus.validation, tok)}
    history = train(model, stream, config, evaluate, eval_every, progress, device)
    return Trained(model, tok, corpus, history, model_config, config)
