"""Chapter 9's training, timed: the character-level language model (training.LM_RECIPE).

Prints the load before and after, the training time, steps per second, the
test perplexity against the best any model can reach (the grammar's own
probabilities of the same sentences), and, for samples drawn at a few
temperatures, the share that the grammar's parser accepts and how many are
different. Results depend only on the seeds.

    python benchmarks/train_lm.py
    python benchmarks/train_lm.py --seeds 0 1 2 --set steps=1000

Writes nothing into the repository.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

from transformer_workbook.data import is_grammatical
from transformer_workbook.generation import sample
from transformer_workbook.training import LM_RECIPE, perplexity, train_language_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_dates import _number, load  # noqa: E402  (the sibling script's helpers)


def grammar_perplexity(corpus, texts) -> float:
    """The perplexity of the true grammar on ``texts``: no model can do better on average."""
    n_tokens = sum(len(t) + 1 for t in texts)  # every character and <eos>
    return math.exp(-sum(corpus.grammar.log_prob(t) for t in texts) / n_tokens)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = LM_RECIPE.replace(**{k: _number(v) for k, v in (s.split("=", 1) for s in args.set)})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, recipe {recipe}")
    results = []
    for seed in args.seeds:
        print(f"seed {seed}: before, {load()}")
        cpu0 = time.process_time()
        trained = train_language_model(recipe, seed=seed, data_seed=args.data_seed, progress=args.progress,
                                       device=args.device, eval_every=args.eval_every)  # fmt: skip
        cpu = time.process_time() - cpu0
        h, tok, corpus, model = trained.history, trained.tokenizer, trained.data, trained.model
        print(f"seed {seed}: after, {load()}")
        ppl = perplexity(model, corpus.test, tok)
        best = grammar_perplexity(corpus, corpus.test)
        print(f"seed {seed}: trained {h.steps} steps in {h.seconds:.1f} s ({h.steps_per_second:.1f} steps/s, "
              f"process CPU {cpu:.1f} s); test perplexity {ppl:.4f} "
              f"(the grammar's own: {best:.4f})")  # fmt: skip
        for step, metrics in h.evals:
            print(f"    step {step}: {metrics}")
        device = next(model.parameters()).device
        bos = torch.full((args.samples, 1), tok.bos_id, device=device)
        train_set = set(corpus.train)
        row = {"seed": seed, "seconds": h.seconds, "steps_per_second": h.steps_per_second,
               "cpu_seconds": cpu, "test_perplexity": ppl, "grammar_perplexity": best}  # fmt: skip
        for temperature in (0.5, 0.8, 1.0, 1.2):
            g = torch.Generator(device=device).manual_seed(seed)
            out = sample(model, bos, 200, temperature=temperature, generator=g)
            texts = [tok.decode(r) for r in out]
            share = sum(map(is_grammatical, texts)) / len(texts)
            print(f"    T={temperature}: grammatical {share:.3f}, distinct {len(set(texts))}/{len(texts)}, "
                  f"not in the training set {sum(t not in train_set for t in texts)}")  # fmt: skip
            row[f"grammatical_T{temperature}"] = share
        for t in texts[:5]:
            print("    sample:", t)
        results.append(row)
    return results


if __name__ == "__main__":
    main()
