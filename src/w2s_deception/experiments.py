"""The reward-modeling scenarios of the paper (§4), each a cached run: features, GT models, W2S students.

Every function returns a cache entry whose `results` table holds per-pair margins and
confidences; a repeat call with the same config trains nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .cache import Entry, RunCache
from .config import Config, ConfigError
from .data import encode_pair, load_pairs
from .ladder import data_fingerprint, load_trunk, truncate_layers
from .metrics import sigmoid
from .models import RewardModel
from .train import PairExamples, predict_margins, train_reward_model

HARMLESS = ("train_gt", "train_w2s", "test")
RESULT_MODULES = ["data", "corpus", "ladder", "models", "losses", "train", "experiments"]


def open_cache(cfg: Config) -> RunCache:
    """The run cache of this config's runs folder (env `W2S_RUNS_DIR`, else `<repo>/runs`)."""
    from .cache import default_runs_dir

    return RunCache(cfg.runs_dir or default_runs_dir())


def _split_name(split: str) -> str:
    return "hh-helpful/train" if split == "helpful" else f"hh-harmless/{split}"


def _limit(cfg: Config, split: str) -> int | None:
    return cfg.n_helpful if split == "helpful" else cfg.n_pairs


def _base_spec(cfg: Config) -> dict:
    from .cache import code_version

    return {"train": cfg.training_spec(), "data": data_fingerprint(cfg.data_dir), "code": code_version(RESULT_MODULES)}


def feature_entry(cfg: Config, rung: str, split: str, cache: RunCache) -> Entry:
    """Last-token hidden states h(x, y_c), h(x, y_r) of a frozen rung on one split (`head` fine-tuning)."""
    spec = {"rung": cfg.rung(rung).__dict__, "split": split, "limit": _limit(cfg, split),
            "max_length": cfg.max_length, "data": data_fingerprint(cfg.data_dir),
            "code": _base_spec(cfg)["code"]}

    def compute(tmp):
        pairs = load_pairs(_split_name(split), cfg.data_dir, limit=_limit(cfg, split))
        trunk, tok = load_trunk(cfg, cfg.rung(rung), cache)
        model = RewardModel(trunk.config.hidden_size, truncate_layers(trunk, cfg.rung(rung).feature_layer)).eval()
        seqs = [encode_pair(tok, p, r, cfg.max_length)[0]
                for p, c, rj in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"]) for r in (c, rj)]
        feats = _features(model, seqs, tok.pad_token_id, desc=f"features {rung}/{split}")
        np.save(tmp / "features.npy", feats.reshape(len(pairs), 2, -1))
        return pd.DataFrame({"pair_id": pairs["pair_id"]}), {"hidden_size": int(feats.shape[-1])}

    return cache.get_or_compute("features", spec, compute)


@torch.no_grad()
def _features(model: RewardModel, seqs: list[list[int]], pad_id: int, desc: str, batch: int = 32) -> np.ndarray:
    """Features of every sequence, batched by length so little compute is spent on padding."""
    from .data import pad_batch

    order = np.argsort([len(s) for s in seqs], kind="stable")
    out = np.zeros((len(seqs), model.head.in_features), dtype=np.float32)
    for start in tqdm(range(0, len(seqs), batch), desc=desc, leave=False):
        idx = order[start:start + batch]
        ids, mask = pad_batch([seqs[i] for i in idx], pad_id, side="right")
        out[idx] = model.features(ids, mask).float().numpy()
    return out


def _examples(cfg: Config, rung: str, split: str, cache: RunCache, target: np.ndarray | None = None) -> PairExamples:
    entry = feature_entry(cfg, rung, split, cache)
    feats = torch.from_numpy(np.load(entry.file("features.npy")))
    n = feats.shape[0]
    t = torch.ones(n) if target is None else torch.as_tensor(target, dtype=torch.float32)
    return PairExamples(t, torch.full((n,), split == "helpful"), features=feats)


def _check_head(cfg: Config) -> None:
    if cfg.finetune != "head":
        raise ConfigError(f"finetune={cfg.finetune!r} is not implemented for reward models yet; use 'head'")


def _train_and_predict(cfg: Config, rung: str, examples: PairExamples, objective: str, alpha: float,
                       seed: int, cache: RunCache, eval_splits: tuple[str, ...], desc: str):
    """Fit a fresh head on `examples`, then score `eval_splits`; returns (results, record extras)."""
    hidden = examples.features.shape[-1]
    torch.manual_seed(seed)
    model = RewardModel(hidden)
    losses = train_reward_model(model, examples, objective=objective, alpha=alpha, lr=cfg.lr, epochs=cfg.epochs,
                                batch_size=cfg.batch_size, seed=seed, weight_decay=cfg.weight_decay, desc=desc)
    frames = []
    for split in eval_splits:
        ev = _examples(cfg, rung, split, cache)
        margin = predict_margins(model, ev)
        ids = feature_entry(cfg, rung, split, cache).results["pair_id"]
        frames.append(pd.DataFrame({"split": split, "pair_id": ids, "margin": margin,
                                    "confidence": sigmoid(margin)}))
    return pd.concat(frames, ignore_index=True), {"losses": losses, "head": model.head.weight.detach().tolist()}


def gt_entry(cfg: Config, rung: str, seed: int, cache: RunCache) -> Entry:
    """θ^gt: the rung trained on ground truth (`train_gt`), scored on every harmless split."""
    _check_head(cfg)
    spec = {"scenario": "rm_gt", "rung": cfg.rung(rung).__dict__, "seed": seed, **_base_spec(cfg)}

    def compute(tmp):
        ex = _examples(cfg, rung, "train_gt", cache)
        return _train_and_predict(cfg, rung, ex, "no_conflict", 0.0, seed, cache, HARMLESS, f"GT {rung} s{seed}")

    return cache.get_or_compute("rm", spec, compute)


def teacher_labels(entry: Entry, split: str = "train_w2s") -> np.ndarray:
    """A teacher's soft labels M_w(x) on a split, ordered by pair id."""
    res = entry.results
    return res[res["split"] == split].sort_values("pair_id")["confidence"].to_numpy()


def w2s_entry(cfg: Config, weak: str, strong: str, objective: str, seed: int, cache: RunCache) -> Entry:
    """θ_s^w: the strong rung trained on the weak GT model's soft labels under one objective."""
    _check_head(cfg)
    if cfg.rank(weak) >= cfg.rank(strong):
        raise ConfigError(f"weak rung {weak!r} must sit below strong rung {strong!r} in the ladder")
    teacher = gt_entry(cfg, weak, seed, cache)
    alpha = cfg.alpha if objective == "explicit" else 0.0
    spec = {"scenario": "rm_w2s", "strong": cfg.rung(strong).__dict__, "teacher": teacher.record["key"],
            "objective": objective, "alpha": alpha, "seed": seed, **_base_spec(cfg)}

    def compute(tmp):
        ex = _examples(cfg, strong, "train_w2s", cache, target=teacher_labels(teacher))
        if objective in ("implicit", "adaptive"):
            ex = PairExamples.concat(ex, _examples(cfg, strong, "helpful", cache))
        return _train_and_predict(cfg, strong, ex, objective, alpha, seed, cache, ("test",),
                                  f"W2S {weak}->{strong} {objective} s{seed}")

    return cache.get_or_compute("rm", spec, compute)


def test_confidences(entry: Entry) -> np.ndarray:
    """Test-split confidences of a run, ordered by pair id."""
    return teacher_labels(entry, "test")
