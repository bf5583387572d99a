"""Chapter 8 exercises: the warm-up schedule, the label-smoothed loss, and reading a training run.

Each known mistake is a real implementation of that mistake: the learner's
code is diagnosed with it when the two behave the same on every case.

- ``training.noam_lr``: the paper's learning-rate schedule (a transcription
  with traps: the exponents, min or max, steps counted from 1);
- ``training.label_smoothed_cross_entropy``: the loss of the chapter, where
  smoothing must leave the padding token out and padded positions must not
  count;
- ``training.diagnose_run``: not a transcription. The check hands the
  learner's function pairs of loss curves (training and validation) and the
  function names what each run says: healthy, still improving, not learning,
  overfitting or diverged. The curves are drawn by
  :func:`~transformer_workbook.training.synthetic_run`, and only clear-cut
  ones are used (a borderline run is redrawn), so any sensible reading agrees
  with the reference's rules.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .. import training as ref
from .api import register
from .core import RAISES, Case, randn
from .judging import Exercise, Mistake, Tolerance

CHAPTER = "08_training"


# ---------------------------------------------------------------------------
# training.noam_lr
# ---------------------------------------------------------------------------


def noam_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def pick(*options):
        return options[int(torch.randint(len(options), (), generator=g))]

    d1, d2, d3 = pick(16, 32, 48), pick(128, 256, 384), pick(64, 96)
    w1, w2, w3 = pick(40, 50, 60), pick(300, 400, 500), pick(1000, 1500)
    f = pick(0.5, 1.5, 2.0)
    return [
        Case("the first step", (1, d1, w1)),
        Case("during the warm-up", (w2 // 3, d2, w2)),
        Case("one step before the peak", (w1 - 1, d1, w1)),
        Case("at the peak (step == warmup)", (w1, d1, w1)),
        Case("one step after the peak", (w2 + 1, d2, w2)),
        Case("long after the peak", (17 * w3 + 5, d3, w3)),
        Case("the paper's base model, mid warm-up", (1234, 512, 4000)),
        Case("with a factor", (w2 // 2, d3, w2), {"factor": f}),
        Case("with a factor, after the peak", (3 * w1, d2, w1), {"factor": f}),
        Case("warmup=1 (no warm-up)", (9, d3, 1)),
        Case("step 0 (steps count from 1)", (0, d1, w1), tags=frozenset({RAISES})),
    ]


def _noam_warmup_sqrt(step, d_model, warmup, factor=1.0):
    if step < 1:
        raise ValueError("steps count from 1")
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-0.5)


def _noam_max(step, d_model, warmup, factor=1.0):
    if step < 1:
        raise ValueError("steps count from 1")
    return factor * d_model**-0.5 * max(step**-0.5, step * warmup**-1.5)


def _noam_no_d_model(step, d_model, warmup, factor=1.0):
    if step < 1:
        raise ValueError("steps count from 1")
    return factor * min(step**-0.5, step * warmup**-1.5)


def _noam_times_sqrt_d_model(step, d_model, warmup, factor=1.0):
    if step < 1:
        raise ValueError("steps count from 1")
    return factor * d_model**0.5 * min(step**-0.5, step * warmup**-1.5)


def _noam_factor_ignored(step, d_model, warmup, factor=1.0):
    if step < 1:
        raise ValueError("steps count from 1")
    return d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def _noam_one_step_ahead(step, d_model, warmup, factor=1.0):
    if step < 1:
        raise ValueError("steps count from 1")
    step = step + 1  # as if the step were counted from 0
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def _noam_inverse_step_decay(step, d_model, warmup, factor=1.0):
    if step < 1:
        raise ValueError("steps count from 1")
    return factor * d_model**-0.5 * min(warmup**0.5 / step, step * warmup**-1.5)


def _noam_step_zero_is_one(step, d_model, warmup, factor=1.0):
    if step == 0:  # The Annotated Transformer's `if step == 0: step = 1`
        step = 1
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


register(
    Exercise(
        id="training.noam_lr",
        title="The warm-up learning-rate schedule",
        target="noam_lr",
        chapter=CHAPTER,
        reference=ref.noam_lr,
        make_cases=noam_cases,
        points=2,
        tolerance=Tolerance(rtol=1e-6, atol=0.0),
        forbidden=("transformer_workbook.training.noam_schedule",),
        forbidden_reason="Write the formula yourself.",
        notes={"exception": "The cases differ in step, d_model, warmup and factor."},
        mistakes=[
            Mistake(
                "warmup-exponent",
                "Your warm-up branch uses warmup ** -0.5; the paper's is step * warmup ** -1.5. "
                "With -1.5 the two branches meet exactly at step == warmup (step ** -0.5 = "
                "warmup * warmup ** -1.5), so the rate rises linearly, peaks there, then decays.",
                _noam_warmup_sqrt,
            ),
            Mistake(
                "max-not-min",
                "You take the max of the two branches; the schedule is their min: the linear "
                "warm-up is the smaller one before step == warmup, the 1/sqrt(step) decay after "
                "it. With max the rate is huge at the first step and keeps growing.",
                _noam_max,
            ),
            Mistake(
                "no-d_model-scale",
                "The factor d_model ** -0.5 is missing: the paper scales the whole curve by "
                "1/sqrt(d_model), so wider models take smaller steps.",
                _noam_no_d_model,
            ),
            Mistake(
                "d_model-scale-inverted",
                "You multiply by sqrt(d_model); the paper multiplies by d_model ** -0.5, "
                "1/sqrt(d_model): wider models get a *smaller* learning rate.",
                _noam_times_sqrt_d_model,
            ),
            Mistake(
                "factor-ignored",
                "Right for factor=1, but `factor` must multiply the whole curve (the cases with "
                "a factor differ).",
                _noam_factor_ignored,
            ),
            Mistake(
                "off-by-one",
                "Your schedule is one step ahead: you return the rate of step + 1 (steps counted "
                "from 0 somewhere, then shifted again). Here steps count from 1 and the rate "
                "peaks exactly at step == warmup. (PyTorch's LambdaLR calls its function with 0 "
                "for the first step: the package's noam_schedule passes i + 1 to noam_lr, once.)",
                _noam_one_step_ahead,
            ),
            Mistake(
                "inverse-step-decay",
                "After the peak your rate falls as 1/step; the paper's decays more slowly, as "
                "1/sqrt(step) (step ** -0.5).",
                _noam_inverse_step_decay,
            ),
            Mistake(
                "step-zero-allowed",
                "Step 0 must raise a ValueError: steps count from 1, and at 0 the formula "
                "divides by zero (0 ** -0.5). Quietly treating 0 as 1 (The Annotated "
                "Transformer's `if step == 0: step = 1`) hides an off-by-one in the caller.",
                _noam_step_zero_is_one,
            ),
        ],
        hints=[
            "lr = factor * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5).",
            "Check your function at step == warmup: both branches of the min are equal there.",
            "Raise ValueError when step < 1 (Python's 0 ** -0.5 raises ZeroDivisionError, "
            "which is not the error a caller expects).",
        ],
    )
)


# ---------------------------------------------------------------------------
# training.label_smoothed_cross_entropy
# ---------------------------------------------------------------------------


def _padded_targets(g, lengths, T, V, pad_id):
    """``(B, T)`` token ids that are never ``pad_id``, then ``pad_id`` after each row's length."""
    ids = torch.randint(V - 1, (len(lengths), T), generator=g)  # (B, T): 0..V-2
    ids = ids + (ids >= pad_id).long()  # skip pad_id: every id but the padding one
    pos = torch.arange(T)
    return ids.masked_fill(pos[None, :] >= torch.tensor(lengths)[:, None], pad_id)


def smoothing_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def case(name, lengths, T, V, eps, pad_id=0, scale=2.0, tags=()):
        logits = randn(g, len(lengths), T, V, scale=scale)  # (B, T, V)
        return Case(name, (logits, _padded_targets(g, lengths, T, V, pad_id), eps, pad_id),
                    tags=frozenset(tags))

    flat_targets = _padded_targets(g, [1] * 6 + [0] * 3, 1, 13, 0)[:, 0]  # (9,): 3 padded rows
    return [
        case("a padded batch, eps=0.1", [7, 4, 2], 7, 11, 0.1),
        case("no smoothing (eps=0)", [5, 3], 5, 9, 0.0),
        case("strong smoothing, 6 tokens", [5, 5, 1], 5, 6, 0.3),
        case("padding id 8 (not 0)", [6, 2, 4, 6], 6, 9, 0.2, pad_id=8, tags={"pad-id"}),
        case("no padding at all", [4, 4], 4, 7, 0.1),
        case("large logits (scale 40)", [6, 3], 6, 10, 0.2, scale=40.0, tags={"large"}),
        Case("a flat (N, V) batch, 3 padded rows",
             (randn(g, 9, 13), flat_targets, 0.15, 0)),
        case("one row almost all padding", [8, 1], 8, 5, 0.1),
    ]


def _ls_smoothing_over_padding(logits, targets, smoothing, pad_id):
    logp = F.log_softmax(logits.float(), dim=-1)  # (..., V)
    keep = targets != pad_id  # (...)
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (...)
    uniform = -logp.mean(dim=-1)  # (...): eps spread over all V tokens, padding included
    loss = ((1 - smoothing) * nll + smoothing * uniform) * keep
    return loss.sum() / keep.sum()


def _ls_padding_not_ignored(logits, targets, smoothing, pad_id):
    logp = F.log_softmax(logits.float(), dim=-1)  # (..., V)
    V = logits.size(-1)
    not_pad = torch.arange(V) != pad_id
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (...): padded positions too
    uniform = -logp[..., not_pad].sum(dim=-1) / (V - 1)
    return ((1 - smoothing) * nll + smoothing * uniform).mean()


def _ls_mean_over_all_positions(logits, targets, smoothing, pad_id):
    logp = F.log_softmax(logits.float(), dim=-1)  # (..., V)
    V = logits.size(-1)
    not_pad = torch.arange(V) != pad_id
    keep = targets != pad_id
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    uniform = -logp[..., not_pad].sum(dim=-1) / (V - 1)
    loss = ((1 - smoothing) * nll + smoothing * uniform) * keep
    return loss.sum() / targets.numel()  # padded positions are 0 but still counted


def _ls_annotated_transformer(logits, targets, smoothing, pad_id):
    logp = F.log_softmax(logits.float(), dim=-1)  # (..., V)
    V = logits.size(-1)
    q = torch.full_like(logp, smoothing / (V - 2))  # neither the true token nor padding
    q.scatter_(-1, targets.unsqueeze(-1), 1 - smoothing)
    q[..., pad_id] = 0
    keep = targets != pad_id
    loss = -(q * logp).sum(dim=-1) * keep
    return loss.sum() / keep.sum()


def _ls_target_distribution(logp, targets, smoothing, pad_id):
    V = logp.size(-1)
    q = torch.full_like(logp, smoothing / (V - 1))
    q[..., pad_id] = 0
    return q.scatter_add(-1, targets.unsqueeze(-1), torch.full_like(logp[..., :1], 1 - smoothing))


def _ls_kl_divergence(logits, targets, smoothing, pad_id):
    logp = F.log_softmax(logits.float(), dim=-1)  # (..., V)
    q = _ls_target_distribution(logp, targets, smoothing, pad_id)
    keep = targets != pad_id
    kl = (torch.xlogy(q, q) - q * logp).sum(dim=-1) * keep  # KL(q || p) = CE - H(q)
    return kl.sum() / keep.sum()


def _ls_no_smoothing(logits, targets, smoothing, pad_id):
    logp = F.log_softmax(logits.float(), dim=-1)
    keep = targets != pad_id
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * keep
    return nll.sum() / keep.sum()


def _ls_full_confidence(logits, targets, smoothing, pad_id):
    logp = F.log_softmax(logits.float(), dim=-1)
    V = logits.size(-1)
    not_pad = torch.arange(V) != pad_id
    keep = targets != pad_id
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    uniform = -logp[..., not_pad].sum(dim=-1) / (V - 1)
    loss = (nll + smoothing * uniform) * keep  # 1, not 1 - eps, on the true token
    return loss.sum() / keep.sum()


def _ls_log_of_softmax(logits, targets, smoothing, pad_id):
    logp = torch.log(torch.softmax(logits.float(), dim=-1))  # -inf where a probability underflows
    q = _ls_target_distribution(logp, targets, smoothing, pad_id)
    keep = targets != pad_id
    loss = -(q * logp).sum(dim=-1) * keep
    return loss.sum() / keep.sum()


def _ls_sum(logits, targets, smoothing, pad_id):
    logp = F.log_softmax(logits.float(), dim=-1)
    q = _ls_target_distribution(logp, targets, smoothing, pad_id)
    keep = targets != pad_id
    return (-(q * logp).sum(dim=-1) * keep).sum()


def _ls_pad_id_zero(logits, targets, smoothing, pad_id):
    pad_id = 0  # whatever the caller said
    logp = F.log_softmax(logits.float(), dim=-1)
    q = _ls_target_distribution(logp, targets, smoothing, pad_id)
    keep = targets != pad_id
    loss = -(q * logp).sum(dim=-1) * keep
    return loss.sum() / keep.sum()


register(
    Exercise(
        id="training.label_smoothed_cross_entropy",
        title="Label-smoothed cross-entropy that ignores padding",
        target="label_smoothed_cross_entropy",
        chapter=CHAPTER,
        reference=ref.label_smoothed_cross_entropy,
        make_cases=smoothing_cases,
        points=3,
        forbidden=("torch.nn.functional.cross_entropy", "torch.nn.CrossEntropyLoss",
                   "torch.nn.functional.kl_div", "torch.nn.KLDivLoss"),
        forbidden_reason="Build the smoothed target distribution yourself.",
        notes={"exception": "The cases differ in the batch, the length, the vocabulary, eps and "
                            "pad_id; one is a flat (N, V) batch."},
        mistakes=[
            Mistake(
                "smoothing-over-padding",
                "You spread eps over all V tokens, the padding token included (that is what "
                "`F.cross_entropy(..., label_smoothing=eps)` does). Padding is never a right "
                "answer: spread eps over the V - 1 other tokens, so the model may give padding "
                "probability 0.",
                _ls_smoothing_over_padding,
            ),
            Mistake(
                "padding-not-ignored",
                "Padded positions count in your loss: their target is the padding token, so the "
                "model is trained to predict padding after every sequence, and the mean includes "
                "them. Mask them out (`keep = targets != pad_id`) and average over the real "
                "positions only.",
                _ls_padding_not_ignored,
            ),
            Mistake(
                "mean-over-all-positions",
                "You zero the padded positions but divide by every position: the mean must be "
                "over the real (non-padding) positions only, `loss.sum() / keep.sum()`, or the "
                "loss shrinks with the amount of padding in the batch.",
                _ls_mean_over_all_positions,
            ),
            Mistake(
                "annotated-transformer",
                "This is The Annotated Transformer's smoothing: 1 - eps on the true token and "
                "eps / (V - 2) on the others, the true token excluded. Here (as in the paper's "
                "formula and PyTorch's label_smoothing) the target is (1 - eps) * onehot + eps * "
                "u with u uniform over every token but padding, the true token included: eps / "
                "(V - 1) each.",
                _ls_annotated_transformer,
            ),
            Mistake(
                "kl-divergence",
                "You compute the KL divergence KL(q || p), not the cross-entropy: they differ by "
                "the entropy of q, a constant that does not change the gradients but does change "
                "the value (with smoothing, a perfect model's KL is 0 but its cross-entropy is "
                "not). Return -sum(q * log p).",
                _ls_kl_divergence,
            ),
            Mistake(
                "no-smoothing",
                "Right without smoothing, but `smoothing` has no effect in your loss: the "
                "target must be (1 - eps) on the true token plus eps spread over the tokens.",
                _ls_no_smoothing,
            ),
            Mistake(
                "full-confidence",
                "Your target puts 1 on the true token and adds eps on top: its probabilities "
                "sum to 1 + eps. Take eps from the true token: (1 - eps) * onehot + eps * u.",
                _ls_full_confidence,
            ),
            Mistake(
                "log-of-softmax",
                "With large logits your loss is inf: log(softmax(x)) underflows to log(0) = -inf "
                "for unlikely tokens, and smoothing puts weight on every token. Use "
                "`F.log_softmax`, which computes the log-probabilities stably.",
                _ls_log_of_softmax,
            ),
            Mistake(
                "sum-not-mean",
                "You return the sum over the positions; return the mean over the real "
                "(non-padding) positions, so the loss does not grow with the batch.",
                _ls_sum,
            ),
            Mistake(
                "pad-id-hard-coded",
                "Right when pad_id is 0, but your code uses 0 for the padding token whatever "
                "`pad_id` says: use the argument.",
                _ls_pad_id_zero,
            ),
        ],
        hints=[
            "Take `logp = F.log_softmax(logits, dim=-1)`; the loss at one position is "
            "-sum over tokens of q(token) * logp(token).",
            "q = (1 - eps) on the true token plus eps / (V - 1) on every token except padding "
            "(the true token included): build it with torch.full_like, set the padding column "
            "to 0, then add 1 - eps at the target with scatter_add.",
            "Mask the padded positions: `keep = targets != pad_id`; return "
            "`(loss * keep).sum() / keep.sum()`.",
        ],
    )
)


# ---------------------------------------------------------------------------
# training.diagnose_run
# ---------------------------------------------------------------------------

KINDS = tuple(ref.DIAGNOSES)


def readings(train_loss: torch.Tensor, val_loss: torch.Tensor) -> dict[str, float]:
    """The numbers :func:`~transformer_workbook.training.diagnose_run`'s rules read, for a finite run.

    ``gained`` (the smoothed training loss's fall, over its start), ``back``
    (how far it went back up, over the fall), ``val_rise`` (the validation
    loss's rise above its best, over the training fall), ``slope`` (the fall
    over the last fifth, over the whole fall).
    """
    train = train_loss.double()
    val = val_loss.double()
    k = max(1, len(train) // 10)
    smooth = train.unfold(0, k, 1).mean(dim=-1)
    gained = float(smooth[0] - smooth.min())
    return {
        "gained": gained / float(smooth[0]),
        "back": float(smooth[-1] - smooth.min()) / gained,
        "val_rise": float(val[-1] - val.min()) / gained,
        "slope": float(smooth[int(0.8 * (len(smooth) - 1))] - smooth[-1]) / gained,
    }


def _clear_cut(kind: str, train: torch.Tensor, val: torch.Tensor, nan: bool) -> bool:
    """Whether a run reads as ``kind`` far from every threshold (so any sensible reading agrees)."""
    finite = bool(torch.isfinite(train).all() and torch.isfinite(val).all())
    if kind == "diverged":
        return (not finite) if nan else (finite and readings(train, val)["back"] > 5)
    if not finite:
        return False
    r = readings(train, val)
    if kind == "not learning":
        return r["gained"] < 0.08
    if r["gained"] < 0.35 or r["back"] > 0.1:
        return False
    if kind == "overfitting":
        return r["val_rise"] > 0.25 and r["slope"] < 0.03
    if r["val_rise"] > 0.04:
        return False
    if kind == "still improving":
        return r["slope"] > 0.09
    return r["slope"] < 0.025  # healthy


def example_run(kind: str, steps: int, evals: int, seed: int, nan: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """A clear-cut :func:`~transformer_workbook.training.synthetic_run` of ``kind``.

    Redraws (seeds ``seed``, ``seed + 1000``, ...) until the run reads as
    ``kind`` far from every threshold; for ``"diverged"``, ``nan`` asks for a
    run that ends in NaN (else one that stays finite).
    """
    for attempt in range(200):
        train, val = ref.synthetic_run(kind, steps, evals, seed=seed + 1000 * attempt)
        if _clear_cut(kind, train, val, nan):
            return train, val
    raise RuntimeError(f"no clear-cut {kind!r} run for seed {seed}")  # pragma: no cover


@dataclasses.dataclass
class RunCase(Case):
    """A case of ``training.diagnose_run``: two loss curves as lists of floats.

    Lists, as a training loop records them (``History.loss``), not tensors;
    described by their lengths, not their 200 to 1500 values.
    """

    def describe(self) -> str:
        train, val = self.args
        return f"{self.name} (a training loss of {len(train)} values, a validation loss of {len(val)})"


def diagnose_cases(seed: int) -> list[Case]:
    """Ten runs, two of each kind, in an order drawn from ``seed`` (so the order tells nothing)."""
    g = torch.Generator().manual_seed(seed)
    sizes = [(200, 5), (300, 10), (450, 9), (600, 12), (800, 16), (1000, 20), (1200, 8),
             (1500, 30), (250, 25), (700, 7)]
    order = torch.randperm(len(sizes), generator=g).tolist()
    plan = [(kind, i) for kind in KINDS for i in range(2)]
    runs = []
    for j, ((kind, i), k) in enumerate(zip(plan, order, strict=True)):
        steps, evals = sizes[k]
        train, val = example_run(kind, steps, evals, seed=1 + 100 * seed + j, nan=(i == 0))
        runs.append((k, steps, evals, train, val))
    runs.sort(key=lambda r: r[0])
    return [
        RunCase(f"run {n + 1}: {steps} steps, {evals} validation points", (train.tolist(), val.tolist()))
        for n, (_, steps, evals, train, val) in enumerate(runs)
    ]


def _smooth(train):
    k = max(1, len(train) // 10)
    return train.unfold(0, k, 1).mean(dim=-1)


def _tensors(train_loss, val_loss):
    return torch.tensor(train_loss, dtype=torch.float64), torch.tensor(val_loss, dtype=torch.float64)


def _diagnose_ignoring_validation(train_loss, val_loss):
    train_loss, val_loss = _tensors(train_loss, val_loss)
    if not torch.isfinite(train_loss).all():
        return "diverged"
    s = _smooth(train_loss)
    gained = s[0] - s.min()
    if s[-1] - s.min() > 0.5 * gained and gained > 0.2 * s[0]:
        return "diverged"
    if gained < 0.2 * s[0]:
        return "not learning"
    if s[int(0.8 * (len(s) - 1))] - s[-1] > 0.05 * gained:
        return "still improving"
    return "healthy"


def _diagnose_start_and_end_only(train_loss, val_loss):
    train_loss, val_loss = _tensors(train_loss, val_loss)
    if not (torch.isfinite(train_loss).all() and torch.isfinite(val_loss).all()):
        return "diverged"
    s = _smooth(train_loss)
    gained = s[0] - s.min()
    if s[-1] - s.min() > 0.5 * gained and gained > 0.2 * s[0]:
        return "diverged"
    if gained < 0.2 * s[0]:
        return "not learning"
    if val_loss[-1] - val_loss.min() > 0.1 * gained:
        return "overfitting"
    return "healthy"  # never looks at how the loss ends: "still improving" is never said


def _diagnose_overfitting_first(train_loss, val_loss):
    train_loss, val_loss = _tensors(train_loss, val_loss)
    if not (torch.isfinite(train_loss).all() and torch.isfinite(val_loss).all()):
        return "diverged"
    s = _smooth(train_loss)
    gained = s[0] - s.min()
    if val_loss[-1] - val_loss.min() > 0.1 * gained:
        return "overfitting"  # before asking whether the training loss blew up too
    if s[-1] - s.min() > 0.5 * gained and gained > 0.2 * s[0]:
        return "diverged"
    if gained < 0.2 * s[0]:
        return "not learning"
    if s[int(0.8 * (len(s) - 1))] - s[-1] > 0.05 * gained:
        return "still improving"
    return "healthy"


def _diagnose_nan_unhandled(train_loss, val_loss):
    train_loss, val_loss = _tensors(train_loss, val_loss)
    s = _smooth(train_loss)  # NaN in, NaN out: every comparison below is then False
    gained = s[0] - s.min()
    if s[-1] - s.min() > 0.5 * gained and gained > 0.2 * s[0]:
        return "diverged"
    if gained < 0.2 * s[0]:
        return "not learning"
    if val_loss[-1] - val_loss.min() > 0.1 * gained:
        return "overfitting"
    if s[int(0.8 * (len(s) - 1))] - s[-1] > 0.05 * gained:
        return "still improving"
    return "healthy"


register(
    Exercise(
        id="training.diagnose_run",
        title="Read a training run from its loss curves",
        target="diagnose_run",
        chapter=CHAPTER,
        reference=ref.diagnose_run,
        make_cases=diagnose_cases,
        points=3,
        notes={"exception": "The runs differ in length (200 to 1500 steps), in the number of "
                            "validation points (5 to 30), and some contain NaN."},
        mistakes=[
            Mistake(
                "ignores-validation",
                "You never say \"overfitting\": your function reads the training loss only. "
                "Overfitting shows in the validation loss alone, which turns back up while the "
                "training loss keeps falling: compare the validation loss's last value with its "
                "best.",
                _diagnose_ignoring_validation,
            ),
            Mistake(
                "start-and-end-only",
                "You never say \"still improving\": comparing where the loss started with where "
                "it ended cannot tell a run that levelled off from one still falling fast. Look "
                "at the end of the curve: how much did the (smoothed) loss fall over the last "
                "fifth of the run, compared with its whole fall?",
                _diagnose_start_and_end_only,
            ),
            Mistake(
                "overfitting-before-divergence",
                "A run whose training loss blew up is \"diverged\", even though its validation "
                "loss rose too: you test for overfitting first. Overfitting means the training "
                "loss keeps *falling* while the validation loss rises; check the training loss "
                "for a blow-up before looking at the validation loss.",
                _diagnose_overfitting_first,
            ),
            Mistake(
                "nan-not-handled",
                "Runs whose loss became NaN come out \"healthy\" (every comparison with NaN is "
                "False, so they fall through your tests). A NaN or infinite loss means the run "
                "blew up: test `torch.isfinite(...).all()` first and answer \"diverged\".",
                _diagnose_nan_unhandled,
            ),
        ],
        hints=[
            "Smooth the training loss first (a running mean over a tenth of the run): single "
            "steps are noisy.",
            "Test in this order: NaN or a blow-up (diverged); barely moved (not learning); "
            "validation turned up (overfitting); still falling at the end (still improving); "
            "otherwise healthy.",
            "Use ratios, never absolute losses: the runs start anywhere between 2.5 and 4.5 "
            "and end anywhere between 0.05 and 2. For example, compare the fall over the last "
            "fifth of the run with the whole fall.",
        ],
    )
)


def example_runs(seed: int = 0) -> list[tuple[str, list[float], list[float]]]:
    """Labelled practice runs, ``(kind, train_loss, val_loss)``: two of each kind.

    Drawn like the check's runs, from other seeds (the check's are not shown),
    and handed over as the check hands them: lists of floats.
    """
    out = []
    for i, kind in enumerate(KINDS):
        for j, (steps, evals) in enumerate(((400, 10), (900, 15))):
            train, val = example_run(kind, steps, evals, seed=10_000 + 97 * seed + 10 * i + j,
                                     nan=(j == 0))
            out.append((kind, train.tolist(), val.tolist()))
    return out

