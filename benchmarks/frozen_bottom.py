"""The frozen-bottom activation cache against LoRA on all blocks, on the same pairs: exactness and speed.

Loads a real rung (default SmolLM2, `smol`) whole, freezes its first `--frozen` blocks and caches their
output for the first `--pairs` `train_gt` pairs (a run-cache entry, `activations.activation_entry`). Prints
the largest difference in summed response log-probs between the full pass and the cached one, then the CPU
seconds per SimPO step (batch `--batch` pairs) of LoRA (r = 8, α = 16) on all blocks and on the top blocks
reading the cache, and the speed-up. With `--train N`, also aligns the rung on ground truth through the cache
(SFT + SimPO on the first N `train_gt` pairs) and scores the next `--val` pairs, against its zero-shot
accuracy: the HH policy-ladder measurement (validation pairs only).

    python benchmarks/frozen_bottom.py                      # smol, 15 of 30 frozen, 32 pairs
    python benchmarks/frozen_bottom.py --train 1000 --val 500
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch
from peft import LoraConfig, get_peft_model

from w2s_deception.activations import keep_top_blocks
from w2s_deception.config import get_config
from w2s_deception.experiments import open_cache
from w2s_deception.ladder import load_trunk
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


def step_seconds(scorer: torch.nn.Module, pairs, cfg, steps: int) -> float:
    """CPU seconds per SimPO step over `steps` steps of `cfg.batch_size` pairs."""
    sub = pairs.subset(np.arange(steps * cfg.batch_size))
    start = time.process_time()
    fit(scorer, sub, po_loss_fn(cfg, "simpo", "no_conflict"), lr=cfg.po_lr, epochs=1, batch_size=cfg.batch_size,
        micro_batch=cfg.micro_batch, seed=0, desc="SimPO steps")
    return (time.process_time() - start) / steps


def accuracy(lm, pairs) -> float:
    s = score_pairs(lm.eval(), pairs, 16)
    conf = po_confidence("simpo", s["logp_first"].to_numpy(), s["n_first"].to_numpy(), s["logp_second"].to_numpy(),
                         s["n_second"].to_numpy())
    return float(np.mean(conf >= 0.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rung", default="smol")
    parser.add_argument("--frozen", type=int, default=15)
    parser.add_argument("--pairs", type=int, default=32, help="pairs for the exactness check and the step timing")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--train", type=int, default=0, help="also align on this many train_gt pairs (0: skip)")
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--lr", type=float, default=3e-4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = max(args.pairs, args.train + args.val)
    cfg = get_config("cpu", rungs=[args.rung], po_finetune="lora", frozen_blocks=args.frozen, po_pairs=n,
                     batch_size=args.batch, micro_batch=args.batch, sft_lr=args.lr, po_lr=args.lr)
    cache = open_cache(cfg)
    start = time.process_time()
    cached, _ = load_policy_pairs(cfg, args.rung, "train_gt", cache)
    print(f"bottom states of {n} pairs ({2 * n} sequences): {time.process_time() - start:.0f} CPU-s "
          "(cached: 0 on a rerun)", flush=True)
    plain = replace(cached, first_states=None, second_states=None)
    check = np.arange(args.pairs)

    lm, _ = load_trunk(cfg, cfg.rung(args.rung), cache)
    full = score_pairs(lm.eval(), plain.subset(check), 8)
    top = keep_top_blocks(lm, cfg.frozen_blocks)  # the same weights, top blocks only
    part = score_pairs(top.eval(), cached.subset(check), 8)
    diff = np.abs(np.r_[full["logp_first"] - part["logp_first"], full["logp_second"] - part["logp_second"]])
    print(f"exactness: max |Δ summed response log-prob| = {diff.max():.2e} over {2 * args.pairs} responses", flush=True)

    lm, _ = load_trunk(cfg, cfg.rung(args.rung), cache)
    everywhere = get_peft_model(lm, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    t_all = step_seconds(ResponseScorer(everywhere), plain, cfg, args.steps)
    lm, _ = load_trunk(cfg, cfg.rung(args.rung), cache)
    t_top = step_seconds(ResponseScorer(_trainable(cfg, lm)), cached, cfg, args.steps)
    print(f"SimPO step of {args.batch} pairs: LoRA on all blocks {t_all:.1f} CPU-s, on the top "
          f"{lm.config.num_hidden_layers} blocks from the cache {t_top:.1f} CPU-s: {t_all / t_top:.2f}x faster",
          flush=True)

    if args.train:
        train, val = cached.subset(np.arange(args.train)), cached.subset(np.arange(args.train, args.train + args.val))
        lm, _ = load_trunk(cfg, cfg.rung(args.rung), cache)
        model = _trainable(cfg, lm)
        zero = accuracy(model, val)
        start = time.process_time()
        fit(ResponseScorer(model), _SFTBatches(train), _sft_loss, lr=cfg.sft_lr, epochs=1, batch_size=cfg.batch_size,
            micro_batch=cfg.micro_batch, seed=0, warmup=WARMUP, desc="SFT")
        fit(ResponseScorer(model), train, po_loss_fn(cfg, "simpo", "no_conflict"), lr=cfg.po_lr, epochs=1,
            batch_size=cfg.batch_size, micro_batch=cfg.micro_batch, seed=0, desc="SimPO")
        print(f"{args.rung} on {args.train} train_gt pairs (SFT + SimPO, lr {args.lr:g}, "
              f"{(time.process_time() - start) / 60:.1f} CPU-min): validation accuracy {zero:.3f} zero-shot -> "
              f"{accuracy(model, val):.3f} on {args.val} pairs", flush=True)


if __name__ == "__main__":
    main()
