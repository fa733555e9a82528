"""Frozen-trunk features: each rung's last-token hidden states, computed once per split and cached.

With `finetune="head"` (the CPU profile) a reward model is a trained linear head on these
features, so every scenario after the first reuses one forward pass of the trunk.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .cache import Entry, RunCache, code_version
from .config import Config
from .data import data_key, encode_pair, load_pairs, pad_batch
from .ladder import load_reader, trunk_key
from .models import RewardModel
from .numerics import autocast, autocast_dtype


def split_name(split: str) -> str:
    """Data file of a split: the three harmless splits, or `helpful` (hh-helpful/train)."""
    return "hh-helpful/train" if split == "helpful" else f"hh-harmless/{split}"


def split_limit(cfg: Config, split: str) -> int | None:
    """How many pairs of a split the config uses."""
    return cfg.n_helpful if split == "helpful" else cfg.n_pairs


def feature_entry(cfg: Config, rung: str, split: str, cache: RunCache) -> Entry:
    """Last-token hidden states h(x, y_c), h(x, y_r) of a frozen rung on one split (`head` fine-tuning); matrix
    products in bf16 on CPUs with bf16 units (`numerics.autocast_dtype`), features kept in fp32."""
    dtype = autocast_dtype()
    spec = {"rung": cfg.rung(rung).spec(), "trunk": trunk_key(cfg, cfg.rung(rung)), "split": split,
            "limit": split_limit(cfg, split), "max_length": cfg.max_length, "autocast": dtype,
            "data": data_key([split_name(split)], cfg.data_dir), "code": code_version(__name__)}

    def compute(tmp):
        pairs = load_pairs(split_name(split), cfg.data_dir, limit=split_limit(cfg, split))
        trunk, tok = load_reader(cfg, cfg.rung(rung), cache)
        model = RewardModel(trunk.config.hidden_size, trunk).eval()
        with autocast(dtype):
            feats = batched_features(model.features, pair_sequences(tok, pairs, cfg.max_length), tok.pad_token_id,
                                     desc=f"features {rung}/{split}")
        np.save(tmp / "features.npy", feats.reshape(len(pairs), 2, -1))
        return pd.DataFrame({"pair_id": pairs["pair_id"]}), {"hidden_size": int(feats.shape[-1])}

    return cache.get_or_compute("features", spec, compute)


def pair_sequences(tok, pairs, max_length: int) -> list[list[int]]:
    """Token ids of every pair's two dialogues, interleaved: chosen, rejected, chosen, ..."""
    return [encode_pair(tok, p, r, max_length)[0]
            for p, c, rj in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"]) for r in (c, rj)]


@torch.no_grad()
def batched_features(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], seqs: list[list[int]], pad_id: int,
                     desc: str, batch: int = 32) -> np.ndarray:
    """`fn(input_ids, attention_mask)` of every sequence (rows in `seqs` order), batched by length so
    little compute is spent on padding."""
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out = None
    for start in tqdm(range(0, len(seqs), batch), desc=desc, leave=False, disable=None):
        idx = order[start:start + batch]
        ids, mask = pad_batch([seqs[i] for i in idx], pad_id, side="right")
        rows = fn(ids, mask).float().numpy()
        if out is None:
            out = np.zeros((len(seqs), *rows.shape[1:]), dtype=np.float32)
        out[idx] = rows
    return out
