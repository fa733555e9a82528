"""Preference optimisation of policies (§5, App. E–H): SFT, then SimPO or DPO, each a cached run.

A policy's confidence on a test pair comes from its own response log-probs (SPEC §1): SimPO
σ(π̄_c − π̄_r) with mean log-probs, DPO σ((Σ log p_c − Σ log p_r) / 50). The weak teacher of a
weak-to-strong run is the weak rung preference-optimised on ground truth with the same method;
its predicted order on `train_w2s` (not its confidence) is the student's label.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, PreTrainedModel

from .cache import Entry, RunCache, code_version
from .config import PO_METHODS, Config, ConfigError, get_config
from .data import encode_pair, load_pairs, pad_batch
from .features import split_name
from .ladder import data_fingerprint, load_tokenizer_for, load_trunk
from .losses import dpo_loss, po_objective, sft_nll, simpo_loss
from .metrics import dpo_confidence, simpo_confidence
from .train import fit

PO_MODULES = ["data", "corpus", "ladder", "models", "losses", "train", "preference"]
PO_OBJECTIVES = ("no_conflict", "explicit", "implicit")
SFT_FIELDS = ("po_finetune", "sft_lr", "po_pairs", "batch_size", "max_length", "pretrain_batch", "pretrain_lr")
WARMUP = 0.1  # SFT: linear warm-up over the first 10 % of steps, then constant (SPEC §2)
# Rungs the preference chapters use by default: whole-policy training costs ~100× a reward head on
# cached features, so the cpu profile keeps its three smallest rungs (about 20 CPU-minutes per seed).
PO_RUNGS = {"cpu": ("pico", "nano", "micro")}


def po_config(profile: str | None = None, **overrides) -> Config:
    """A preference chapter's config: the profile's, with its default rungs (PO_RUNGS), `overrides` first."""
    profile = profile or get_config().profile
    given = {k: v for k, v in overrides.items() if v is not None}
    return get_config(profile, **{"rungs": PO_RUNGS.get(profile), **given})


@dataclass
class PolicyPairs(Dataset):
    """Tokenised pairs in training order: `first` is the response to prefer, `second` the other.

    `gt_first` says whether `first` is the ground-truth chosen response (False where weak labels
    swapped the pair); `ref_*` are the reference model's summed response log-probs (DPO only).
    """

    first: list[list[int]]
    second: list[list[int]]
    first_start: list[int]
    second_start: list[int]
    gt_first: torch.Tensor
    helpful: torch.Tensor
    pad_id: int
    ref_first: torch.Tensor | None = None
    ref_second: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.first)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, idx: list[int]) -> dict[str, torch.Tensor]:
        """One right-padded batch: the `first` rows, then the `second` rows (one forward pass)."""
        seqs = [self.first[i] for i in idx] + [self.second[i] for i in idx]
        ids, mask = pad_batch(seqs, self.pad_id, side="right")
        batch = {"input_ids": ids, "attention_mask": mask,
                 "response_start": torch.tensor([self.first_start[i] for i in idx] + [self.second_start[i] for i in idx]),
                 "gt_first": self.gt_first[idx], "helpful": self.helpful[idx]}
        if self.ref_first is not None:
            batch["ref_first"], batch["ref_second"] = self.ref_first[idx], self.ref_second[idx]
        return batch

    def ordered(self, first_wins: np.ndarray) -> PolicyPairs:
        """The same pairs, swapped where `first_wins` is False (a teacher's predicted order)."""
        keep = [bool(k) for k in first_wins]
        pick = lambda a, b: [x if k else y for x, y, k in zip(a, b, keep)]  # noqa: E731
        return replace(self, first=pick(self.first, self.second), second=pick(self.second, self.first),
                       first_start=pick(self.first_start, self.second_start),
                       second_start=pick(self.second_start, self.first_start),
                       gt_first=self.gt_first == torch.tensor(keep))

    @staticmethod
    def concat(a: PolicyPairs, b: PolicyPairs) -> PolicyPairs:
        """Both sets of pairs in one stream (harmless + helpful for the implicit objective)."""
        return PolicyPairs(a.first + b.first, a.second + b.second, a.first_start + b.first_start,
                           a.second_start + b.second_start, torch.cat([a.gt_first, b.gt_first]),
                           torch.cat([a.helpful, b.helpful]), a.pad_id)


class _SFTBatches(Dataset):
    """SFT view of PolicyPairs: each item is one `first` response."""

    def __init__(self, pairs: PolicyPairs) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, idx: list[int]) -> dict[str, torch.Tensor]:
        ids, mask = pad_batch([self.pairs.first[i] for i in idx], self.pairs.pad_id, side="right")
        return {"input_ids": ids, "attention_mask": mask,
                "response_start": torch.tensor([self.pairs.first_start[i] for i in idx])}


def policy_split_limit(cfg: Config, split: str) -> int | None:
    """How many pairs of a split policies use (`po_pairs` for harmless splits, `po_helpful`)."""
    return cfg.po_helpful if split == "helpful" else cfg.po_pairs


def load_policy_pairs(cfg: Config, rung: str, split: str, cache: RunCache) -> tuple[PolicyPairs, np.ndarray]:
    """A split's pairs tokenised for `rung`, in ground-truth order, and their pair ids."""
    pairs = load_pairs(split_name(split), cfg.data_dir, limit=policy_split_limit(cfg, split))
    tok = load_tokenizer_for(cfg, cfg.rung(rung), cache)
    chosen = [encode_pair(tok, p, c, cfg.max_length) for p, c in zip(pairs["prompt"], pairs["chosen"])]
    rejected = [encode_pair(tok, p, r, cfg.max_length) for p, r in zip(pairs["prompt"], pairs["rejected"])]
    n = len(chosen)
    out = PolicyPairs([c[0] for c in chosen], [r[0] for r in rejected], [c[1] for c in chosen],
                      [r[1] for r in rejected], torch.ones(n, dtype=torch.bool),
                      torch.full((n,), split == "helpful"), tok.pad_token_id)
    return out, np.asarray(pairs["pair_id"])


def response_logps(lm: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   response_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log p(token | prefix) over each row's response tokens, and their count.

    Rows are right-padded; row i's response occupies positions ≥ response_start[i] among its real
    tokens. Position 0 has no prefix, so it is never scored (matters once truncation cut the prompt).
    """
    logits = lm(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    position = torch.arange(1, input_ids.shape[1], device=input_ids.device)
    scored = (position[None, :] >= response_start[:, None]) & attention_mask[:, 1:].bool()
    # only scored positions enter the vocabulary-wide softmax: most of the cost on small models
    token_logp = -F.cross_entropy(logits[scored].float(), input_ids[:, 1:][scored], reduction="none")
    rows = scored.nonzero()[:, 0]
    total = torch.zeros(input_ids.shape[0], dtype=token_logp.dtype, device=input_ids.device).index_add(0, rows, token_logp)
    return total, scored.sum(dim=1)


def pair_logps(lm: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Summed response log-probs and token counts of the `first` and `second` rows of a batch."""
    s, n = response_logps(lm, batch["input_ids"], batch["attention_mask"], batch["response_start"])
    b = len(s) // 2
    return s[:b], n[:b], s[b:], n[b:]


@torch.no_grad()
def score_pairs(lm: torch.nn.Module, pairs: PolicyPairs, batch_size: int) -> pd.DataFrame:
    """Summed response log-probs and lengths of both responses of every pair, in order."""
    lm.eval()
    loader = DataLoader(pairs, batch_size=batch_size, shuffle=False, collate_fn=pairs.collate)
    parts = [torch.stack(pair_logps(lm, b), dim=1) for b in loader]
    out = torch.cat(parts).double().cpu().numpy()
    return pd.DataFrame({"logp_first": out[:, 0], "n_first": out[:, 1].astype(int),
                         "logp_second": out[:, 2], "n_second": out[:, 3].astype(int)})


def po_confidence(method: str, logp_c: np.ndarray, n_c: np.ndarray, logp_r: np.ndarray, n_r: np.ndarray) -> np.ndarray:
    """A policy's confidence that the GT-chosen response is preferred (SPEC §1)."""
    if method == "simpo":
        return simpo_confidence(logp_c / np.maximum(n_c, 1), logp_r / np.maximum(n_r, 1))
    return dpo_confidence(logp_c, logp_r)


def po_loss_fn(cfg: Config, method: str, objective: str):
    """The batch loss of one method under one objective, for `train.fit`."""
    alpha = cfg.alpha

    def loss_fn(lm: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        lf, nf, ls, ns = pair_logps(lm, batch)
        if method == "simpo":
            pf, ps = lf / nf.clamp(min=1), ls / ns.clamp(min=1)
            forward = simpo_loss(pf, ps, cfg.simpo_beta, cfg.simpo_gamma)
            backward = simpo_loss(ps, pf, cfg.simpo_beta, cfg.simpo_gamma)
        else:
            pf, ps = lf, ls  # "prefers" is judged by the policy alone, as its confidence is
            rf, rs = batch["ref_first"], batch["ref_second"]
            forward = dpo_loss(lf, ls, rf, rs, cfg.dpo_beta)
            backward = dpo_loss(ls, lf, rs, rf, cfg.dpo_beta)
        gt_first = batch["gt_first"]
        reverse = torch.where(gt_first, backward, forward)  # L_PO(x, y_r^gt, y_c^gt)
        prefers_gt_rejected = torch.where(gt_first, pf < ps, ps < pf)
        return po_objective(forward, reverse, prefers_gt_rejected, ~batch["helpful"], objective, alpha)

    return loss_fn


def _sft_loss(lm: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    s, n = response_logps(lm, batch["input_ids"], batch["attention_mask"], batch["response_start"])
    return sft_nll(s, n)


def _trainable(cfg: Config, lm: PreTrainedModel) -> torch.nn.Module:
    """The policy to optimise: the whole LM, or LoRA adapters on it (App. H: r = 8, α = 16)."""
    if cfg.po_finetune == "lora":
        return get_peft_model(lm, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    return lm


def _merged(model: torch.nn.Module) -> PreTrainedModel:
    """A plain LM with any LoRA adapters folded into its weights."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def _train_spec(cfg: Config, method: str, objective: str) -> dict:
    """The config part of a PO run's key: only the fields this method and objective read."""
    spec = cfg.training_spec("po")
    spec["alpha"] = cfg.alpha if objective == "explicit" else 0.0
    if objective != "implicit":
        spec["po_helpful"] = 0
    for unused in (("dpo_beta", "dpo_epochs") if method == "simpo" else ("simpo_beta", "simpo_gamma", "po_epochs")):
        spec.pop(unused)
    return spec


def _check(cfg: Config, method: str, objective: str) -> None:
    if method not in PO_METHODS:
        raise ConfigError(f"invalid method={method!r}: expected one of {PO_METHODS}")
    if objective not in PO_OBJECTIVES:
        raise ConfigError(f"invalid objective={objective!r}: expected one of {PO_OBJECTIVES}")


def sft_entry(cfg: Config, rung: str, seed: int, cache: RunCache, teacher: Entry | None = None) -> Entry:
    """The rung after SFT on chosen responses of its training split: `train_gt` with ground truth,
    or `train_w2s` as ordered by `teacher` (weak-chosen responses). Keeps the weights (the policy's
    starting point and DPO's reference)."""
    split = "train_gt" if teacher is None else "train_w2s"
    po = cfg.training_spec("po")
    spec = {"scenario": "po_sft", "rung": cfg.rung(rung).spec(), "labels": "gt" if teacher is None else teacher.record["key"],
            "seed": seed, "train": {k: po[k] for k in SFT_FIELDS}, "data": data_fingerprint(cfg.data_dir),
            "code": code_version(PO_MODULES)}

    def compute(tmp):
        pairs, _ = _training_pairs(cfg, rung, split, cache, teacher)
        torch.manual_seed(seed)
        lm, tok = load_trunk(cfg, cfg.rung(rung), cache)
        model = _trainable(cfg, lm)
        losses = fit(model, _SFTBatches(pairs), _sft_loss, lr=cfg.sft_lr, epochs=1, batch_size=cfg.batch_size,
                     seed=seed, warmup=WARMUP, desc=f"SFT {rung} s{seed}")
        lm = _merged(model)
        lm.save_pretrained(tmp / "model")
        tok.save_pretrained(tmp / "model")
        return pd.DataFrame({"step": range(len(losses)), "loss": losses}), {"split": split}

    return cache.get_or_compute("po_sft", spec, compute)


def _training_pairs(cfg: Config, rung: str, split: str, cache: RunCache,
                    teacher: Entry | None) -> tuple[PolicyPairs, np.ndarray]:
    """Training pairs in ground-truth order, or in the teacher's predicted order on `train_w2s`."""
    pairs, ids = load_policy_pairs(cfg, rung, split, cache)
    if teacher is None:
        return pairs, ids
    labels = teacher_order(teacher)
    if len(labels) != len(ids):
        raise ConfigError(f"teacher scored {len(labels)} train_w2s pairs, the student trains on {len(ids)}")
    return pairs.ordered(labels), ids


def teacher_order(entry: Entry, split: str = "train_w2s") -> np.ndarray:
    """Where a teacher prefers the GT-chosen response (M_w ≥ 0.5), by pair id: the weak labels."""
    res = entry.results
    return res[res["split"] == split].sort_values("pair_id")["confidence"].to_numpy() >= 0.5


def _train_policy(cfg: Config, method: str, objective: str, rung: str, seed: int, cache: RunCache,
                  sft: Entry, pairs: PolicyPairs, eval_splits: tuple[str, ...], desc: str):
    """Preference-optimise the SFT model on `pairs`, then score `eval_splits` (GT order)."""
    torch.manual_seed(seed)
    lm = AutoModelForCausalLM.from_pretrained(sft.file("model"))
    if method == "dpo":  # the reference (the SFT model itself) scores the training pairs once
        ref = score_pairs(lm, pairs, cfg.batch_size * 4)
        pairs = replace(pairs, ref_first=torch.tensor(ref["logp_first"].to_numpy(), dtype=torch.float32),
                        ref_second=torch.tensor(ref["logp_second"].to_numpy(), dtype=torch.float32))
    model = _trainable(cfg, lm)
    epochs = cfg.po_epochs if method == "simpo" else cfg.dpo_epochs
    losses = fit(model, pairs, po_loss_fn(cfg, method, objective), lr=cfg.po_lr, epochs=epochs,
                 batch_size=cfg.batch_size, seed=seed, desc=desc)
    frames = []
    for split in eval_splits:
        ev, ids = load_policy_pairs(cfg, rung, split, cache)
        s = score_pairs(model, ev, cfg.batch_size * 4)
        conf = po_confidence(method, s["logp_first"].to_numpy(), s["n_first"].to_numpy(),
                             s["logp_second"].to_numpy(), s["n_second"].to_numpy())
        frames.append(pd.DataFrame({"split": split, "pair_id": ids, "logp_chosen": s["logp_first"],
                                    "n_chosen": s["n_first"], "logp_rejected": s["logp_second"],
                                    "n_rejected": s["n_second"], "confidence": conf}))
    return pd.concat(frames, ignore_index=True), {"losses": losses}


def po_gt_entry(cfg: Config, method: str, rung: str, seed: int, cache: RunCache) -> Entry:
    """θ^gt for preference optimisation: SFT then `method` on `train_gt` with ground truth; scored on
    `train_w2s` (its labels, when it teaches) and `test`."""
    _check(cfg, method, "no_conflict")
    sft = sft_entry(cfg, rung, seed, cache)
    spec = {"scenario": "po_gt", "method": method, "rung": cfg.rung(rung).spec(), "sft": sft.record["key"],
            "seed": seed, "train": _train_spec(cfg, method, "no_conflict"), "data": data_fingerprint(cfg.data_dir),
            "code": code_version(PO_MODULES)}

    def compute(tmp):
        pairs, _ = _training_pairs(cfg, rung, "train_gt", cache, None)
        return _train_policy(cfg, method, "no_conflict", rung, seed, cache, sft, pairs, ("train_w2s", "test"),
                             f"{method} GT {rung} s{seed}")

    return cache.get_or_compute("po", spec, compute)


def po_w2s_entry(cfg: Config, method: str, weak: str, strong: str, objective: str, seed: int,
                 cache: RunCache) -> Entry:
    """θ_s^w: the strong rung, SFT on weak-chosen responses, then `method` on the weak order of
    `train_w2s` under one objective (implicit: + `po_helpful` GT helpful pairs in the stream)."""
    _check(cfg, method, objective)
    if cfg.rank(weak) >= cfg.rank(strong):
        raise ConfigError(f"weak rung {weak!r} must sit below strong rung {strong!r} in the ladder")
    teacher = po_gt_entry(cfg, method, weak, seed, cache)
    sft = sft_entry(cfg, strong, seed, cache, teacher=teacher)
    spec = {"scenario": "po_w2s", "method": method, "strong": cfg.rung(strong).spec(), "teacher": teacher.record["key"],
            "sft": sft.record["key"], "objective": objective, "seed": seed,
            "train": _train_spec(cfg, method, objective), "data": data_fingerprint(cfg.data_dir),
            "code": code_version(PO_MODULES)}

    def compute(tmp):
        pairs, _ = _training_pairs(cfg, strong, "train_w2s", cache, teacher)
        if objective == "implicit":
            pairs = PolicyPairs.concat(pairs, load_policy_pairs(cfg, strong, "helpful", cache)[0])
        return _train_policy(cfg, method, objective, strong, seed, cache, sft, pairs, ("test",),
                             f"{method} W2S {weak}->{strong} {objective} s{seed}")

    return cache.get_or_compute("po", spec, compute)


def run_po_matrix(cfg: Config, cache: RunCache, method: str,
                  objectives: tuple[str, ...] = PO_OBJECTIVES) -> pd.DataFrame:
    """Every run of a preference-optimisation chapter; test confidences in long form (the columns of
    `experiments.run_rm_matrix`: model, weak, strong, seed, pair_id, confidence)."""
    jobs = [("gt", r, r, s) for r in cfg.rungs for s in cfg.seeds]
    jobs += [(o, w, st, s) for w, st in cfg.pairs() for o in objectives for s in cfg.seeds]
    frames = []
    for model, weak, strong, seed in tqdm(jobs, desc=f"{method} runs", disable=None):
        entry = (po_gt_entry(cfg, method, weak, seed, cache) if model == "gt"
                 else po_w2s_entry(cfg, method, weak, strong, model, seed, cache))
        res = entry.results
        res = res[res["split"] == "test"].sort_values("pair_id")
        frames.append(pd.DataFrame({"model": model, "weak": weak, "strong": strong, "seed": seed,
                                    "pair_id": res["pair_id"].to_numpy(), "confidence": res["confidence"].to_numpy()}))
    return pd.concat(frames, ignore_index=True)
