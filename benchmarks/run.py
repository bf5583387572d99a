"""Speed benchmarks (run with `make bench`; not part of `make test`).

1. The course's attention against PyTorch's fused kernel (GFLOP/s, CPU).
2. How long each notebook takes to execute top to bottom (the course promises
   at most 30 s per chapter on 2 cores).
3. How long a check takes (learner feedback should feel instant).

Prints a table; writes nothing into the repository.
"""

from __future__ import annotations

import pathlib
import sys
import time

import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[1]


def best_of(fn, repeat=5, number=3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def bench_attention() -> None:
    from transformer_workbook.attention import scaled_dot_product_attention

    print(f"## Attention on the CPU (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"{'B,H,L,d':>16} {'course ms':>10} {'GFLOP/s':>8} {'F.sdpa ms':>10} {'GFLOP/s':>8} {'ratio':>6}")
    torch.manual_seed(0)
    for b, h, length, d in [(4, 8, 128, 64), (4, 8, 512, 64), (1, 8, 2048, 64)]:
        q, k, v = (torch.randn(b, h, length, d) for _ in range(3))
        flops = 4 * b * h * length * length * d  # two matmuls, 2 flops per multiply-add
        with torch.no_grad():
            ours = best_of(lambda q=q, k=k, v=v: scaled_dot_product_attention(q, k, v))
            fused = best_of(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v))
        print(f"{f'{b},{h},{length},{d}':>16} {ours * 1e3:10.2f} {flops / ours / 1e9:8.1f} "
              f"{fused * 1e3:10.2f} {flops / fused / 1e9:8.1f} {ours / fused:6.2f}")


def bench_checks() -> None:
    from transformer_workbook.exercises import all_exercises, check

    print("\n## Check latency: a right answer, and an unknown wrong one (every known mistake is tried)")
    print(f"{'exercise':45} {'right':>9} {'wrong':>9}")
    for ex in all_exercises():
        right = best_of(lambda ex=ex: check(ex.id, ex.reference, quiet=True), repeat=3, number=1)
        # The reference's output times 1.5: no known mistake explains it, so the
        # check runs every one of them before describing the first failing case.
        wrong_fn = _always_wrong(ex)
        res = check(ex.id, wrong_fn, quiet=True)
        assert not res.passed
        wrong = best_of(lambda ex=ex, f=wrong_fn: check(ex.id, f, quiet=True), repeat=3, number=1)
        print(f"{ex.id:45} {right * 1e3:7.1f} ms {wrong * 1e3:7.1f} ms")


def _always_wrong(ex):
    if isinstance(ex.reference, type):  # a class exercise: a module whose forward is off
        class Wrong(ex.reference):
            def forward(self, *args, **kwargs):
                out = super().forward(*args, **kwargs)
                return (out[0] * 1.5, *out[1:]) if isinstance(out, tuple) else out * 1.5

        return Wrong

    def wrong(*args, **kwargs):
        out = ex.reference(*args, **kwargs)
        return (out[0] * 1.5, *out[1:]) if isinstance(out, tuple) else out * 1.5

    return wrong


def bench_notebooks() -> None:
    from transformer_workbook.notebook_tools import execute_notebook

    print("\n## Notebook execution (fresh kernel, top to bottom, executed on a scratch copy)")
    import shutil
    import tempfile

    for folder in ("notebooks", "solutions", "exercises"):
        for path in sorted((ROOT / folder).glob("*.ipynb")):
            with tempfile.TemporaryDirectory() as tmp:
                copy = pathlib.Path(tmp) / path.name
                shutil.copy(path, copy)
                seconds = execute_notebook(copy)
            print(f"{folder}/{path.name:45} {seconds:6.1f} s")


if __name__ == "__main__":
    which = set(sys.argv[1:]) or {"attention", "checks", "notebooks"}
    if "attention" in which:
        bench_attention()
    if "checks" in which:
        bench_checks()
    if "notebooks" in which:
        bench_notebooks()
