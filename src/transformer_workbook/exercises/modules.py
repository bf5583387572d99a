"""Exercises where the learner writes an ``nn.Module`` class.

The check builds the learner's class with the case's constructor arguments,
loads the case's weights into it by parameter name (so every learner's module
computes with the same numbers as the reference), switches it to eval mode and
calls ``forward`` without gradients. Use it with ``call=build_and_call`` and
cases of type :class:`ModuleCase`; chapter exercises (MultiHeadAttention,
LayerNorm, FeedForward, EncoderLayer, DecoderLayer, ...) share it.

The learner's module must have exactly the reference's parameters (names and
shapes): a missing, extra or misshapen one is reported by name, with what the
module has instead, rather than as a crash.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from .core import Case, randn


@dataclasses.dataclass
class ModuleCase(Case):
    """A case for a module exercise: how to build it, its weights, what to call it on.

    ``init`` holds the constructor's keyword arguments, ``params`` the weights
    to load by name (``"q_proj.weight"`` -> tensor; every parameter of the
    module, no more, no less); ``args``/``kwargs`` go to ``forward``.
    ``arg_names`` name the forward arguments in feedback.
    """

    init: dict = dataclasses.field(default_factory=dict)
    params: dict = dataclasses.field(default_factory=dict)
    arg_names: tuple = ()

    def describe(self) -> str:
        init = ", ".join(f"{k}={v!r}" for k, v in self.init.items())
        names = list(self.arg_names) or [f"argument {i + 1}" for i in range(len(self.args))]
        parts = [f"{n} {tuple(a.shape)}" if isinstance(a, torch.Tensor) else f"{n}={a!r}"
                 for n, a in zip(names, self.args, strict=False)]
        parts += [f"{k} {tuple(v.shape)}" if isinstance(v, torch.Tensor) else f"{k}={v!r}"
                  for k, v in self.kwargs.items()]
        return f"{self.name}: built with ({init}), called on {', '.join(parts)}"


def reference_params(reference: type[nn.Module], init: dict, g: torch.Generator,
                     scale: Callable[[str, torch.Tensor], float] | None = None) -> dict:
    """Seeded weights for every parameter of ``reference(**init)``, by name.

    Each parameter gets N(0, s^2) entries with ``s = scale(name, p)`` (default:
    1/sqrt(fan_in) for matrices, 0.3 for vectors), drawn in a fixed order, so
    the cases do not depend on PyTorch's own initialisation.
    """
    module = reference(**init)
    params = {}
    for name, p in module.named_parameters():
        if scale is not None:
            s = scale(name, p)
        elif p.dim() >= 2:
            s = 1.0 / p.shape[-1] ** 0.5
        else:
            s = 0.3
        params[name] = randn(g, *p.shape, scale=s)
    return params


def _listing(module: nn.Module) -> str:
    items = [f"{n} {tuple(p.shape)}" for n, p in module.named_parameters()]
    return ", ".join(items) if items else "none"


def load_params(module: nn.Module, params: dict) -> None:
    """Copy ``params`` into ``module`` by name, with messages a learner can act on."""
    own = dict(module.named_parameters())
    missing = [n for n in params if n not in own]
    if missing:
        shape = tuple(params[missing[0]].shape)
        raise AttributeError(
            f"your module has no parameter `{missing[0]}` {shape}; it has: {_listing(module)}. "
            "The check loads weights by name: keep the names of the exercise's statement."
        )
    extra = [n for n in own if n not in params]
    if extra:
        raise AttributeError(
            f"your module has a parameter `{extra[0]}` {tuple(own[extra[0]].shape)} that the "
            f"exercise's module does not have (it has: {', '.join(params)}). Remove it, or check "
            "the constructor's arguments (e.g. `bias=bias`)."
        )
    for name, value in params.items():
        if tuple(own[name].shape) != tuple(value.shape):
            raise ValueError(
                f"`{name}` has shape {tuple(own[name].shape)}; it should have shape "
                f"{tuple(value.shape)} for these constructor arguments"
            )
    with torch.no_grad():
        for name, value in params.items():
            own[name].copy_(value)


def build(cls: object, case: ModuleCase) -> nn.Module:
    """``cls(**case.init)`` with the case's weights loaded, in eval mode; clear errors otherwise."""
    init = ", ".join(f"{k}={v!r}" for k, v in case.init.items())
    if not isinstance(cls, type):
        what = f"an instance of {type(cls).__name__}" if isinstance(cls, nn.Module) else repr(cls)[:60]
        raise TypeError(f"pass your class itself (the check builds it), e.g. `check(..., ClassName)`; "
                        f"got {what}")
    try:
        module = cls(**case.init)
    except TypeError as exc:
        raise TypeError(f"could not build `{cls.__name__}({init})`: {exc}") from exc
    except AttributeError as exc:
        if "Module.__init__()" not in str(exc):
            raise
        raise AttributeError(
            f"{exc}: call `super().__init__()` first thing in `{cls.__name__}.__init__`"
        ) from exc
    if not isinstance(module, nn.Module):
        raise TypeError(f"`{cls.__name__}` must subclass torch.nn.Module (class ...(nn.Module))")
    load_params(module, case.params)
    return module.eval()


def build_and_call(cls: object, case: ModuleCase):
    """``Exercise.call`` for module exercises: build, load weights, eval mode, ``forward``."""
    module = build(cls, case)
    with torch.no_grad():
        return module(*case.args, **case.kwargs)
