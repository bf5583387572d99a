"""The grader's code that runs in the learner's kernel, after the notebook.

The grader does not ``import`` this module in the kernel (the notebook may have
replaced modules in ``sys.modules`` or attributes of the course package).
:func:`cell_source` builds the one cell the grader runs there: it compiles this
file's source text, read once when the grader imports this module (before
any notebook runs), and executes it in a **fresh namespace** whose builtins
are the ``builtins`` module, so none of the names the learner defined or
shadowed (``torch``, ``open``, ``len``, ``run_cases``, ``_tw_harness``...) is
used; then it calls :func:`run` with the notebook's own namespace, from which
it fetches only the learner's functions, by name.

:func:`run` loads a **fresh copy** of the check machinery
(``exercises/core.py``) from its file, runs each exercise's function on the
grader's cases with :func:`core.run_cases` (the very function ``check`` uses),
passing the grader's options through unchanged, and writes **one result file
per exercise, atomically** (a temporary file, then ``os.replace``), so an
exercise that kills the kernel leaves the earlier results readable.

The results are plain data (``torch.load(weights_only=True)`` reads them):
``{"id", "status", "type", "module", "outcomes"}`` with ``status`` one of
:data:`RAN`, :data:`ABSENT`, :data:`NOT_CALLABLE`. The grader judges them in
its own process (:mod:`.judge`).

This module imports nothing from the course package at import time, and its
code only uses names it imports itself, so it runs the same when imported
(the unit tests) and when executed from its source in a fresh namespace.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

#: What the harness found for one exercise.
RAN = "ran"  # the function ran on the cases: "outcomes" holds what happened
ABSENT = "absent"  # the notebook defines nothing of that name
NOT_CALLABLE = "not-callable"  # the name is bound to something that cannot be called
RESULT_STATUSES = (RAN, ABSENT, NOT_CALLABLE)

#: ``__name__`` of the fresh namespace the kernel cell executes this file in.
NAMESPACE_NAME = "tw_grader_harness"
_CORE_NAME = "transformer_workbook.exercises._grader_core"
_CORE_CLASS = ("transformer_workbook.exercises.core", "Case")
_NOTHING = object()


def load_core(core_path: str):
    """A fresh copy of ``exercises/core.py``, executed from its file.

    The notebook may have replaced attributes of the imported
    ``transformer_workbook.exercises.core`` (``run_cases``, ``Case``...): this
    copy is new, and is not left in ``sys.modules``.
    """
    spec = importlib.util.spec_from_file_location(_CORE_NAME, core_path)
    core = importlib.util.module_from_spec(spec)
    sys.modules[_CORE_NAME] = core  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(core)
    finally:
        sys.modules.pop(_CORE_NAME, None)
    return core


def make_case(core, data: dict):
    """A case rebuilt from plain data: its class (``Case`` or a subclass), then its fields."""
    fields = dict(data["fields"])
    for name in data["frozensets"]:
        fields[name] = frozenset(fields[name])
    module, qualname = data["cls"]
    if (module, qualname) == _CORE_CLASS:
        cls = core.Case
    else:
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    return cls(**fields)


def run_job(core, job: dict, user_ns: dict) -> dict:
    """Run one exercise's function from ``user_ns`` on its cases; the result as plain data."""
    result = {"id": job["id"], "status": ABSENT, "type": "", "module": ""}
    fn = user_ns.get(job["target"], _NOTHING)
    if fn is _NOTHING:
        return result
    if not callable(fn):
        result["status"] = NOT_CALLABLE
        result["type"] = str(type(fn).__name__)
        return result
    call = None
    if job["custom_call"]:  # only exercises that need one look into the registry
        call = importlib.import_module("transformer_workbook.exercises").get(job["id"]).call
    cases = [make_case(core, c) for c in job["cases"]]
    outcomes = core.run_cases(fn, cases, call=call, **job["run"])
    result["status"] = RAN
    result["module"] = str(getattr(fn, "__module__", "") or "")[:200]
    result["outcomes"] = core.outcomes_to_payload(outcomes)
    return result


def save_atomically(torch, obj, path: str) -> None:
    """``torch.save`` to a temporary name, then rename: a reader sees all of it or nothing."""
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def result_path(out_prefix: str, index: int) -> str:
    return f"{out_prefix}{index}.pt"


def run(user_ns: dict, core_path: str, cases_path: str, out_prefix: str) -> None:
    """Grade every job in ``cases_path`` on the functions of ``user_ns``; one file per job."""
    torch = importlib.import_module("torch")
    core = load_core(core_path)
    jobs = torch.load(cases_path, weights_only=True)
    for i, job in enumerate(jobs):
        save_atomically(torch, run_job(core, job, user_ns), result_path(out_prefix, i))


def cell_source(core_path: str, cases_path: str, out_prefix: str) -> str:
    """The kernel cell that executes this file's source in a fresh namespace and calls :func:`run`.

    The cell binds one name in the notebook's namespace, ``_tw_builtins`` (the
    ``builtins`` module, imported by the cell itself); the fresh namespace is a
    literal, and the notebook's own namespace is the cell's frame globals.
    """
    path, source = _OWN_PATH, _OWN_SOURCE
    args = {"core_path": core_path, "cases_path": cases_path, "out_prefix": out_prefix}
    return (
        "import builtins as _tw_builtins\n"
        f"_tw_builtins.exec(_tw_builtins.compile({source!r}, {path!r}, 'exec'), "
        f"{{'__builtins__': _tw_builtins, '__name__': {NAMESPACE_NAME!r}, '__file__': {path!r}, "
        "'_TW_USER_NS': _tw_builtins.__import__('sys')._getframe(0).f_globals, "
        f"'_TW_ARGS': {args!r}}})\n"
    )


if __name__ == NAMESPACE_NAME:  # executed by cell_source()'s cell, in the learner's kernel
    run(globals()["_TW_USER_NS"], **globals()["_TW_ARGS"])
else:  # imported by the grader: its source is read now, before any notebook runs (and could change it)
    _OWN_PATH = os.path.abspath(__file__)
    with open(_OWN_PATH, encoding="utf-8") as _f:
        _OWN_SOURCE = _f.read()
