"""The trainers the benchmark can run, and what each one is given and gives back.

A trainer is a function `run(workload) -> RunResult`, registered under a name with `@register(...)`.
The benchmark runs every available trainer in a fresh process on the same `Workload` (same pairs,
same initial weights, same batch size, learning rate and seed) and tabulates tokens/s and peak
memory. To add a trainer (for instance this project's SimPO/DPO trainer once it lands), write a
function in one of the modules listed in `MODULES` (or a new one added there):

    @register("my-trainer", group=POLICY, what="one line for the table's notes")
    def my_trainer(w: Workload) -> RunResult:
        lm = w.lm()                          # fresh copy of the initial weights
        with w.timer() as t:                 # time only the training itself
            losses = ...train lm on w.prompts / w.chosen / w.rejected (or the *_ids)...
        return RunResult(tokens=<real tokens of its training sequences>, timer=t, losses=losses)

(`pending(...)` reserves a row for one that cannot run yet). Tokens are real (non-padding) tokens of the training
sequences, summed over every epoch.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REWARD = "reward model"
POLICY = "policy (SimPO/DPO)"
MODULES = ["original_rm", "rm_trainers", "po_trainers"]  # imported for their @register side effects


@dataclass
class RunResult:
    """What one training run reports: real tokens trained on, wall seconds of training, per-step losses."""

    tokens: int
    timer: Timer  # wall and CPU seconds of the training itself
    losses: list[float]
    extra: dict = field(default_factory=dict)  # trainer-specific numbers shown under the table
    margins: list[float] | None = None  # reward models: trained margins on the first pairs (`scored_margins`)


@dataclass
class Trainer:
    """A registered trainer and how the benchmark must run it."""

    name: str
    group: str
    what: str
    run: Callable[[Workload], RunResult] | None
    max_pairs: int | None = None  # train on at most this many pairs (slow trainers); tokens/s stays comparable
    env: dict[str, str] = field(default_factory=dict)  # set in its process before anything is imported from it
    requires: str | None = None  # a module that must be importable (optional extras)
    same_order_as: str | None = None  # a trainer whose batches and init it shares: losses are compared with it
    warmup: bool = True  # run once on a few pairs first (one-time allocations, oneDNN kernel selection)
    pending: str | None = None  # why it cannot run yet

    def unavailable(self) -> str | None:
        """Why this trainer cannot run here, or None."""
        if self.pending:
            return self.pending
        if self.requires and importlib.util.find_spec(self.requires) is None:
            return f"`{self.requires}` not installed (pip install '.[bench]')"
        return None


TRAINERS: dict[str, Trainer] = {}


def register(name: str, *, group: str, what: str, **options) -> Callable:
    """Decorator: register `run(workload) -> RunResult` under `name` (options: see `Trainer`)."""
    def add(run: Callable[[Workload], RunResult]) -> Callable[[Workload], RunResult]:
        if name in TRAINERS:
            raise ValueError(f"trainer {name!r} registered twice")
        TRAINERS[name] = Trainer(name, group, what, run, **options)
        return run
    return add


def pending(name: str, *, group: str, what: str, reason: str) -> None:
    """Reserve a row for a trainer that does not exist yet; the table shows `reason`."""
    TRAINERS[name] = Trainer(name, group, what, None, pending=reason)


def load_all() -> dict[str, Trainer]:
    """Every registered trainer, in registration order."""
    for module in MODULES:
        importlib.import_module(module)
    return TRAINERS


class Timer:
    """Wall seconds and CPU seconds (this process, all its threads) of a `with` block."""

    seconds: float = float("nan")
    cpu_seconds: float = float("nan")


@dataclass
class Workload:
    """The pairs, model and hyper-parameters every trainer gets (built once by `bench_train.prepare`)."""

    workdir: Path
    prompts: list[str]
    chosen: list[str]
    rejected: list[str]
    chosen_ids: list[list[int]]  # prompt + response, truncated from the left to max_length (encode_pair)
    rejected_ids: list[list[int]]
    chosen_start: list[int]  # where the response begins in chosen_ids (encode_pair)
    rejected_start: list[int]
    pad_id: int
    max_length: int
    batch_size: int
    lr: float
    seed: int
    epochs: int = 1

    @classmethod
    def load(cls, workdir: Path) -> Workload:
        data = json.loads((workdir / "workload.json").read_text())
        return cls(workdir=workdir, **data)

    def save(self) -> None:
        data = {k: v for k, v in self.__dict__.items() if k != "workdir"}
        (self.workdir / "workload.json").write_text(json.dumps(data))

    @property
    def model_dir(self) -> Path:
        """Initial weights and tokenizer (`save_pretrained` folder)."""
        return self.workdir / "model"

    def __len__(self) -> int:
        return len(self.chosen_ids)

    def subset(self, n: int) -> Workload:
        """The first n pairs, everything else the same."""
        fields = {k: v for k, v in self.__dict__.items()}
        for k in ("prompts", "chosen", "rejected", "chosen_ids", "rejected_ids", "chosen_start", "rejected_start"):
            fields[k] = fields[k][:n]
        return Workload(**fields)

    def lm(self, **config_overrides):
        """A fresh copy of the initial causal LM (GPT-2 architecture), in training dtype fp32."""
        from transformers import AutoModelForCausalLM
        return AutoModelForCausalLM.from_pretrained(self.model_dir, **config_overrides)

    def tokenizer(self):
        from transformers import AutoTokenizer
        return AutoTokenizer.from_pretrained(self.model_dir)

    def scored_margins(self, model, n: int = 32) -> list[float]:
        """Margins of a trained `RewardModel` on the first n training pairs (compared across rows)."""
        from rm_trainers import examples

        from w2s_deception.train import predict_margins
        return predict_margins(model, examples(self.subset(n))).tolist()

    def rm_tokens(self) -> int:
        """Real tokens a reward-model trainer processes: both sequences of every pair, every epoch."""
        return self.epochs * sum(len(c) + len(r) for c, r in zip(self.chosen_ids, self.rejected_ids))

    @contextmanager
    def timer(self):
        """`with w.timer() as t: ...` then `t.seconds`, `t.cpu_seconds`."""
        t = Timer()
        start, cpu = time.perf_counter(), time.process_time()
        try:
            yield t
        finally:
            t.seconds, t.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
