"""Chapter 9 exercises: top-k and top-p filtering, and sampling with a temperature.

Each known mistake is a real implementation of that mistake: the learner's
code is diagnosed with it when the two behave the same on every case.

The filters are checked value by value (the kept logits unchanged, the others
``-inf``). Sampling is random, so ``training.sample_with_temperature`` is
checked on **distributions**, never on single draws: each case calls the
learner's function once on thousands of copies of a few rows of logits, with a
``torch.Generator`` seeded by the case, and the check compares the frequency
of every token with the reference's (a correct sampler written another way,
e.g. the Gumbel-max trick, draws other tokens but the same frequencies, within
0.05; every known mistake is off by far more). One case calls the function
twice with two generators seeded alike: the draws must be equal (the function
must draw from the generator it is given).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .. import generation as ref
from .api import register
from .core import RAISES, Case, randn
from .judging import Exercise, Mistake, Tolerance

CHAPTER = "09_generation"

#: The filters return logits: kept ones exactly, removed ones -inf.
FILTER_TOLERANCE = Tolerance(rtol=1e-6, atol=1e-6)


def _distinct_logits(g: torch.Generator, *shape: int, scale: float = 2.0) -> torch.Tensor:
    """Random logits with no two equal in a row (ties would make "the k largest" ambiguous)."""
    x = randn(g, *shape, scale=scale)
    return x + torch.arange(shape[-1]) * 1e-3  # (..., V): breaks any exact tie


# ---------------------------------------------------------------------------
# generation.top_k_filter
# ---------------------------------------------------------------------------


def top_k_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    masked = _distinct_logits(g, 2, 9)
    masked[0, 3] = masked[1, 0] = masked[1, 5] = float("-inf")  # already filtered
    return [
        Case("a batch of rows, k=3", (_distinct_logits(g, 4, 10), 3)),
        Case("one row (V,), k=5", (_distinct_logits(g, 12), 5)),
        Case("(B, L, V) logits, k=2", (_distinct_logits(g, 2, 3, 7), 2)),
        Case("k=1", (_distinct_logits(g, 3, 8), 1)),
        Case("k = V - 1", (_distinct_logits(g, 2, 6), 5)),
        Case("k = V keeps everything", (_distinct_logits(g, 2, 6), 6)),
        Case("k larger than the vocabulary", (_distinct_logits(g, 3, 5), 9), tags=frozenset({"big-k"})),
        Case("rows with -inf already in them, k=4", (masked, 4)),
        Case("k=0 is invalid", (_distinct_logits(g, 2, 5), 0), tags=frozenset({RAISES})),
    ]


def _kept(logits, keep):
    return logits.masked_fill(~keep, float("-inf"))


def _top_k_plus_one(logits, k):
    if k < 1:
        raise ValueError("k >= 1")
    if k + 1 >= logits.size(-1):
        return logits.clone()
    kth = logits.topk(k + 1, dim=-1).values[..., -1:]  # (..., 1): one too many
    return _kept(logits, logits >= kth)


def _top_k_strictly_greater(logits, k):
    if k < 1:
        raise ValueError("k >= 1")
    if k >= logits.size(-1):
        return logits.clone()
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest
    return _kept(logits, logits > kth)  # drops the k-th itself: k - 1 kept


def _top_k_zero(logits, k):
    if k < 1:
        raise ValueError("k >= 1")
    if k >= logits.size(-1):
        return logits.clone()
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, 0.0)  # a logit of 0 is not a probability of 0


def _top_k_probabilities(logits, k):
    if k < 1:
        raise ValueError("k >= 1")
    probs = torch.softmax(logits, dim=-1)
    if k < logits.size(-1):
        kth = probs.topk(k, dim=-1).values[..., -1:]
        probs = probs.masked_fill(probs < kth, 0.0)
    return probs / probs.sum(dim=-1, keepdim=True)


def _top_k_probabilities_not_renormalized(logits, k):
    if k < 1:
        raise ValueError("k >= 1")
    probs = torch.softmax(logits, dim=-1)
    if k < logits.size(-1):
        kth = probs.topk(k, dim=-1).values[..., -1:]
        probs = probs.masked_fill(probs < kth, 0.0)
    return probs  # the kept probabilities no longer sum to 1


def _top_k_smallest(logits, k):
    if k < 1:
        raise ValueError("k >= 1")
    if k >= logits.size(-1):
        return logits.clone()
    idx = logits.topk(k, dim=-1, largest=False).indices
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, idx, True)
    return _kept(logits, keep)


def _top_k_whole_tensor(logits, k):
    if k < 1:
        raise ValueError("k >= 1")
    if k >= logits.numel():
        return logits.clone()
    kth = logits.flatten().topk(k).values[-1]  # the k largest of the whole batch, not of each row
    return _kept(logits, logits >= kth)


def _top_k_no_guard(logits, k):
    if k < 1:
        raise ValueError("k >= 1")
    idx = logits.topk(k, dim=-1).indices  # RuntimeError when k > V
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, idx, True)
    return _kept(logits, keep)


register(
    Exercise(
        id="generation.top_k_filter",
        title="Top-k filtering",
        target="top_k_filter",
        chapter=CHAPTER,
        reference=ref.top_k_filter,
        make_cases=top_k_cases,
        points=2,
        tolerance=FILTER_TOLERANCE,
        forbidden=("transformer_workbook.generation.transform_logits",),
        forbidden_reason="Write the filter yourself.",
        notes={"exception": "The cases differ in the shape of the logits ((V,), (B, V), (B, L, V)) "
                            "and in k (1, V - 1, V, more than V)."},
        mistakes=[
            Mistake(
                "keeps-k-plus-one",
                "You keep k + 1 tokens: the k-th largest logit is `logits.topk(k).values[..., -1]` "
                "(index k - 1), not index k.",
                _top_k_plus_one,
            ),
            Mistake(
                "keeps-k-minus-one",
                "You keep k - 1 tokens: comparing with the k-th largest logit using `>` drops "
                "that token itself. Keep the logits `>=` the k-th largest (or scatter the topk "
                "indices into a mask).",
                _top_k_strictly_greater,
            ),
            Mistake(
                "zero-not-minus-inf",
                "You set the removed logits to 0. A logit of 0 is not a probability of 0: after "
                "the softmax that token still gets exp(0) / sum. Use float('-inf'), whose exp is "
                "exactly 0.",
                _top_k_zero,
            ),
            Mistake(
                "returns-probabilities",
                "You return probabilities (softmax, filtered, renormalized); the filter must "
                "return *logits*, with -inf for the removed tokens, so that it can be chained "
                "with the temperature and top-p and a softmax comes last.",
                _top_k_probabilities,
            ),
            Mistake(
                "probabilities-not-renormalized",
                "You return the softmax's probabilities with the removed ones set to 0, and the "
                "kept ones no longer sum to 1 (they were never renormalized). Return *logits* "
                "instead, with -inf for the removed tokens: the softmax afterwards renormalizes "
                "by itself.",
                _top_k_probabilities_not_renormalized,
            ),
            Mistake(
                "keeps-smallest",
                "You keep the k *smallest* logits (`largest=False`): top-k keeps the k most "
                "likely tokens.",
                _top_k_smallest,
            ),
            Mistake(
                "whole-batch",
                "You keep the k largest logits of the whole tensor; keep the k largest of each "
                "row (along the last dimension): every row is its own next-token distribution.",
                _top_k_whole_tensor,
            ),
            Mistake(
                "k-larger-than-vocabulary",
                "Your function fails when k is larger than the vocabulary (torch.topk refuses "
                "k > V). Then every token is in the top k: return the logits unchanged.",
                _top_k_no_guard,
            ),
        ],
        hints=[
            "`logits.topk(k, dim=-1)` gives the k largest values and their indices along the "
            "last dimension.",
            "Build a bool mask of the kept tokens (e.g. scatter the indices into zeros), then "
            "`logits.masked_fill(~keep, float('-inf'))`: a new tensor, the input untouched.",
            "k >= V keeps everything; k < 1 is an error (raise ValueError).",
        ],
    )
)


# ---------------------------------------------------------------------------
# generation.top_p_filter
# ---------------------------------------------------------------------------


P_ONE = "p-one"


def top_p_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # Exact probabilities 0.5, 0.3, 0.15, 0.05 in a shuffled order: p = 0.75 is crossed by
    # the second most likely token, which must be kept (kept mass 0.8 >= 0.75).
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])[torch.randperm(4, generator=g)]
    exact = probs.log()[None, :]  # (1, 4)
    return [
        Case("a batch of rows, p=0.9", (_distinct_logits(g, 4, 10), 0.9)),
        Case("one row (V,), p=0.5", (_distinct_logits(g, 12), 0.5)),
        Case("(B, L, V) logits, p=0.8", (_distinct_logits(g, 2, 3, 8), 0.8)),
        Case("probabilities 0.5, 0.3, 0.15, 0.05 (shuffled), p=0.75", (exact, 0.75)),
        Case("peaked rows, p=0.95", (_distinct_logits(g, 3, 9, scale=4.0), 0.95)),
        Case("a tiny p=0.01", (_distinct_logits(g, 3, 7), 0.01)),
        # `cumsum < p` at p = 1 drops the last token or not as float rounding has it
        # (a sum of 0.99999994 or 1.0000001): the drops-crossing mistakes ignore this case.
        Case("p=1 keeps everything", (_distinct_logits(g, 2, 6), 1.0), tags=frozenset({P_ONE})),
        Case("p=0 is invalid", (_distinct_logits(g, 2, 5), 0.0), tags=frozenset({RAISES})),
        Case("p=1.5 is invalid", (_distinct_logits(g, 2, 5), 1.5), tags=frozenset({RAISES})),
    ]


def _check_p(p):
    if not 0 < p <= 1:
        raise ValueError("0 < p <= 1")


def _unsort(keep_sorted, order):
    return torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)


def _top_p_drops_crossing(logits, p):
    _check_p(p)
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep_sorted = sorted_probs.cumsum(dim=-1) < p  # the token that crosses p is dropped
    return _kept(logits, _unsort(keep_sorted, order))


def _top_p_drops_crossing_keeps_top(logits, p):
    _check_p(p)
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep_sorted = sorted_probs.cumsum(dim=-1) < p
    keep_sorted[..., 0] = True  # at least the most likely token
    return _kept(logits, _unsort(keep_sorted, order))


def _top_p_ascending(logits, p):
    _check_p(p)
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1)  # least likely first
    keep_sorted = sorted_probs.cumsum(dim=-1) - sorted_probs < p
    return _kept(logits, _unsort(keep_sorted, order))


def _top_p_not_unsorted(logits, p):
    _check_p(p)
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, _ = probs.sort(dim=-1, descending=True)
    keep_sorted = sorted_probs.cumsum(dim=-1) - sorted_probs < p
    return _kept(logits, keep_sorted)  # positions in the sorted order used as token ids


def _top_p_no_softmax(logits, p):
    _check_p(p)
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    keep_sorted = sorted_logits.cumsum(dim=-1) - sorted_logits < p  # logits are not probabilities
    return _kept(logits, _unsort(keep_sorted, order))


def _top_p_zero(logits, p):
    _check_p(p)
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep_sorted = sorted_probs.cumsum(dim=-1) - sorted_probs < p
    return logits.masked_fill(~_unsort(keep_sorted, order), 0.0)


register(
    Exercise(
        id="generation.top_p_filter",
        title="Top-p (nucleus) filtering",
        target="top_p_filter",
        chapter=CHAPTER,
        reference=ref.top_p_filter,
        make_cases=top_p_cases,
        points=3,
        tolerance=FILTER_TOLERANCE,
        forbidden=("transformer_workbook.generation.transform_logits",),
        forbidden_reason="Write the filter yourself.",
        notes={"exception": "The cases differ in the shape of the logits ((V,), (B, V), (B, L, V)) "
                            "and in p (tiny, 0.5 to 0.95, 1)."},
        mistakes=[
            Mistake(
                "drops-crossing-token",
                "You drop the token that crosses p (`cumsum < p`), so the kept probability is "
                "*below* p, and when the most likely token alone has more than p you keep "
                "nothing at all. The nucleus is the smallest set whose probability *reaches* p: "
                "keep a token when the probability of the tokens before it is still below p "
                "(`cumsum - probs < p`).",
                _top_p_drops_crossing,
                ignore_tags=frozenset({P_ONE}),
            ),
            Mistake(
                "drops-crossing-token-keeps-top",
                "You always keep the most likely token (good), but you drop the token that "
                "crosses p (`cumsum < p`), so the kept probability is below p. Keep a token when "
                "the probability of the tokens *before* it is still below p (`cumsum - probs < "
                "p`): the crossing token is in the nucleus.",
                _top_p_drops_crossing_keeps_top,
                ignore_tags=frozenset({P_ONE}),
            ),
            Mistake(
                "ascending-order",
                "You sort the probabilities in ascending order, so you keep the *least* likely "
                "tokens: sort descending (`descending=True`), most likely first.",
                _top_p_ascending,
            ),
            Mistake(
                "mask-not-unsorted",
                "Your mask is in sorted order, but you apply it to the logits in token order: "
                "position i of the sorted mask belongs to token `order[i]`. Put it back with "
                "`keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)`.",
                _top_p_not_unsorted,
            ),
            Mistake(
                "no-softmax",
                "You accumulate the logits themselves; p is a probability: take the softmax "
                "first, then the cumulative sum of the sorted probabilities.",
                _top_p_no_softmax,
            ),
            Mistake(
                "zero-not-minus-inf",
                "You set the removed logits to 0. A logit of 0 is not a probability of 0: after "
                "the softmax that token still gets exp(0) / sum. Use float('-inf').",
                _top_p_zero,
            ),
        ],
        hints=[
            "Take the softmax, then sort the probabilities in descending order "
            "(`probs.sort(dim=-1, descending=True)` also gives the order).",
            "A token is in the nucleus when the tokens more likely than it add up to less than "
            "p: `cumsum - sorted_probs < p`. The most likely token is always in it.",
            "Scatter the sorted mask back to token order, then "
            "`logits.masked_fill(~keep, float('-inf'))`. Raise ValueError unless 0 < p <= 1.",
        ],
    )
)


# ---------------------------------------------------------------------------
# generation.sample_with_temperature
# ---------------------------------------------------------------------------

#: Copies of the logits each distribution case samples at once.
DRAWS = 5000


@dataclasses.dataclass
class SamplingCase(Case):
    """A case of ``sample_with_temperature``: logits and a temperature, how to call, a seed.

    ``mode`` is ``"distribution"`` (call once on :data:`DRAWS` copies of the
    logits, compare the tokens' frequencies), ``"reproducible"`` (call twice
    on those copies, with generators seeded alike: the draws must be equal)
    or ``"raises"`` (the temperature is invalid).
    """

    mode: str = "distribution"
    seed: int = 0

    def describe(self) -> str:
        logits, temperature = self.args
        shape = tuple(logits.shape)
        if self.mode != "raises":
            return (f"{self.name} ({DRAWS} copies of logits of shape {shape}, "
                    f"temperature={temperature!r})")
        return f"{self.name} (logits of shape {shape}, temperature={temperature!r})"


def _draws_checked(out, logits_shape):
    """The draws, or a ValueError saying what is wrong with them."""
    want = tuple(logits_shape[:-1])
    V = logits_shape[-1]
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"sample_with_temperature must return a tensor of token ids; got "
                         f"{type(out).__name__}")
    if tuple(out.shape) != want:
        extra = (" (torch.multinomial returns (N, 1): squeeze the last dimension, or reshape to "
                 "the logits' shape without its last dimension)") if out.shape[-1:] == (1,) else ""
        raise ValueError(f"sample_with_temperature must return one token id per row of logits: "
                         f"shape {want} for logits of shape {tuple(logits_shape)}; got shape "
                         f"{tuple(out.shape)}{extra}")
    if out.is_floating_point() or out.dtype == torch.bool:
        raise ValueError(f"sample_with_temperature must return integer token ids (int64); got "
                         f"{out.dtype}")
    if out.numel() and (out.min() < 0 or out.max() >= V):
        raise ValueError(f"token ids must be in 0..{V - 1}; got {int(out.min())}..{int(out.max())}")
    return out.long()


def sample_call(fn, case: SamplingCase):
    """Run the learner's sampler on a case: token frequencies, reproducibility, or the raise."""
    logits, temperature = case.args

    def draw(x):
        return fn(x, temperature, generator=torch.Generator().manual_seed(case.seed))

    if case.mode == "raises":
        return draw(logits)
    many = logits.unsqueeze(0).repeat(DRAWS, *([1] * logits.dim()))  # (DRAWS, ..., V)
    tokens = _draws_checked(draw(many), many.shape)  # (DRAWS, ...)
    if case.mode == "reproducible":
        again = _draws_checked(draw(many), many.shape)
        return torch.tensor(bool(torch.equal(tokens, again)))
    return F.one_hot(tokens, logits.size(-1)).double().mean(dim=0)  # (..., V): frequencies


def sampling_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    s = 1000 * seed
    return [
        SamplingCase("3 rows, T=1", (randn(g, 3, 6, scale=1.5), 1.0), seed=s + 1),
        SamplingCase("3 rows, a sharp T=0.5", (randn(g, 3, 8, scale=1.5), 0.5), seed=s + 2),
        SamplingCase("2 rows, a flat T=2", (randn(g, 2, 5, scale=2.0), 2.0), seed=s + 3),
        SamplingCase("one row (V,), T=0.7", (randn(g, 10, scale=1.5), 0.7), seed=s + 4),
        SamplingCase("(B, L, V) logits, T=1.3", (randn(g, 2, 2, 4, scale=1.5), 1.3), seed=s + 5),
        SamplingCase("large logits, a cold T=0.05", (randn(g, 2, 6, scale=10.0), 0.05),
                     seed=s + 6, tags=frozenset({"cold"})),
        SamplingCase("the same seed twice gives the same draws", (randn(g, 4, 7), 0.8),
                     mode="reproducible", seed=s + 7, tags=frozenset({"seeded"})),
        SamplingCase("temperature 0 is invalid", (randn(g, 2, 5), 0.0), mode="raises",
                     seed=s + 8, tags=frozenset({RAISES})),
        SamplingCase("a negative temperature is invalid", (randn(g, 2, 5), -1.0), mode="raises",
                     seed=s + 9, tags=frozenset({RAISES})),
    ]


def _check_t(temperature):
    if not temperature > 0:
        raise ValueError("temperature > 0")


def _multinomial(probs, generator):
    flat = probs.reshape(-1, probs.size(-1))
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def _sample_temperature_after_softmax(logits, temperature=1.0, generator=None):
    _check_t(temperature)
    probs = torch.softmax(logits, dim=-1) / temperature  # multinomial renormalizes: T does nothing
    return _multinomial(probs, generator)


def _sample_times_temperature(logits, temperature=1.0, generator=None):
    _check_t(temperature)
    return _multinomial(torch.softmax(logits * temperature, dim=-1), generator)


def _sample_argmax(logits, temperature=1.0, generator=None):
    _check_t(temperature)
    return (logits / temperature).argmax(dim=-1)


def _sample_global_generator(logits, temperature=1.0, generator=None):
    _check_t(temperature)
    return _multinomial(torch.softmax(logits / temperature, dim=-1), None)  # ignores `generator`


def _sample_exp_overflow(logits, temperature=1.0, generator=None):
    _check_t(temperature)
    e = torch.exp(logits / temperature)  # inf for large logits / small T: inf / inf = NaN
    return _multinomial(e / e.sum(dim=-1, keepdim=True), generator)


register(
    Exercise(
        id="generation.sample_with_temperature",
        title="Sampling with a temperature",
        target="sample_with_temperature",
        chapter=CHAPTER,
        reference=ref.sample_with_temperature,
        make_cases=sampling_cases,
        call=sample_call,
        points=3,
        tolerance=Tolerance(rtol=0.0, atol=0.05, zero_atol=0.05),
        forbidden=("transformer_workbook.generation.sample",
                   "transformer_workbook.generation.apply_temperature"),
        forbidden_reason="Divide by the temperature and draw yourself.",
        notes={
            "exception": "The cases differ in the shape of the logits ((V,), (B, V), (B, L, V)) "
                         "and in the temperature; each calls your function on thousands of "
                         "copies of the logits at once, as `fn(logits, temperature, "
                         "generator=...)`.",
            "nondeterministic": "Draw with the generator you are given: "
                                "`torch.multinomial(probs, 1, generator=generator)`.",
        },
        mistakes=[
            Mistake(
                "temperature-after-softmax",
                "Your temperature has no effect: you divide the *probabilities* by T, and "
                "sampling renormalizes them, so the T cancels out. Divide the *logits* by T, "
                "then take the softmax: softmax(logits / T).",
                _sample_temperature_after_softmax,
            ),
            Mistake(
                "times-temperature",
                "You multiply the logits by T; divide them: softmax(logits / T). A temperature "
                "below 1 must sharpen the distribution, above 1 flatten it.",
                _sample_times_temperature,
            ),
            Mistake(
                "argmax",
                "You always return the most likely token: that is greedy decoding, the limit T "
                "-> 0. Sampling *draws* a token with the probabilities softmax(logits / T) "
                "(`torch.multinomial`).",
                _sample_argmax,
            ),
            Mistake(
                "ignores-generator",
                "Your draws have the right distribution, but they ignore the `generator` "
                "argument: two calls with generators seeded alike give different tokens. Pass "
                "it on: `torch.multinomial(probs, 1, generator=generator)`, so that a seeded "
                "generator makes the samples reproducible.",
                _sample_global_generator,
            ),
            Mistake(
                "exp-overflow",
                "With large logits and a low temperature your probabilities are NaN: "
                "exp(logits / T) overflows to inf, and inf / inf is NaN. Use `torch.softmax`, "
                "which subtracts the maximum first.",
                _sample_exp_overflow,
            ),
        ],
        hints=[
            "probs = torch.softmax(logits / temperature, dim=-1): divide the logits, not the "
            "probabilities.",
            "torch.multinomial takes a 1-D or 2-D tensor: reshape the logits to (N, V), draw "
            "one token per row with `generator=generator`, then reshape the (N, 1) result to "
            "the logits' shape without its last dimension.",
            "Raise ValueError unless temperature > 0 (T = 0 is greedy decoding: a division by "
            "zero here).",
        ],
    )
)
