"""Chapter 8's training, timed: the tuned date model (training.DATE_RECIPE) on the CPU or a GPU.

Prints the machine's load before and after, the training time, steps per second,
the CPU time of the process, and the exact match on the held-out test set
(greedy decoding). The accuracy depends only on the seeds (steps are counted,
never seconds), so a busy machine changes the time, not the result.

    python benchmarks/train_dates.py                 # seed 0, 2 threads
    python benchmarks/train_dates.py --seeds 0 1 2   # the margin over seeds
    python benchmarks/train_dates.py --steps 1800    # a variation of the recipe

Writes nothing into the repository.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from transformer_workbook.training import DATE_RECIPE, exact_match, train_date_model


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--eval-every", type=int, default=None, help="validation exact match every N steps")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="change the recipe, e.g. --set steps=1800 lr_factor=1.5")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = DATE_RECIPE.replace(**{k: _number(v) for k, v in (s.split("=", 1) for s in args.set)})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, recipe {recipe}")
    results = []
    for seed in args.seeds:
        print(f"seed {seed}: before, {load()}")
        cpu0 = time.process_time()
        trained = train_date_model(recipe, seed=seed, data_seed=args.data_seed, progress=args.progress,
                                   device=args.device, eval_every=args.eval_every)  # fmt: skip
        cpu = time.process_time() - cpu0
        h = trained.history
        start = time.perf_counter()
        acc, predictions = exact_match(trained.model, trained.data.test, trained.tokenizer)
        eval_s = time.perf_counter() - start
        errors = [(s, t, p) for (s, t), p in zip(trained.data.test, predictions, strict=True) if p != t]
        print(f"seed {seed}: after, {load()}")
        print(f"seed {seed}: trained {h.steps} steps in {h.seconds:.1f} s ({h.steps_per_second:.1f} steps/s, "
              f"process CPU {cpu:.1f} s), test exact match {acc:.4f} ({len(errors)} errors of "
              f"{len(predictions)}), test decoding {eval_s:.1f} s")  # fmt: skip
        for step, metrics in h.evals:
            print(f"    step {step}: {metrics}")
        for e in errors[:10]:
            print("    error:", e)
        results.append({"seed": seed, "seconds": h.seconds, "steps_per_second": h.steps_per_second,
                        "cpu_seconds": cpu, "test_exact_match": acc})  # fmt: skip
    return results


def _number(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"None": None, "True": True, "False": False}.get(text, text)


if __name__ == "__main__":
    main()
