"""The original authors' reward-model training step, re-implemented here for timing only.

This reproduces the step of `train_reward_model` in RUCBM/weak-to-strong-deception
(`weak-to-strong/weak_to_strong/train.py`, model `TransformerWithSingleHead` in
`weak_to_strong/model.py`, run by `run_reward_model.sh` with `--minibatch_size_per_device=1` and
the default `batch_size=32`), written anew from its behaviour so that its speed and memory can be
measured on the same model and pairs as this project's trainer. It is not used for any result and
keeps their bugs on purpose (SPEC §2 lists them); it is not a reference for correctness.

What one optimiser step does, as theirs:
- fp32 weights and activations, no autocast; dropout off (`model.eval()` during training);
  gradient checkpointing switched on, which is inert because the layers only checkpoint in
  training mode;
- minibatch 1 with gradient accumulation to 32 pairs: for each pair, the rejected and then the
  chosen sequence run as two separate forward passes, un-padded and without an attention mask;
- the reward is a bias-free linear head on the hidden state at position `(ids != 0).sum() - 1`
  (their last-token rule: right for un-padded rows only when id 0 never occurs in the text);
- loss `BCE(sigmoid(r_c - r_r), label) / 32`, `backward()` per pair, then Adam (no weight
  decay) and a cosine-annealed learning rate stepped once per optimiser step;
- pairs in the order given (their datasets were shuffled once beforehand), `len // 32` steps
  per epoch, so a final partial batch is dropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from registry import REWARD, RunResult, Workload, register
from torch import nn


class SingleHead(nn.Module):
    """Trunk plus a bias-free scalar head on the `ids != 0` last token (their forward, batch of rows)."""

    def __init__(self, lm) -> None:
        super().__init__()
        self.lm = lm
        self.transformer = lm.base_model
        self.score = nn.Linear(lm.config.hidden_size, 1, bias=False)  # their head: default init, no bias

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        lengths = (input_ids != 0).sum(dim=-1)
        hidden = self.transformer(input_ids)[0]
        last = torch.stack([hidden[i, lengths[i] - 1, :] for i in range(len(lengths))])
        return self.score(last)


def original_steps(model: SingleHead, chosen: list[list[int]], rejected: list[list[int]], *, lr: float,
                   batch_size: int = 32, minibatch_size: int = 1, epochs: int = 1) -> list[float]:
    """Train in place the way the authors' loop does; returns the per-step losses."""
    model.eval()  # their default train_with_dropout=False
    # their model configs all set gradient checkpointing; inert in eval mode (renamed in transformers 5)
    (getattr(model.lm, "activation_checkpointing_enable", None) or model.lm.gradient_checkpointing_enable)()
    nsteps = len(chosen) * epochs // batch_size
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, nsteps)
    stream = [(c, r) for _ in range(epochs) for c, r in zip(chosen, rejected)]
    micro_steps = batch_size // minibatch_size
    losses = []
    for step in range(nsteps):
        total = 0.0
        for k in range(micro_steps):
            start = (step * micro_steps + k) * minibatch_size
            mb = stream[start:start + minibatch_size]
            # pad_sequence(...).T as theirs: with minibatch 1 nothing is padded
            ids_r = nn.utils.rnn.pad_sequence([torch.tensor(r) for _, r in mb]).transpose(0, 1)
            ids_c = nn.utils.rnn.pad_sequence([torch.tensor(c) for c, _ in mb]).transpose(0, 1)
            labels = torch.ones(len(mb), 1)  # ground-truth soft label 1.0
            logits = _margin(model, ids_c, ids_r)
            loss = F.binary_cross_entropy(torch.sigmoid(logits), labels) / micro_steps
            total += loss.item()
            loss.backward()
        losses.append(total)
        optimizer.step()
        optimizer.zero_grad()
        schedule.step()
    return losses


def _margin(model: SingleHead, ids_c: torch.Tensor, ids_r: torch.Tensor) -> torch.Tensor:
    """Rejected first, then chosen, as two forward passes (their order)."""
    r_rejected = model(ids_r)
    r_chosen = model(ids_c)
    return r_chosen - r_rejected


@register("original (a)", group=REWARD, what="authors' step: minibatch 1, fp32, grad. accumulation to 32, no mask")
def original(w: Workload) -> RunResult:
    torch.manual_seed(w.seed)
    model = SingleHead(w.lm())
    n = len(w) // w.batch_size * w.batch_size  # their loop drops the partial last batch
    with w.timer() as t:
        losses = original_steps(model, w.chosen_ids[:n], w.rejected_ids[:n], lr=w.lr, batch_size=w.batch_size,
                                epochs=w.epochs)
    tokens = w.epochs * sum(len(c) + len(r) for c, r in zip(w.chosen_ids[:n], w.rejected_ids[:n]))
    return RunResult(tokens, t, losses)
