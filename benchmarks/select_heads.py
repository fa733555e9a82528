"""Re-run the selection of the cpu reward heads' training settings (`Config.lr`, `Config.epochs`,
standardised features) and of the default ladder, on validation pairs only.

Every rung's frozen `train_gt` features (cached, computed if missing) are split 3000/1000; a head
is trained on the first part with each setting of the grid (seed 0) and scored on the second.
Prints validation accuracy per rung and setting, the mean over rungs per setting (the config takes
the best), and each rung's accuracy under the chosen setting (the default ladder keeps rungs that
rise). The test split is never read.

    python benchmarks/select_heads.py                      # the five cpu rungs
    python benchmarks/select_heads.py --rungs pico nano    # a subset
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import pandas as pd
import torch

from w2s_deception.config import get_config
from w2s_deception.experiments import feature_scale, open_cache
from w2s_deception.features import feature_entry
from w2s_deception.models import RewardModel
from w2s_deception.train import PairExamples, predict_margins, train_reward_model

GRID = {"lr": (1e-3, 3e-3, 1e-2), "epochs": (1, 3, 10), "standardised": (False, True)}
N_TRAIN = 3000  # of train_gt's 4,000 pairs; the rest is the validation part


def validation_accuracy(train: torch.Tensor, val: torch.Tensor, lr: float, epochs: int, standardised: bool,
                        batch_size: int, seed: int = 0) -> float:
    """Accuracy on `val` of a bias-free head trained on `train` (features (B, 2, H), chosen first)."""
    if standardised:
        scale = feature_scale(train)
        train, val = train / scale, val / scale
    torch.manual_seed(seed)
    head = RewardModel(train.shape[-1])
    examples = PairExamples(torch.ones(len(train)), torch.zeros(len(train), dtype=torch.bool), features=train)
    train_reward_model(head, examples, objective="no_conflict", alpha=0.0, lr=lr, epochs=epochs,
                       batch_size=batch_size, seed=seed, desc="head")
    held_out = PairExamples(torch.ones(len(val)), torch.zeros(len(val), dtype=torch.bool), features=val)
    return float((predict_margins(head, held_out) > 0).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rungs", nargs="+", default=["pico", "nano", "micro", "mini", "smol"])
    args = parser.parse_args()
    cfg = get_config("cpu", rungs=args.rungs)
    cache = open_cache(cfg)
    rows = []
    for rung in cfg.rungs:
        feats = torch.tensor(np.load(feature_entry(cfg, rung, "train_gt", cache).file("features.npy")))
        train, val = feats[:N_TRAIN], feats[N_TRAIN:]
        for lr, epochs, standardised in itertools.product(*GRID.values()):
            acc = validation_accuracy(train, val, lr, epochs, standardised, cfg.batch_size)
            rows.append({"rung": rung, "lr": lr, "epochs": epochs, "standardised": standardised, "val_acc": acc})
        print(f"{rung}: done", flush=True)
    table = pd.DataFrame(rows)
    setting = ["standardised", "lr", "epochs"]
    per_rung = table.pivot_table(index=setting, columns="rung", values="val_acc")[list(cfg.rungs)]
    per_rung["mean"] = per_rung.mean(axis=1)
    print(per_rung.sort_values("mean", ascending=False).round(3).to_string())
    chosen = (True, cfg.lr, cfg.epochs)
    print(f"\nthe config's setting {dict(zip(setting, chosen))}, per rung:")
    print(per_rung.loc[chosen].round(3).to_string())


if __name__ == "__main__":
    main()
