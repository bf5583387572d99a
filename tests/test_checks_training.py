"""Chapter 8's checks against wrong answers written the way a learner writes them.

The registry test (test_checks_registry.py) already checks that the reference
passes and that every Mistake is diagnosed as itself; here the wrong (and
right) answers are written independently: hard-coded sizes, ``except:``
everywhere, plain Python instead of tensors, unusual but right spellings.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from transformer_workbook import chapters
from transformer_workbook.exercises import check

pytestmark = pytest.mark.skipif(not chapters.get(8).available,
                                reason="the chapter's exercises load once it is available")

# ---- the warm-up schedule ---------------------------------------------------


def noam_math(step, d_model, warmup, factor=1.0):  # right: written with math.sqrt and an if
    if step <= 0:
        raise ValueError("step starts at 1")
    if step < warmup:
        return factor * step / (math.sqrt(d_model) * warmup ** 1.5)
    return factor / math.sqrt(d_model * step)


def noam_paper_hard_coded(step, d_model, warmup, factor=1.0):  # the paper's numbers pasted in
    if step < 1:
        raise ValueError
    return factor * 512 ** -0.5 * min(step ** -0.5, step * 4000 ** -1.5)


def noam_sqrt_warmup(step, d_model, warmup, factor=1.0):
    if step < 1:
        raise ValueError
    return factor * d_model ** -0.5 * min(step ** -0.5, step / math.sqrt(warmup))


def noam_from_zero(step, d_model, warmup, factor=1.0):  # a loop index used as the step
    if step < 1:
        raise ValueError
    s = step + 1
    return factor * d_model ** -0.5 * min(s ** -0.5, s * warmup ** -1.5)


def noam_except_everywhere(step, d_model, warmup, factor=1.0):  # step 0 gives 0 instead
    try:
        return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)
    except:  # noqa: E722
        return 0.0


def test_noam_right_answer_passes():
    res = check("training.noam_lr", noam_math, quiet=True)
    assert res.passed, res.message


@pytest.mark.parametrize(
    "fn,expected",
    [(noam_sqrt_warmup, "warmup-exponent"), (noam_from_zero, "off-by-one"),
     (noam_except_everywhere, "should-raise")],
)
def test_noam_learner_mistakes(fn, expected):
    res = check("training.noam_lr", fn, quiet=True)
    assert res.mistake == expected, res.message


def test_noam_hard_coded_paper_numbers_fail():
    res = check("training.noam_lr", noam_paper_hard_coded, quiet=True)
    assert not res.passed, res.message


# ---- the label-smoothed loss -------------------------------------------------


def ls_one_hot(logits, targets, smoothing, pad_id):  # right: build q explicitly
    V = logits.shape[-1]
    q = torch.full(logits.shape, smoothing / (V - 1))
    q[..., pad_id] = 0.0
    q = q * (1 - 0) + F.one_hot(targets, V) * (1 - smoothing)
    loss = -(q * torch.log_softmax(logits, -1)).sum(-1)
    mask = targets != pad_id
    return (loss * mask).sum() / mask.sum()


def ls_pytorch(logits, targets, smoothing, pad_id):  # forbidden: PyTorch does it
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=pad_id, label_smoothing=smoothing)


def ls_uniform_over_all(logits, targets, smoothing, pad_id):  # u over V tokens, pad included
    V = logits.shape[-1]
    q = F.one_hot(targets, V).float() * (1 - smoothing) + smoothing / V
    loss = torch.sum(-q * torch.log_softmax(logits, -1), dim=-1)
    keep = targets != pad_id
    return loss[keep].mean()


def ls_pad_zero(logits, targets, smoothing, pad_id):  # every example used pad 0
    logp = logits.log_softmax(-1)
    V = logits.size(-1)
    nll = -logp.gather(-1, targets[..., None])[..., 0]
    smooth = -logp[..., 1:].sum(-1) / (V - 1)
    loss = (1 - smoothing) * nll + smoothing * smooth
    keep = (targets != 0).float()
    return (loss * keep).sum() / keep.sum()


def ls_mean_everywhere(logits, targets, smoothing, pad_id):
    logp = logits.log_softmax(-1)
    V = logits.size(-1)
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    others = torch.cat([logp[..., :pad_id], logp[..., pad_id + 1:]], dim=-1)
    loss = (1 - smoothing) * nll - smoothing * others.sum(-1) / (V - 1)
    return (loss * (targets != pad_id)).mean()  # pads count in the denominator


def test_label_smoothing_right_answer_passes():
    res = check("training.label_smoothed_cross_entropy", ls_one_hot, quiet=True)
    assert res.passed, res.message


@pytest.mark.parametrize(
    "fn,expected",
    [(ls_pytorch, "forbidden-call"), (ls_uniform_over_all, "smoothing-over-padding"),
     (ls_pad_zero, "pad-id-hard-coded"),
     (ls_mean_everywhere, "mean-over-all-positions")],
)
def test_label_smoothing_learner_mistakes(fn, expected):
    res = check("training.label_smoothed_cross_entropy", fn, quiet=True)
    assert res.mistake == expected, res.message


# ---- reading a run -------------------------------------------------------------


def _avg(xs):
    return sum(xs) / len(xs)


def diagnose_plain(train_loss, val_loss):  # right: plain Python, windows of a tenth
    if any(not math.isfinite(x) for x in list(train_loss) + list(val_loss)):
        return "diverged"
    w = max(1, len(train_loss) // 10)
    means = [_avg(train_loss[i : i + w]) for i in range(len(train_loss) - w + 1)]
    start, end, best = means[0], means[-1], min(means)
    fall = start - best
    if end - best > 0.5 * fall and fall > 0.2 * start:
        return "diverged"
    if fall < 0.2 * start:
        return "not learning"
    if val_loss[-1] - min(val_loss) > 0.1 * fall:
        return "overfitting"
    if means[int(0.8 * (len(means) - 1))] - end > 0.05 * fall:
        return "still improving"
    return "healthy"


def diagnose_absolute(train_loss, val_loss):  # thresholds in absolute loss units
    t = torch.tensor(train_loss)
    v = torch.tensor(val_loss)
    if not torch.isfinite(t).all():
        return "diverged"
    if t[-20:].mean() > t[:20].mean() + 1:
        return "diverged"
    if t[:20].mean() - t[-20:].mean() < 0.3:
        return "not learning"
    if v[-1] > v.min() + 0.3:
        return "overfitting"
    if t[-60:-40].mean() - t[-20:].mean() > 0.3:
        return "still improving"
    return "healthy"


def diagnose_no_nan_check(train_loss, val_loss):
    w = max(1, len(train_loss) // 10)
    means = [_avg(train_loss[i : i + w]) for i in range(len(train_loss) - w + 1)]
    fall = means[0] - min(means)
    if means[-1] - min(means) > 0.5 * fall and fall > 0.2 * means[0]:
        return "diverged"
    if fall < 0.2 * means[0]:
        return "not learning"
    if val_loss[-1] - min(val_loss) > 0.1 * fall:
        return "overfitting"
    if means[int(0.8 * (len(means) - 1))] - means[-1] > 0.05 * fall:
        return "still improving"
    return "healthy"


def diagnose_except_everywhere(train_loss, val_loss):
    try:
        return diagnose_plain(torch.tensor(train_loss), torch.tensor(val_loss))
    except:  # noqa: E722
        return "healthy"


def test_diagnose_right_answers_pass():
    res = check("training.diagnose_run", diagnose_plain, quiet=True)
    assert res.passed, res.message
    # tensors built from the lists work as well as the lists
    res = check("training.diagnose_run", diagnose_except_everywhere, quiet=True)
    assert res.passed, res.message


def test_diagnose_nan_unhandled():
    res = check("training.diagnose_run", diagnose_no_nan_check, quiet=True)
    assert res.mistake == "nan-not-handled", res.message


def test_diagnose_absolute_thresholds_fail():
    res = check("training.diagnose_run", diagnose_absolute, quiet=True)
    assert not res.passed, res.message
