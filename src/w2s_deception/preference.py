"""Preference optimisation of policies (§5, App. E–H): SFT, then SimPO or DPO, each a cached run.

A policy's confidence on a test pair comes from its own response log-probs (SPEC §1): SimPO
σ(π̄_c − π̄_r) with mean log-probs, DPO σ((Σ log p_c − Σ log p_r) / 50). The weak teacher of a
weak-to-strong run is the weak rung preference-optimised on ground truth with the same method;
its predicted order on `train_w2s` (not its confidence) is the student's label.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import datasets
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from torch.utils.data import Dataset
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, PreTrainedModel

from . import arithmetic
from .cache import Entry, RunCache, code_version
from .config import PO_METHODS, PO_RUNGS, Config, ConfigError, get_config
from .data import data_key, encode_pair, load_pairs, pad_batch
from .activations import activation_entry, keep_top_blocks, load_states, pad_states
from .honesty import READS as HONESTY_READS
from .honesty import honesty_pairs
from .features import split_name
from .ladder import load_tokenizer_for, load_trunk, trunk_key
from .losses import dpo_loss, po_objective, sft_nll, simpo_loss
from .metrics import dpo_confidence, simpo_confidence
from .results import confidences, test_rows
from .train import fit, predict_rows

PO_OBJECTIVES = ("no_conflict", "explicit", "implicit")
KEEP = ("all", "oracle", "confident")  # which teacher-labelled pairs a student trains on (App. M)
SFT_FIELDS = ("po_finetune", "sft_lr", "po_pairs", "batch_size", "micro_batch", "max_length", "pretrain_batch",
              "pretrain_lr", "task", "frozen_blocks")
WARMUP = 0.1  # SFT: linear warm-up over the first 10 % of steps, then constant (SPEC §2)


def po_config(profile: str | None = None, **overrides) -> Config:
    """A preference chapter's config: the profile's, with its default rungs (`config.PO_RUNGS`), `overrides`
    first."""
    profile = profile or get_config().profile
    given = {k: v for k, v in overrides.items() if v is not None}
    return get_config(profile, **{"rungs": PO_RUNGS.get(profile), **given})


@dataclass
class PolicyPairs(Dataset):
    """Tokenised pairs in training order: `first` is the response to prefer, `second` the other.

    `gt_first` says whether `first` is the ground-truth chosen response (False where weak labels
    swapped the pair); `ref_*` are the reference model's summed response log-probs (DPO only);
    `*_states` the cached output of a frozen bottom for each sequence (`activations`), which the
    policy's top blocks read instead of the token ids.
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
    first_states: list[np.ndarray] | None = None
    second_states: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.first)

    def __getitem__(self, i: int) -> int:
        return i

    def length(self, i: int) -> int:
        """Padded length of pair i in a batch (its longer response)."""
        return max(len(self.first[i]), len(self.second[i]))

    def collate(self, idx: list[int]) -> dict[str, torch.Tensor]:
        """One right-padded batch: the `first` rows, then the `second` rows (one forward pass)."""
        seqs = [self.first[i] for i in idx] + [self.second[i] for i in idx]
        ids, mask = pad_batch(seqs, self.pad_id, side="right")
        batch = {"input_ids": ids, "attention_mask": mask,
                 "response_start": torch.tensor([self.first_start[i] for i in idx]
                                                + [self.second_start[i] for i in idx]),
                 "gt_first": self.gt_first[idx], "helpful": self.helpful[idx]}
        if self.ref_first is not None:
            batch["ref_first"], batch["ref_second"] = self.ref_first[idx], self.ref_second[idx]
        if self.first_states is not None:
            batch["inputs_embeds"] = pad_states([self.first_states[i] for i in idx]
                                                + [self.second_states[i] for i in idx])
        return batch

    def ordered(self, first_wins: np.ndarray) -> PolicyPairs:
        """The same pairs, swapped where `first_wins` is False (a teacher's predicted order)."""
        keep = [bool(k) for k in first_wins]
        pick = lambda a, b: None if a is None else [x if k else y for x, y, k in zip(a, b, keep)]  # noqa: E731
        return replace(self, first=pick(self.first, self.second), second=pick(self.second, self.first),
                       first_start=pick(self.first_start, self.second_start),
                       second_start=pick(self.second_start, self.first_start),
                       first_states=pick(self.first_states, self.second_states),
                       second_states=pick(self.second_states, self.first_states),
                       gt_first=self.gt_first == torch.tensor(keep))

    def subset(self, idx: np.ndarray) -> PolicyPairs:
        """The pairs at positions `idx`, in that order."""
        idx = [int(i) for i in idx]
        pick = lambda a: None if a is None else [a[i] for i in idx]  # noqa: E731
        ref = lambda t: None if t is None else t[idx]  # noqa: E731
        return replace(self, first=pick(self.first), second=pick(self.second), first_start=pick(self.first_start),
                       second_start=pick(self.second_start), gt_first=self.gt_first[idx], helpful=self.helpful[idx],
                       ref_first=ref(self.ref_first), ref_second=ref(self.ref_second),
                       first_states=pick(self.first_states), second_states=pick(self.second_states))

    @staticmethod
    def concat(a: PolicyPairs, b: PolicyPairs) -> PolicyPairs:
        """Both sets of pairs in one stream (harmless + helpful for the implicit objective)."""
        states = (lambda x, y: None if x is None else x + y)  # noqa: E731
        return PolicyPairs(a.first + b.first, a.second + b.second, a.first_start + b.first_start,
                           a.second_start + b.second_start, torch.cat([a.gt_first, b.gt_first]),
                           torch.cat([a.helpful, b.helpful]), a.pad_id,
                           first_states=states(a.first_states, b.first_states),
                           second_states=states(a.second_states, b.second_states))


class _SFTBatches(Dataset):
    """SFT view of PolicyPairs: each item is one `first` response."""

    def __init__(self, pairs: PolicyPairs) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> int:
        return i

    def length(self, i: int) -> int:
        """Padded length of row i in a batch."""
        return len(self.pairs.first[i])

    def units(self, idx: list[int]) -> int:
        """Response tokens `response_logps` scores in these rows (positions ≥ max(start, 1)): SFT's
        loss is a mean over them, so micro-batches and processes are weighted by them."""
        return sum(max(len(self.pairs.first[i]) - max(self.pairs.first_start[i], 1), 0) for i in idx)

    def collate(self, idx: list[int]) -> dict[str, torch.Tensor]:
        ids, mask = pad_batch([self.pairs.first[i] for i in idx], self.pairs.pad_id, side="right")
        if self.pairs.first_states is not None:
            return {"input_ids": ids, "attention_mask": mask,
                    "response_start": torch.tensor([self.pairs.first_start[i] for i in idx]),
                    "inputs_embeds": pad_states([self.pairs.first_states[i] for i in idx])}
        return {"input_ids": ids, "attention_mask": mask,
                "response_start": torch.tensor([self.pairs.first_start[i] for i in idx])}


def policy_split_limit(cfg: Config, split: str) -> int | None:
    """How many pairs of a split policies use (`po_pairs` for the task's splits, `po_helpful`)."""
    return cfg.po_helpful if split == "helpful" else cfg.po_pairs


def task_pairs(cfg: Config, split: str) -> datasets.Dataset:
    """A split of the config's task, capped as configured. `helpful` is the implicit conflict's pairs:
    hh-helpful/train for the HH tasks, the `?` instruction's pairs for the arithmetic task."""
    limit = policy_split_limit(cfg, split)
    if cfg.task == "arithmetic":
        return arithmetic.pairs(split, limit=limit)
    if cfg.task == "honesty" and split != "helpful":
        return honesty_pairs(split, cfg.data_dir, limit=limit)
    return load_pairs(split_name(split), cfg.data_dir, limit=limit)


def task_data_key(cfg: Config) -> dict:
    """The bytes of the data a policy run of the config's task reads (its splits and the helpful pairs), for
    its cache key; the arithmetic task's pairs are generated, so its code (hashed) is its data."""
    if cfg.task == "arithmetic":
        return {"generated": arithmetic.VERSION}
    splits = HONESTY_READS if cfg.task == "honesty" else tuple(split_name(s) for s in ("train_gt", "train_w2s", "test"))
    return data_key((*splits, split_name("helpful")), cfg.data_dir)


def load_policy_pairs(cfg: Config, rung: str, split: str, cache: RunCache) -> tuple[PolicyPairs, np.ndarray]:
    """A split's pairs tokenised for `rung`, in ground-truth order, and their pair ids."""
    pairs = task_pairs(cfg, split)
    tok = load_tokenizer_for(cfg, cfg.rung(rung), cache)
    chosen = [encode_pair(tok, p, c, cfg.max_length) for p, c in zip(pairs["prompt"], pairs["chosen"])]
    rejected = [encode_pair(tok, p, r, cfg.max_length) for p, r in zip(pairs["prompt"], pairs["rejected"])]
    n = len(chosen)
    out = PolicyPairs([c[0] for c in chosen], [r[0] for r in rejected], [c[1] for c in chosen],
                      [r[1] for r in rejected], torch.ones(n, dtype=torch.bool),
                      torch.full((n,), split == "helpful"), tok.pad_token_id)
    ids = np.asarray(pairs["pair_id"])
    if cfg.frozen_blocks:  # the top blocks read the frozen bottom's cached output
        key = {"task": cfg.task, "split": split, "limit": policy_split_limit(cfg, split), "max_length": cfg.max_length,
               "data": task_data_key(cfg)}
        entry = activation_entry(cfg, rung, split, cache, out.first + out.second, tok.pad_token_id, ids, key)
        states = load_states(entry)
        out = replace(out, first_states=states[:n], second_states=states[n:])
    return out, ids


def response_logps(lm: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   response_start: torch.Tensor, inputs_embeds: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log p(token | prefix) over each row's response tokens, and their count.

    Rows are right-padded; row i's response occupies positions ≥ response_start[i] among its real
    tokens. Position 0 has no prefix, so it is never scored (matters once truncation cut the prompt).
    The LM head runs on scored positions only: on small policies with a 4,096-token vocabulary it is
    most of the compute, and prompts are about half of every sequence. With `inputs_embeds` (a frozen
    bottom's cached output, `activations`) `lm` is the top blocks and reads those instead of the ids.
    """
    given = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
    out = lm(**given, attention_mask=attention_mask, output_hidden_states=True, logits_to_keep=1)
    position = torch.arange(1, input_ids.shape[1], device=input_ids.device)
    scored = (position[None, :] >= response_start[:, None]) & attention_mask[:, 1:].bool()
    logits = lm.get_output_embeddings()(out.hidden_states[-1][:, :-1][scored])
    token_logp = -F.cross_entropy(logits.float(), input_ids[:, 1:][scored], reduction="none")
    rows = scored.nonzero()[:, 0]
    total = torch.zeros(input_ids.shape[0], dtype=token_logp.dtype,
                        device=input_ids.device).index_add(0, rows, token_logp)
    return total, scored.sum(dim=1)


class ResponseScorer(torch.nn.Module):
    """A policy whose forward is `response_logps`: what `train.fit` trains and the losses call.

    `fit` gives the losses the model as accelerate prepared it, and under DDP or FSDP all of a step's
    computation must run inside that wrapper's forward, the LM head on the scored positions included
    (called on a DDP-wrapped LM it is not even reachable: `get_output_embeddings` is the LM's).
    """

    def __init__(self, lm: torch.nn.Module) -> None:
        super().__init__()
        self.lm = lm
        # what FSDP's wrap policy reads when its config names no layer class: the LM's decoder layers
        self._no_split_modules = getattr(lm, "_no_split_modules", None)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: torch.Tensor,
                inputs_embeds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return response_logps(self.lm, input_ids, attention_mask, response_start, inputs_embeds)


def pair_logps(scorer: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Summed response log-probs and token counts of the `first` and `second` rows of a batch."""
    s, n = scorer(batch["input_ids"], batch["attention_mask"], batch["response_start"], batch.get("inputs_embeds"))
    b = len(s) // 2
    return s[:b], n[:b], s[b:], n[b:]


@torch.no_grad()
def score_pairs(lm: torch.nn.Module, pairs: PolicyPairs, batch_size: int) -> pd.DataFrame:
    """Summed response log-probs and lengths of both responses of every pair, in order.

    Called with `micro_batch` pairs per batch: larger batches build logit tensors too big for the
    CPU's caches (128 pairs: 2.2x slower on the `micro` rung than 16 or 8).
    """
    scorer = ResponseScorer(lm).eval()
    out = predict_rows(pairs, lambda b: torch.stack(pair_logps(scorer, b), dim=1), batch_size).double().cpu().numpy()
    return pd.DataFrame({"logp_first": out[:, 0], "n_first": out[:, 1].astype(int),
                         "logp_second": out[:, 2], "n_second": out[:, 3].astype(int)})


def po_confidence(method: str, logp_c: np.ndarray, n_c: np.ndarray, logp_r: np.ndarray, n_r: np.ndarray,
                  dpo_norm: float = 50.0) -> np.ndarray:
    """A policy's confidence that the GT-chosen response is preferred (SPEC §1; DPO's L = `dpo_norm`)."""
    if method == "simpo":
        return simpo_confidence(logp_c / np.maximum(n_c, 1), logp_r / np.maximum(n_r, 1))
    return dpo_confidence(logp_c, logp_r, dpo_norm)


def po_loss_fn(cfg: Config, method: str, objective: str):
    """The batch loss of one method under one objective, for `train.fit`."""
    alpha = cfg.alpha

    def loss_fn(scorer: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        lf, nf, ls, ns = pair_logps(scorer, batch)
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


def _sft_loss(scorer: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    s, n = scorer(batch["input_ids"], batch["attention_mask"], batch["response_start"], batch.get("inputs_embeds"))
    return sft_nll(s, n)


def _trainable(cfg: Config, lm: PreTrainedModel) -> torch.nn.Module:
    """The policy to optimise: the whole LM, or LoRA adapters on it (App. H: r = 8, α = 16), on its top
    blocks only when `frozen_blocks` are frozen and read from the activation cache."""
    if cfg.frozen_blocks:
        lm = keep_top_blocks(lm, cfg.frozen_blocks)
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
    for unused in (("dpo_beta", "dpo_epochs", "dpo_norm") if method == "simpo"
                   else ("simpo_beta", "simpo_gamma", "po_epochs")):
        spec.pop(unused)
    return spec


def _check(cfg: Config, method: str, objective: str) -> None:
    if method not in PO_METHODS:
        raise ConfigError(f"invalid method={method!r}: expected one of {PO_METHODS}")
    if objective not in PO_OBJECTIVES:
        raise ConfigError(f"invalid objective={objective!r}: expected one of {PO_OBJECTIVES}")


def keep_mask(m_w: np.ndarray, keep: str, threshold: float) -> np.ndarray:
    """Which teacher-labelled pairs a student trains on (App. M), from the teacher's confidence M_w in
    the GT-chosen response: `all`; `oracle`, labels correct and confident (M_w ≥ T, needs ground
    truth); `confident`, labels confident either way (max(M_w, 1 − M_w) ≥ T, what a deployer can run)."""
    if keep not in KEEP:
        raise ConfigError(f"invalid keep={keep!r}: expected one of {KEEP}")
    m_w = np.asarray(m_w, dtype=float)
    if keep == "oracle":
        return m_w >= threshold
    if keep == "confident":
        return np.maximum(m_w, 1 - m_w) >= threshold
    return np.ones(len(m_w), dtype=bool)


@dataclass(frozen=True)
class Supervision:
    """What a policy learns from: a split in ground-truth order (no teacher) or in a teacher's
    predicted order, all of its pairs or only those `keep` selects at `threshold`."""

    split: str
    teacher: Entry | None = None
    keep: str = "all"
    threshold: float = 0.75

    def spec(self) -> dict:
        """Its part of a run's cache key."""
        out = {"split": self.split, "labels": "gt" if self.teacher is None else self.teacher.record["key"],
               "keep": self.keep}
        if self.keep != "all":
            out["threshold"] = self.threshold
        return out


def _training_pairs(cfg: Config, rung: str, cache: RunCache, sup: Supervision) -> PolicyPairs:
    """The supervision's pairs: in GT order, or in the teacher's predicted order (M_w ≥ 0.5 keeps the
    GT-chosen response first) and filtered by `keep`."""
    pairs, ids = load_policy_pairs(cfg, rung, sup.split, cache)
    if sup.teacher is None:
        return pairs
    m_w = confidences(sup.teacher, sup.split)
    if len(m_w) != len(ids):
        raise ConfigError(f"teacher scored {len(m_w)} {sup.split} pairs, the student trains on {len(ids)}")
    kept = np.flatnonzero(keep_mask(m_w, sup.keep, sup.threshold))
    if len(kept) == 0:
        raise ConfigError(f"keep={sup.keep!r} at T = {sup.threshold} leaves no {sup.split} pair to train on")
    return pairs.ordered(m_w >= 0.5).subset(kept)


def sft_entry(cfg: Config, rung: str, seed: int, cache: RunCache, sup: Supervision = Supervision("train_gt")) -> Entry:
    """The rung after SFT on the preferred responses of its supervision (GT-chosen, or weak-chosen in
    the teacher's order). Keeps the weights (the policy's starting point and DPO's reference)."""
    po = cfg.training_spec("po")
    spec = {"scenario": "po_sft", "rung": cfg.rung(rung).spec(), "trunk": trunk_key(cfg, cfg.rung(rung)),
            "supervision": sup.spec(), "seed": seed, "train": {k: po[k] for k in SFT_FIELDS},
            "data": task_data_key(cfg), "code": code_version(__name__)}

    def compute(tmp):
        pairs = _training_pairs(cfg, rung, cache, sup)
        torch.manual_seed(seed)
        lm, tok = load_trunk(cfg, cfg.rung(rung), cache)
        model = _trainable(cfg, lm)
        losses = fit(ResponseScorer(model), _SFTBatches(pairs), _sft_loss, lr=cfg.sft_lr, epochs=1,
                     batch_size=cfg.batch_size, micro_batch=cfg.micro_batch, seed=seed, warmup=WARMUP,
                     desc=f"SFT {rung} s{seed}")
        lm = _merged(model)
        lm.save_pretrained(tmp / "model")
        tok.save_pretrained(tmp / "model")
        return pd.DataFrame({"step": range(len(losses)), "loss": losses}), {"n_pairs": len(pairs)}

    return cache.get_or_compute("po_sft", spec, compute)


def _train_policy(cfg: Config, method: str, objective: str, rung: str, seed: int, cache: RunCache,
                  sft: Entry, pairs: PolicyPairs, eval_splits: tuple[str, ...], desc: str):
    """Preference-optimise the SFT model on `pairs`, then score `eval_splits` (GT order)."""
    torch.manual_seed(seed)
    lm = AutoModelForCausalLM.from_pretrained(sft.file("model"))
    if method == "dpo":  # the reference (the SFT model itself) scores the training pairs once
        ref = score_pairs(lm, pairs, cfg.micro_batch)
        pairs = replace(pairs, ref_first=torch.tensor(ref["logp_first"].to_numpy(), dtype=torch.float32),
                        ref_second=torch.tensor(ref["logp_second"].to_numpy(), dtype=torch.float32))
    model = _trainable(cfg, lm)
    epochs = cfg.po_epochs if method == "simpo" else cfg.dpo_epochs
    losses = fit(ResponseScorer(model), pairs, po_loss_fn(cfg, method, objective), lr=cfg.po_lr, epochs=epochs,
                 batch_size=cfg.batch_size, micro_batch=cfg.micro_batch, seed=seed, desc=desc)
    frames = []
    for split in eval_splits:
        ev, ids = load_policy_pairs(cfg, rung, split, cache)
        s = score_pairs(model, ev, cfg.micro_batch)
        conf = po_confidence(method, s["logp_first"].to_numpy(), s["n_first"].to_numpy(),
                             s["logp_second"].to_numpy(), s["n_second"].to_numpy(), cfg.dpo_norm)
        frames.append(pd.DataFrame({"split": split, "pair_id": ids, "logp_chosen": s["logp_first"],
                                    "n_chosen": s["n_first"], "logp_rejected": s["logp_second"],
                                    "n_rejected": s["n_second"], "confidence": conf}))
    return pd.concat(frames, ignore_index=True), {"losses": losses, "n_pairs": len(pairs)}


def policy_entry(cfg: Config, method: str, rung: str, objective: str, seed: int, cache: RunCache,
                 sup: Supervision, eval_splits: tuple[str, ...], desc: str) -> Entry:
    """One policy: SFT on its supervision, then `method` under `objective` (implicit: + GT helpful
    pairs in the stream, `po_helpful` of them, or as many as the kept pairs when a filter applies),
    scored on `eval_splits`."""
    _check(cfg, method, objective)
    sft = sft_entry(cfg, rung, seed, cache, sup)
    spec = {"scenario": "po", "method": method, "rung": cfg.rung(rung).spec(), "supervision": sup.spec(),
            "sft": sft.record["key"], "objective": objective, "eval": list(eval_splits), "seed": seed,
            "train": _train_spec(cfg, method, objective), "data": task_data_key(cfg), "code": code_version(__name__)}

    def compute(tmp):
        pairs = _training_pairs(cfg, rung, cache, sup)
        if objective == "implicit":
            helpful, _ = load_policy_pairs(cfg, rung, "helpful", cache)
            n = len(helpful) if sup.keep == "all" else min(len(pairs), len(helpful))
            pairs = PolicyPairs.concat(pairs, helpful.subset(np.arange(n)))
        return _train_policy(cfg, method, objective, rung, seed, cache, sft, pairs, eval_splits, desc)

    return cache.get_or_compute("po", spec, compute)


def po_gt_entry(cfg: Config, method: str, rung: str, seed: int, cache: RunCache) -> Entry:
    """θ^gt for preference optimisation: SFT then `method` on `train_gt` with ground truth; scored on
    `train_w2s` (its labels, when it teaches) and `test`."""
    return policy_entry(cfg, method, rung, "no_conflict", seed, cache, Supervision("train_gt"),
                        ("train_w2s", "test"), f"{method} GT {rung} s{seed}")


def po_w2s_entry(cfg: Config, method: str, weak: str, strong: str, objective: str, seed: int, cache: RunCache,
                 keep: str = "all", via: str | None = None) -> Entry:
    """θ_s^w: the strong rung trained on the weak GT policy's order of `train_w2s` under one objective,
    only on the pairs `keep` selects (App. M). With `via` (App. N, bootstrapping): the weak policy
    first teaches `via` on `train_w2s` without conflict, `via` orders `train_gt`, and the strong rung
    learns from that order, the conflict in this last stage only."""
    _check(cfg, method, objective)
    keep_mask(np.zeros(0), keep, cfg.threshold)  # a bad `keep` fails before anything trains
    chain = [weak] + ([via] if via is not None else []) + [strong]
    if any(cfg.rank(a) >= cfg.rank(b) for a, b in zip(chain, chain[1:])):
        raise ConfigError(f"each rung must sit below the next in the ladder along weak -> via -> strong, "
                          f"got {' -> '.join(chain)}")
    teacher = po_gt_entry(cfg, method, weak, seed, cache)
    split = "train_w2s"
    if via is not None:
        teacher = policy_entry(cfg, method, via, "no_conflict", seed, cache, Supervision("train_w2s", teacher),
                               ("train_gt", "test"), f"{method} W2S {weak}->{via} s{seed}")
        split = "train_gt"
    route = " -> ".join(chain)
    return policy_entry(cfg, method, strong, objective, seed, cache, Supervision(split, teacher, keep, cfg.threshold),
                        ("test",), f"{method} W2S {route} {objective} {keep} s{seed}")


def run_po_matrix(cfg: Config, cache: RunCache, method: str, objectives: tuple[str, ...] = PO_OBJECTIVES,
                  keep: str = "all") -> pd.DataFrame:
    """Every run of a preference-optimisation chapter; test confidences in long form (the columns of
    `experiments.run_rm_matrix`: model, weak, strong, seed, pair_id, confidence)."""
    jobs = [("gt", r, r, s) for r in cfg.rungs for s in cfg.seeds]
    jobs += [(o, w, st, s) for w, st in cfg.pairs() for o in objectives for s in cfg.seeds]
    frames = []
    for model, weak, strong, seed in tqdm(jobs, desc=f"{method} runs", disable=None):
        entry = (po_gt_entry(cfg, method, weak, seed, cache) if model == "gt"
                 else po_w2s_entry(cfg, method, weak, strong, model, seed, cache, keep=keep))
        frames.append(test_rows(entry, model=model, weak=weak, strong=strong, seed=seed))
    return pd.concat(frames, ignore_index=True)


def run_bootstrap(cfg: Config, cache: RunCache, method: str, objective: str = "implicit") -> pd.DataFrame:
    """App. N: the top selected rung taught by every lower rung, directly (`via` = the weak rung itself)
    and through every rung in between; test confidences in long form with a `via` column."""
    chosen = cfg.by_rank(cfg.rungs)
    strong = chosen[-1]
    jobs = [(w, v, s) for i, w in enumerate(chosen[:-1]) for v in chosen[i:-1] for s in cfg.seeds]
    frames = []
    for weak, via, seed in tqdm(jobs, desc=f"{method} bootstrapping runs", disable=None):
        entry = po_w2s_entry(cfg, method, weak, strong, objective, seed, cache, via=None if via == weak else via)
        frames.append(test_rows(entry, model=objective, weak=weak, via=via, strong=strong, seed=seed))
    return pd.concat(frames, ignore_index=True)
