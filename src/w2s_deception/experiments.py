"""The reward-modeling scenarios of the paper (§4), each a cached run: features, GT models, W2S students.

Every function returns a cache entry whose `results` table holds per-pair margins and
confidences; a repeat call with the same config trains nothing.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from peft import LoraConfig, get_peft_model
from tqdm.auto import tqdm

from .cache import Entry, RunCache, code_version, default_runs_dir
from .config import Config, ConfigError
from .data import data_key, encode_pair, load_pairs
from .features import feature_entry, split_limit, split_name
from .ladder import gguf_path, load_reader, load_tokenizer_for, trunk_key
from .metrics import sigmoid
from .models import RewardModel
from .results import confidences, test_rows
from .train import PairExamples, predict_margins, train_reward_model

HARMLESS = ("train_gt", "train_w2s", "test")
# the data files every reward-model run's key hashes: the harmless splits and the helpful pairs
RM_READS = tuple(split_name(s) for s in (*HARMLESS, "helpful"))


def open_cache(cfg: Config) -> RunCache:
    """The run cache of this config's runs folder (env `W2S_RUNS_DIR`, else `<repo>/runs`)."""
    return RunCache(cfg.runs_dir or default_runs_dir())


def _base_spec(cfg: Config, rung: str) -> dict:
    """What a reward-model run of `rung` depends on besides its own scenario: the training settings, the
    rung's weights, the bytes of the data and the code it runs."""
    return {"train": cfg.training_spec(), "trunk": trunk_key(cfg, cfg.rung(rung)),
            "data": data_key(RM_READS, cfg.data_dir), "code": code_version(__name__)}


def _examples(cfg: Config, rung: str, split: str, cache: RunCache,
              target: np.ndarray | None = None) -> tuple[PairExamples, np.ndarray]:
    """A split's pairs for training/scoring — cached features (`head`) or token ids (`full`, `lora`) —
    and their pair ids, in the same order. `target` defaults to 1 (ground truth)."""
    helpful = split == "helpful"
    if cfg.finetune == "head":
        entry = feature_entry(cfg, rung, split, cache)
        feats = torch.tensor(np.load(entry.file("features.npy")))
        ids = entry.results["pair_id"].to_numpy()
        ex = PairExamples(_targets(target, len(ids)), torch.full((len(ids),), helpful), features=feats)
        return ex, ids
    pairs = load_pairs(split_name(split), cfg.data_dir, limit=split_limit(cfg, split))
    tok = load_tokenizer_for(cfg, cfg.rung(rung), cache)
    chosen = [encode_pair(tok, p, c, cfg.max_length)[0] for p, c in zip(pairs["prompt"], pairs["chosen"])]
    rejected = [encode_pair(tok, p, r, cfg.max_length)[0] for p, r in zip(pairs["prompt"], pairs["rejected"])]
    ids = np.asarray(pairs["pair_id"])
    ex = PairExamples(_targets(target, len(ids)), torch.full((len(ids),), helpful), chosen_ids=chosen,
                      rejected_ids=rejected, pad_id=tok.pad_token_id)
    return ex, ids


def _targets(target: np.ndarray | None, n: int) -> torch.Tensor:
    """Training targets as a fresh float tensor: the given soft labels, or 1 for ground truth."""
    return torch.ones(n) if target is None else torch.tensor(np.asarray(target, dtype=np.float32))


def _fresh_model(cfg: Config, rung: str, cache: RunCache, hidden: int | None) -> RewardModel:
    """A new reward model: a head alone (`head`), or the rung's LM, cut at the depth its head reads,
    with a head (`full`; `lora` adapters)."""
    if cfg.finetune == "head":
        return RewardModel(hidden)
    lm = load_reader(cfg, cfg.rung(rung), cache)[0]
    if cfg.finetune == "lora":  # App. H: r = 8, alpha = 16 on attention and MLP
        lm = get_peft_model(lm, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear")).get_base_model()
    return RewardModel(lm.config.hidden_size, lm)


def feature_scale(features: torch.Tensor) -> torch.Tensor:
    """Per-dimension standard deviation of training features (B, 2, H) over chosen and rejected rows;
    1 where a dimension never varies.

    A head trains on features divided by it. Adam moves every weight by about lr per step, so on raw
    features a dimension's pull on the margin grows with its spread (SmolLM2's widest is ~10× its
    median); standardised, every dimension starts equal. The bias-free head makes centring moot.
    """
    std = features.reshape(-1, features.shape[-1]).std(dim=0)
    return torch.where(std > 0, std, torch.ones_like(std))


def _train_and_predict(cfg: Config, rung: str, examples: PairExamples, objective: str, alpha: float,
                       seed: int, cache: RunCache, eval_splits: tuple[str, ...], desc: str,
                       loaded: dict[str, tuple[PairExamples, np.ndarray]] | None = None):
    """Train a fresh reward model on `examples`, then score `eval_splits` (those in `loaded` from
    there, not read again); returns (results, record extras)."""
    torch.manual_seed(seed)
    scale = hidden = None
    if examples.features is not None:
        scale = feature_scale(examples.features)
        examples = replace(examples, features=examples.features / scale)
        hidden = examples.features.shape[-1]
    model = _fresh_model(cfg, rung, cache, hidden)
    losses = train_reward_model(model, examples, objective=objective, alpha=alpha, lr=cfg.lr, epochs=cfg.epochs,
                                batch_size=cfg.batch_size, micro_batch=cfg.micro_batch, seed=seed,
                                weight_decay=cfg.weight_decay, desc=desc)
    frames = []
    for split in eval_splits:
        ev, ids = (loaded or {}).get(split) or _examples(cfg, rung, split, cache)
        if scale is not None:
            ev = replace(ev, features=ev.features / scale)
        # token pairs in micro-batches (large batches overflow the CPU's caches), features in large ones
        size = cfg.micro_batch if ev.features is None else cfg.batch_size * 4
        margin = predict_margins(model, ev, batch_size=size)
        frames.append(pd.DataFrame({"split": split, "pair_id": ids, "margin": margin,
                                    "confidence": sigmoid(margin)}))
    extras = {"losses": losses}
    if scale is not None:  # a few hundred numbers: the head on raw features, so any score can be recomputed
        extras["head"] = (model.head.weight.detach() / scale).tolist()
    return pd.concat(frames, ignore_index=True), extras


def gt_entry(cfg: Config, rung: str, seed: int, cache: RunCache) -> Entry:
    """θ^gt: the rung trained on ground truth (`train_gt`), scored on every harmless split."""
    spec = {"scenario": "rm_gt", "rung": cfg.rung(rung).spec(), "seed": seed, **_base_spec(cfg, rung)}

    def compute(tmp):
        ex, ids = _examples(cfg, rung, "train_gt", cache)
        return _train_and_predict(cfg, rung, ex, "no_conflict", 0.0, seed, cache, HARMLESS, f"GT {rung} s{seed}",
                                  loaded={"train_gt": (ex, ids)})

    return cache.get_or_compute("rm", spec, compute)


def w2s_entry(cfg: Config, weak: str, strong: str, objective: str, seed: int, cache: RunCache) -> Entry:
    """θ_s^w: the strong rung trained on the weak GT model's soft labels under one objective."""
    if cfg.rank(weak) >= cfg.rank(strong):
        raise ConfigError(f"weak rung {weak!r} must sit below strong rung {strong!r} in the ladder")
    teacher = gt_entry(cfg, weak, seed, cache)
    alpha = cfg.alpha if objective == "explicit" else 0.0
    spec = {"scenario": "rm_w2s", "strong": cfg.rung(strong).spec(), "teacher": teacher.record["key"],
            "objective": objective, "alpha": alpha, "seed": seed, **_base_spec(cfg, strong)}

    def compute(tmp):
        ex, _ = _examples(cfg, strong, "train_w2s", cache, target=confidences(teacher, "train_w2s"))
        if objective in ("implicit", "adaptive"):
            ex = PairExamples.concat(ex, _examples(cfg, strong, "helpful", cache)[0])
        return _train_and_predict(cfg, strong, ex, objective, alpha, seed, cache, ("test",),
                                  f"W2S {weak}->{strong} {objective} s{seed}")

    return cache.get_or_compute("rm", spec, compute)


def run_rm_matrix(cfg: Config, cache: RunCache,
                  objectives: tuple[str, ...] = ("no_conflict", "explicit", "implicit")) -> pd.DataFrame:
    """Every run of the reward-modeling chapter; returns test confidences in long form.

    Columns: model ("gt" or the W2S objective), weak, strong, seed, pair_id, confidence. GT rows
    have weak == strong == the rung.
    """
    for rung in cfg.rungs:  # a wheel-shipped rung that is not installed fails now, not after hours of training
        if cfg.rung(rung).source == "gguf":
            gguf_path(cfg.rung(rung))
    frames = []
    jobs = [("gt", r, r, s) for r in cfg.rungs for s in cfg.seeds]
    jobs += [(o, w, st, s) for w, st in cfg.pairs() for o in objectives for s in cfg.seeds]
    for model, weak, strong, seed in tqdm(jobs, desc="reward-model runs", disable=None):
        entry = gt_entry(cfg, weak, seed, cache) if model == "gt" else w2s_entry(cfg, weak, strong, model, seed, cache)
        frames.append(test_rows(entry, model=model, weak=weak, strong=strong, seed=seed))
    return pd.concat(frames, ignore_index=True)

