"""Choose a policy ladder and its SFT/SimPO settings on validation pairs, never the test split.

For each rung (pre-trained or loaded as the book does, through the run cache) and each candidate
learning rate × epochs, runs SFT + SimPO on the first 3,000 `train_gt` pairs and scores the last 1,000
(the validation pairs); prints zero-shot and aligned validation accuracy per rung (by difficulty on
the arithmetic task).

    python benchmarks/select_policies.py                       # the arithmetic task's ladder
    python benchmarks/select_policies.py --task harmless --rungs pico micro mini --lrs 3e-4 1e-3 3e-3 --epochs 1 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from w2s_deception import arithmetic
from w2s_deception.config import PO_RUNGS, get_config
from w2s_deception.data import load_pairs
from w2s_deception.experiments import open_cache
from w2s_deception.ladder import load_trunk, pretrain_entry
from w2s_deception.preference import (
    WARMUP,
    ResponseScorer,
    _sft_loss,
    _SFTBatches,
    _trainable,
    load_policy_pairs,
    po_confidence,
    po_loss_fn,
    score_pairs,
)
from w2s_deception.train import fit

N_TRAIN, N_VAL = 3000, 1000


def accuracy(lm, pairs, difficulty: pd.Series, method: str = "simpo") -> dict:
    """Validation accuracy (and by difficulty) of a policy's confidence."""
    s = score_pairs(lm, pairs, 64)
    conf = po_confidence(method, s["logp_first"].to_numpy(), s["n_first"].to_numpy(), s["logp_second"].to_numpy(),
                         s["n_second"].to_numpy())
    ok = pd.Series(conf >= 0.5, index=difficulty.index)
    return {"acc": float(ok.mean()), "known": float(np.mean(conf >= 0.75)),
            **ok.groupby(difficulty).mean().round(3).to_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="arithmetic", choices=["arithmetic", "harmless"])
    parser.add_argument("--rungs", nargs="+", default=None, help="rungs (default: the task's chapter's)")
    parser.add_argument("--lrs", nargs="+", type=float, default=[3e-4, 1e-3, 3e-3])
    parser.add_argument("--epochs", nargs="+", type=int, default=[1])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    defaults = _chapter_defaults() if args.task == "arithmetic" else {"rungs": PO_RUNGS["cpu"], "po_pairs": 4000}
    cfg = get_config("cpu", **{**defaults, **({"rungs": args.rungs} if args.rungs else {})})
    cache = open_cache(cfg)
    if args.task == "arithmetic":
        val_difficulty = arithmetic.pairs("train_gt").to_pandas()["difficulty"].iloc[N_TRAIN:N_TRAIN + N_VAL]
    else:  # HH: by who would win on length alone, the shorter reply
        pairs = load_pairs("hh-harmless/train_gt", cfg.data_dir).to_pandas().iloc[N_TRAIN:N_TRAIN + N_VAL]
        val_difficulty = pd.Series(np.where(pairs["chosen"].str.len() <= pairs["rejected"].str.len(),
                                            "chosen shorter", "chosen longer"), index=pairs.index)
    rows = []
    for name in cfg.rungs:
        rung = cfg.rung(name)
        pre = pretrain_entry(cfg, rung, cache)
        pairs, _ = load_policy_pairs(cfg, name, "train_gt", cache)
        train, val = pairs.subset(np.arange(N_TRAIN)), pairs.subset(np.arange(N_TRAIN, N_TRAIN + N_VAL))
        lm, _ = load_trunk(cfg, rung, cache)
        rows.append({"rung": name, "stage": "zero-shot", "pretrain_cpu_min": pre.record["cpu_seconds"] / 60,
                     **accuracy(lm.eval(), val, val_difficulty)})
        print(rows[-1], flush=True)
        for lr in args.lrs:
            for epochs in args.epochs:
                start = time.process_time()
                torch.manual_seed(args.seed)
                lm, _ = load_trunk(cfg, rung, cache)
                model = _trainable(cfg, lm)
                fit(ResponseScorer(model), _SFTBatches(train), _sft_loss, lr=lr, epochs=1, batch_size=cfg.batch_size,
                    micro_batch=cfg.micro_batch, seed=args.seed, warmup=WARMUP, desc=f"SFT {name}")
                fit(ResponseScorer(model), train, po_loss_fn(cfg, "simpo", "no_conflict"), lr=lr, epochs=epochs,
                    batch_size=cfg.batch_size, micro_batch=cfg.micro_batch, seed=args.seed, desc=f"SimPO {name}")
                rows.append({"rung": name, "stage": f"SimPO lr {lr:g} × {epochs}",
                             "cpu_s": round(time.process_time() - start, 1),
                             **accuracy(model.eval(), val, val_difficulty)})
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.round(3).to_string(index=False))


def _chapter_defaults() -> dict:
    """The controlled-task chapter's config values (`config.ARITHMETIC_CHAPTER`)."""
    from w2s_deception.config import ARITHMETIC_CHAPTER

    return dict(ARITHMETIC_CHAPTER["cpu"])


if __name__ == "__main__":
    main()
