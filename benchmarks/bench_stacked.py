"""CPU-seconds per run of SimPO on a sums-size model: each run alone (`train.fit`) against R runs stacked in one pass
(`stacked.fit_stacked`), R = 1, 5, 15, one thread, same machine, one run each.

    python benchmarks/bench_stacked.py            # about 5 CPU-minutes

The model is the controlled task's smallest rung's shape (GPT-2 architecture, 1 layer × 32, 2 heads, 17
characters); each run trains one SimPO epoch on 512 random pairs of sum-like lengths (batch 32, micro-batches
of 8) with its own seed, data and labels, then scores them.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from w2s_deception.config import get_config  # noqa: E402
from w2s_deception.preference import PolicyPairs, ResponseScorer, po_loss_fn, score_pairs  # noqa: E402
from w2s_deception.stacked import StackedGPT2, StackedRun, fit_stacked, score_stacked  # noqa: E402
from w2s_deception.train import fit  # noqa: E402

PAD, PAIRS = 0, 512


def model() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=17, n_positions=128, n_embd=32, n_layer=1, n_head=2, resid_pdrop=0.0,
                                      embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_pytorch_tanh",
                                      pad_token_id=PAD, bos_token_id=1, eos_token_id=2)).eval()


def data(seed: int) -> PolicyPairs:
    rng = np.random.default_rng(seed)
    first, second, starts = [], [], []
    for _ in range(PAIRS):
        prompt = rng.integers(3, 17, rng.integers(4, 11)).tolist()
        first.append(prompt + rng.integers(3, 17, rng.integers(2, 7)).tolist())
        second.append(prompt + rng.integers(3, 17, rng.integers(2, 7)).tolist())
        starts.append(len(prompt))
    return PolicyPairs(first, second, starts, list(starts), torch.tensor(rng.random(PAIRS) < 0.7),
                       torch.tensor(rng.random(PAIRS) < 0.3), PAD)


def main() -> None:
    torch.set_num_threads(1)
    cfg = get_config("smoke")
    loss = po_loss_fn(cfg, "simpo", "explicit")
    base = model()
    print("| runs | path | CPU-s per run | × alone |")
    print("|---|---|---|---|")
    alone = None
    for runs in (1, 5, 15):
        sets = [data(s) for s in range(runs)]
        if alone is None:
            start = time.process_time()
            for s, d in enumerate(sets):
                lm = copy.deepcopy(base)
                fit(ResponseScorer(lm), d, loss, lr=1e-4, epochs=1, batch_size=32, seed=s, micro_batch=8)
                score_pairs(lm, d, 8)
            alone = (time.process_time() - start) / runs
            print(f"| 1 | alone (`train.fit`) | {alone:.2f} | 1.00× |", flush=True)
        start = time.process_time()
        stacked = StackedGPT2([copy.deepcopy(base) for _ in sets])
        fit_stacked(stacked, [StackedRun(d, loss, s) for s, d in enumerate(sets)], lr=1e-4, epochs=1, batch_size=32,
                    micro_batch=8, pad_id=PAD)
        score_stacked(stacked, sets, 8, PAD)
        per_run = (time.process_time() - start) / runs
        print(f"| {runs} | stacked | {per_run:.2f} | {alone / per_run:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
