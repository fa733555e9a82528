"""Re-run the choice of the depth a frozen rung's reward head reads (`Rung.feature_layer`), on
validation pairs only.

One forward pass over the first `--pairs` pairs of `train_gt` keeps every layer's last-token state
(after the model's final norm, as `ladder.truncate_layers` would give it); for each depth a head
with the config's settings is trained and scored by 5-fold cross-validation (each pair is held out
once). A shallower depth costs proportionally less: feature extraction dominates a cold build, and
it scales with the number of layers run. Prints accuracy and relative cost per depth. The test
split is never read.

    python benchmarks/select_layer.py                 # smol, 2,000 pairs: about 10 min here
    python benchmarks/select_layer.py --pairs 4000    # all of train_gt
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from select_heads import validation_accuracy

from w2s_deception.config import get_config
from w2s_deception.data import load_pairs
from w2s_deception.experiments import open_cache
from w2s_deception.features import batched_features, pair_sequences
from w2s_deception.ladder import load_trunk
from w2s_deception.models import last_token_states

FOLDS = 5


def layer_features(model, seqs: list[list[int]], pad_id: int) -> np.ndarray:
    """(n_layers, len(seqs), H): each layer's normed last-token state."""
    base = model.base_model
    norm = base.norm if hasattr(base, "norm") else base.ln_f

    def every_depth(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = base(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[1:]
        # the last entry already went through the final norm; the others are raw block outputs
        states = [norm(h) for h in hidden[:-1]] + [hidden[-1]]
        return torch.stack([last_token_states(h, mask) for h in states], dim=1)  # (B, n_layers, H)

    return batched_features(every_depth, seqs, pad_id, desc="all layers").transpose(1, 0, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rung", default="smol")
    parser.add_argument("--pairs", type=int, default=2000)
    args = parser.parse_args()
    cfg = get_config("cpu", rungs=[args.rung])
    pairs = load_pairs("hh-harmless/train_gt", cfg.data_dir, limit=args.pairs)
    model, tok = load_trunk(cfg, cfg.rung(args.rung), open_cache(cfg))
    model.eval()
    seqs = pair_sequences(tok, pairs, cfg.max_length)
    start = time.perf_counter()
    feats = torch.tensor(layer_features(model, seqs, tok.pad_token_id)).reshape(-1, len(pairs), 2,
                                                                              model.config.hidden_size)
    print(f"features of {len(seqs)} sequences at every depth: {time.perf_counter() - start:.0f} s", flush=True)
    folds = np.array_split(np.random.default_rng(0).permutation(len(pairs)), FOLDS)
    rows = []
    for depth, layer in enumerate(feats, start=1):
        accs = []
        for k in range(FOLDS):
            train = np.concatenate([f for j, f in enumerate(folds) if j != k])
            accs.append(validation_accuracy(layer[train], layer[folds[k]], cfg.lr, cfg.epochs, True, cfg.batch_size)
                        * len(folds[k]))
        rows.append({"depth": depth, "val_acc": sum(accs) / len(pairs), "cost": depth / len(feats)})
    table = pd.DataFrame(rows).set_index("depth")
    table["se"] = np.sqrt(table.val_acc * (1 - table.val_acc) / len(pairs))
    print(table.round(3).to_string())
    best = table.val_acc.idxmax()
    print(f"\nbest depth {best}: {table.val_acc[best]:.3f}; all {len(feats)} layers: {table.val_acc.iloc[-1]:.3f}")


if __name__ == "__main__":
    main()
