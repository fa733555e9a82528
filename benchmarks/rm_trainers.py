"""This project's reward-model trainer (`full` fine-tuning), as shipped and with measured variants.

`project` calls `w2s_deception.train.train_reward_model` exactly as `experiments` does. The
`+bf16`, `+grad-ckpt` and `(gelu_new)` rows change nothing in `src/`: bf16 autocast is switched
on through accelerate's own environment variable (read by the `Accelerator` the trainer builds),
gradient checkpointing and the activation are set on the LM before it is wrapped. `+compile`
wraps the trunk in `torch.compile`; the worker's warm-up run compiles it, so its row is the
compiled steady state (compile time is in the README). The
`proposed:` row changes the loop itself, so it runs `grouped_loop` below.
"""

from __future__ import annotations

import math

import torch
from registry import REWARD, RunResult, Workload, register
from torch.utils.data import DataLoader, Sampler

from w2s_deception.config import Config
from w2s_deception.losses import rm_loss
from w2s_deception.models import RewardModel
from w2s_deception.train import PairExamples, train_reward_model


def examples(w: Workload) -> PairExamples:
    """Ground-truth pairs (target 1) as the `full` path builds them (`experiments._examples`)."""
    n = len(w)
    return PairExamples(torch.ones(n), torch.zeros(n, dtype=torch.bool), chosen_ids=w.chosen_ids,
                        rejected_ids=w.rejected_ids, pad_id=w.pad_id)


def reward_model(w: Workload, lm=None) -> RewardModel:
    """A reward model on a fresh copy of the initial LM, head seeded like `experiments._train_and_predict`."""
    lm = lm if lm is not None else w.lm()
    torch.manual_seed(w.seed)
    return RewardModel(lm.config.hidden_size, lm)


MICRO_PAIRS = Config.micro_batch  # the shipped default: pairs per forward pass


def shipped(w: Workload, model: RewardModel, micro_batch: int | None = MICRO_PAIRS) -> RunResult:
    """Time `train_reward_model` on the workload (ground truth, no conflict)."""
    ex = examples(w)
    with w.timer() as t:
        losses = train_reward_model(model, ex, objective="no_conflict", alpha=0.0, lr=w.lr, epochs=w.epochs,
                                    batch_size=w.batch_size, seed=w.seed, micro_batch=micro_batch, desc="bench")
    return RunResult(w.rm_tokens(), t, losses, margins=w.scored_margins(model))


@register("project", group=REWARD,
          what="w2s_deception train_reward_model, full fine-tuning, fp32, "
               f"length-sorted micro-batches of {MICRO_PAIRS}")
def project(w: Workload) -> RunResult:
    return shipped(w, reward_model(w))


@register("project (whole batches)", group=REWARD, same_order_as="project",
          what="the same loop with each batch in one forward pass (micro_batch=None; the loop before 28 Nov)")
def project_whole(w: Workload) -> RunResult:
    return shipped(w, reward_model(w), micro_batch=None)


@register("project+grad-ckpt", group=REWARD, what="same, trunk with gradient checkpointing",
          same_order_as="project")
def project_grad_ckpt(w: Workload) -> RunResult:
    lm = w.lm()
    enable = getattr(lm, "activation_checkpointing_enable", None)  # transformers >= 5 name
    if enable is not None:
        enable({"use_reentrant": False})
    else:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return shipped(w, reward_model(w, lm))


@register("project+compile", group=REWARD, same_order_as="project",
          what="same, trunk under torch.compile (inductor, dynamic shapes), compiled during the untimed warm-up")
def project_compile(w: Workload) -> RunResult:
    model = reward_model(w)
    model.trunk = torch.compile(model.trunk, dynamic=True)
    return shipped(w, model)


@register("project (gelu_new)", group=REWARD, same_order_as="project",
          what="same, GPT-2 MLP with gelu_new, GPT-2's own activation (the scratch rungs before 28 Nov)")
def project_gelu_new(w: Workload) -> RunResult:
    # the same tanh approximation written as ~8 elementwise ops in Python, where the rungs (and this
    # workload's model) use gelu_pytorch_tanh, one kernel
    return shipped(w, reward_model(w, w.lm(activation_function="gelu_new")))


@register("project+bf16", group=REWARD, what="same, bf16 autocast (ACCELERATE_MIXED_PRECISION=bf16)",
          env={"ACCELERATE_MIXED_PRECISION": "bf16"}, max_pairs=8, warmup=False)
def project_bf16(w: Workload) -> RunResult:
    result = shipped(w, reward_model(w))
    result.extra = step_precision(w)
    return result


def step_precision(w: Workload) -> dict[str, float]:
    """One fp32 and one bf16-autocast forward/backward of the initial model on the same batch:
    relative error of the margins and loss, and cosine similarity of the gradients."""
    model = reward_model(w)
    batch = examples(w).collate(list(range(len(w))))
    out = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            margin = model(batch)
        loss = rm_loss(margin.float(), batch["target"], batch["helpful"], "no_conflict")
        loss.backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        out[name] = (margin.detach().float(), loss.item(), grad)
    (m32, l32, g32), (m16, l16, g16) = out["fp32"], out["bf16"]
    cosine = torch.nn.functional.cosine_similarity(g16.double(), g32.double(), dim=0)
    margin_error = float((m16 - m32).abs().max() / m32.abs().max())
    return {"one step on these pairs, bf16 vs fp32: margin max rel. error": margin_error,
            "loss rel. error": abs(l16 - l32) / abs(l32), "1 - gradient cosine": 1.0 - float(cosine)}


class LengthGroupedBatches(Sampler[list[int]]):
    """Shuffled batches of pairs of similar length (the proposed sampler for `train.fit`).

    Each epoch: a seeded permutation is cut into windows of `window` batches; each window is sorted
    by pair length (the longer of chosen/rejected, which sets the padded width), cut into batches,
    and the batches of the epoch are shuffled. Every pair is used exactly once per epoch; batches
    stay random in composition across windows. The same seed gives the same batches on every
    rank, so accelerate's batch sharding works unchanged.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, window: int = 16) -> None:
        self.lengths = torch.as_tensor(lengths)
        self.batch_size = batch_size
        self.window = window
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        perm = torch.randperm(len(self.lengths), generator=self.generator)
        batches = []
        for chunk in perm.split(self.batch_size * self.window):
            ordered = chunk[torch.argsort(self.lengths[chunk], descending=True, stable=True)]
            batches += [b.tolist() for b in ordered.split(self.batch_size)]
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]


def grouped_loop(model: torch.nn.Module, ex: PairExamples, *, lr: float, epochs: int, batch_size: int,
                 seed: int) -> list[float]:
    """The shipped loop with batches from `LengthGroupedBatches` instead of `shuffle=True` (a change
    proposed for `train.fit`, not adopted: it changes which pairs share a batch), each batch in one
    forward pass."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    set_seed(seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    lengths = [ex.length(i) for i in range(len(ex))]
    loader = DataLoader(ex, batch_sampler=LengthGroupedBatches(lengths, batch_size, seed), collate_fn=ex.collate)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    model, opt, loader = accelerator.prepare(model, opt, loader)
    model.train()
    losses = []
    for _ in range(epochs):
        for batch in loader:
            loss = rm_loss(model(batch), batch["target"], batch["helpful"], "no_conflict", 0.0)
            accelerator.backward(loss)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
    model.eval()
    return losses


@register("proposed: length-grouped", group=REWARD,
          what="whole batches of similar-length pairs (LengthGroupedBatches, 16-batch windows)")
def proposed_grouped(w: Workload) -> RunResult:
    ex = examples(w)
    model = reward_model(w)
    with w.timer() as t:
        losses = grouped_loop(model, ex, lr=w.lr, epochs=w.epochs, batch_size=w.batch_size, seed=w.seed)
    return RunResult(w.rm_tokens(), t, losses, margins=w.scored_margins(model))
