"""This project's reward-model trainer (`full` fine-tuning), as shipped and with measured variants.

`project` calls `w2s_deception.train.train_reward_model` exactly as `experiments` does. The
`+bf16`, `+grad-ckpt` and `+gelu-fused` rows change nothing in `src/`: bf16 autocast is switched
on through accelerate's own environment variable (read by the `Accelerator` the trainer builds),
gradient checkpointing and the activation are set on the LM before it is wrapped. The
`proposed:` rows change the loop itself, so they run `accumulating_loop` below: the shipped loop
with the changes proposed for `src/` (length-grouped batches, length-sorted micro-batches).
"""

from __future__ import annotations

import math

import torch
from registry import REWARD, RunResult, Workload, register
from torch.utils.data import DataLoader, Sampler

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


def shipped(w: Workload, model: RewardModel) -> RunResult:
    """Time `train_reward_model` on the workload (ground truth, no conflict)."""
    ex = examples(w)
    with w.timer() as t:
        losses = train_reward_model(model, ex, objective="no_conflict", alpha=0.0, lr=w.lr, epochs=w.epochs,
                                    batch_size=w.batch_size, seed=w.seed, desc="bench")
    return RunResult(w.rm_tokens(), t, losses, margins=w.scored_margins(model))


@register("project", group=REWARD, what="w2s_deception train_reward_model, full fine-tuning, fp32")
def project(w: Workload) -> RunResult:
    return shipped(w, reward_model(w))


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


@register("project+gelu-fused", group=REWARD, what="same, GPT-2 MLP with gelu_pytorch_tanh (one kernel)",
          same_order_as="project")
def project_gelu_fused(w: Workload) -> RunResult:
    # gelu_new (GPT-2's default) is the same tanh approximation written as ~8 elementwise ops in Python
    return shipped(w, reward_model(w, w.lm(activation_function="gelu_pytorch_tanh")))


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


def accumulating_loop(model: torch.nn.Module, ex: PairExamples, *, lr: float, epochs: int, batch_size: int,
                      seed: int, micro_pairs: int | None = None, group_by_length: bool = False) -> list[float]:
    """The shipped loop (ground truth, no conflict) with the two proposed changes, each optional:

    - `group_by_length`: batches from `LengthGroupedBatches` instead of `shuffle=True`;
    - `micro_pairs`: each batch's pairs sorted by length and run as padded micro-batches of this
      many pairs, gradients accumulated, one optimiser step per batch. The step is the same
      mean loss over the same pairs as the shipped one (each micro-batch's mean is weighted by
      its share of the batch), so losses agree with `project` up to float rounding; less padding
      and smaller activations make it faster and lighter. (Under several processes, all but the
      last micro-batch would run under `accelerator.no_sync(model)`.)
    """
    from contextlib import nullcontext

    from accelerate import Accelerator
    from accelerate.utils import set_seed

    set_seed(seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    lengths = [max(len(c), len(r)) for c, r in zip(ex.chosen_ids, ex.rejected_ids)]

    def collate(idx: list[int]) -> list[dict[str, torch.Tensor]]:
        if micro_pairs is None:
            return [ex.collate(idx)]
        order = sorted(idx, key=lambda i: -lengths[i])
        return [ex.collate(order[s:s + micro_pairs]) for s in range(0, len(order), micro_pairs)]

    if group_by_length:
        loader = DataLoader(ex, batch_sampler=LengthGroupedBatches(lengths, batch_size, seed), collate_fn=collate)
    else:
        loader = DataLoader(ex, batch_size=batch_size, shuffle=True, collate_fn=collate,
                            generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    model, opt, loader = accelerator.prepare(model, opt, loader)
    model.train()
    losses = []
    for _ in range(epochs):
        for micro in loader:
            n = sum(len(mb["target"]) for mb in micro)
            total = 0.0
            for k, mb in enumerate(micro):
                with accelerator.no_sync(model) if k < len(micro) - 1 else nullcontext():
                    loss = rm_loss(model(mb), mb["target"], mb["helpful"], "no_conflict", 0.0) * (len(mb["target"]) / n)
                    accelerator.backward(loss)
                total += loss.item()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(total)
    model.eval()
    return losses


def proposed(w: Workload, model: RewardModel, **changes) -> RunResult:
    ex = examples(w)
    with w.timer() as t:
        losses = accumulating_loop(model, ex, lr=w.lr, epochs=w.epochs, batch_size=w.batch_size, seed=w.seed,
                                   **changes)
    return RunResult(w.rm_tokens(), t, losses, margins=w.scored_margins(model))


MICRO_PAIRS = 8


@register("proposed: length-grouped", group=REWARD,
          what="the shipped loop with LengthGroupedBatches (16-batch windows)")
def proposed_grouped(w: Workload) -> RunResult:
    return proposed(w, reward_model(w), group_by_length=True)


@register("proposed: sorted micro-batches", group=REWARD, same_order_as="project",
          what=f"the shipped batches, run as length-sorted micro-batches of {MICRO_PAIRS} pairs (grad. accumulation)")
def proposed_micro(w: Workload) -> RunResult:
    return proposed(w, reward_model(w), micro_pairs=MICRO_PAIRS)


@register("proposed: all three", group=REWARD, same_order_as="proposed: length-grouped",
          what="length-grouped + sorted micro-batches + gelu_pytorch_tanh")
def proposed_all(w: Workload) -> RunResult:
    return proposed(w, reward_model(w, w.lm(activation_function="gelu_pytorch_tanh")), micro_pairs=MICRO_PAIRS,
                    group_by_length=True)
