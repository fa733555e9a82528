"""One training loop (on `accelerate`) and one prediction loop, shared by every scenario."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device, set_seed
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import get_constant_schedule_with_warmup

from .data import pad_batch
from .losses import rm_loss


@dataclass
class PairExamples(Dataset):
    """Training/evaluation pairs: pre-computed features (B, 2, H) or token ids, plus targets.

    `target` is the probability that the first response (the ground-truth chosen one) is
    preferred; `helpful` marks helpfulness pairs mixed in by the implicit objectives.
    """

    target: torch.Tensor
    helpful: torch.Tensor
    features: torch.Tensor | None = None
    chosen_ids: list[list[int]] | None = None
    rejected_ids: list[list[int]] | None = None
    pad_id: int = 0

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, i: int) -> int:
        return i

    def length(self, i: int) -> int | None:
        """Padded length of pair i in a batch (its longer response); None for features (no padding)."""
        return None if self.chosen_ids is None else max(len(self.chosen_ids[i]), len(self.rejected_ids[i]))

    def collate(self, idx: list[int]) -> dict[str, torch.Tensor]:
        """A batch; token pairs are padded together (chosen rows first) for a single forward pass."""
        batch = {"target": self.target[idx], "helpful": self.helpful[idx]}
        if self.features is not None:
            batch["features"] = self.features[idx]
        else:
            seqs = [self.chosen_ids[i] for i in idx] + [self.rejected_ids[i] for i in idx]
            batch["input_ids"], batch["attention_mask"] = pad_batch(seqs, self.pad_id, side="right")
        return batch

    @staticmethod
    def concat(a: PairExamples, b: PairExamples) -> PairExamples:
        """Both sets of pairs in one stream (the implicit objectives' harmless + helpful mix)."""
        if a.features is not None:
            return PairExamples(torch.cat([a.target, b.target]), torch.cat([a.helpful, b.helpful]),
                                features=torch.cat([a.features, b.features]))
        return PairExamples(torch.cat([a.target, b.target]), torch.cat([a.helpful, b.helpful]),
                            chosen_ids=a.chosen_ids + b.chosen_ids, rejected_ids=a.rejected_ids + b.rejected_ids,
                            pad_id=a.pad_id)


def token_length(examples: Dataset) -> Callable[[int], int] | None:
    """`examples.length` where examples are token sequences that get padded in a batch; None for
    features or datasets without lengths, which batch in any order at no cost."""
    length = getattr(examples, "length", None)
    return length if length is not None and len(examples) and length(0) is not None else None


def micro_batches(examples: Dataset, idx: list[int], size: int | None) -> list[list[int]]:
    """`idx` cut into micro-batches of `size` examples, longest first, so each is padded only to its
    own longest example; one part when the examples have no length (features) or `size` is None."""
    length = token_length(examples)
    if size is None or length is None:
        return [idx]
    order = sorted(idx, key=lambda i: -length(i))
    return [order[s:s + size] for s in range(0, len(order), size)]


def loss_units(examples: Dataset, idx: list[int]) -> int:
    """How many units `loss_fn`'s mean runs over in these examples: `examples.units(idx)` where the
    dataset defines it (SFT: response tokens), else the number of examples."""
    units = getattr(examples, "units", None)
    return len(idx) if units is None else units(idx)


def fit(
    model: torch.nn.Module,
    examples: Dataset,
    loss_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    micro_batch: int | None = None,
    weight_decay: float = 0.0,
    warmup: float = 0.0,
    desc: str = "train",
) -> list[float]:
    """Train `model` in place with AdamW on one shuffled stream of `examples` (which must have a
    `collate`), minimising `loss_fn(model, batch)`, the mean over the batch's units (examples, or
    what `examples.units` counts); returns the per-step losses.

    Each batch runs as length-sorted micro-batches of `micro_batch` examples where the examples have
    a `length` (token pairs), gradients accumulated, one optimiser step per batch: each micro-batch's
    mean is weighted by its share of the batch's units, so the step is the batch's mean up to float
    rounding, with less padding and smaller activations.

    Under N processes (`accelerate`, DDP) each step takes a global batch of N × `batch_size`
    examples, the same on every process, and splits it between them as evenly as possible, so every
    example is trained once per epoch even when N × `batch_size` does not divide their number (a
    process left without any takes part with one example at weight 0). Each process weights its
    micro-batches by their share of the global batch's units, so the synchronised gradient is the
    global batch's, and every process returns the global batch's loss. `warmup` is the fraction of
    steps with a linear learning-rate warm-up (then constant). Raises FloatingPointError naming the
    run and step on a NaN/inf loss, on every process.
    """
    set_seed(seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    world, rank = accelerator.num_processes, accelerator.process_index
    # Global batches of indices, sharded below rather than by accelerate: its sharding completes an
    # uneven last batch with the epoch's first examples, training those twice.
    loader = DataLoader(range(len(examples)), batch_size=batch_size * world, shuffle=True, collate_fn=list,
                        generator=torch.Generator().manual_seed(seed))
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    # stepped here once per global step (a prepared scheduler steps once per process and step)
    schedule = get_constant_schedule_with_warmup(opt, num_warmup_steps=int(warmup * epochs * len(loader)))
    model, opt = accelerator.prepare(model, opt)
    model.train()
    losses: list[float] = []
    # disable=None: bars on a terminal, none in notebooks or logs (non-TTY), so executed chapters stay clean
    bar = tqdm(total=epochs * len(loader), desc=desc, leave=False,
               disable=None if accelerator.is_main_process else True)
    for _ in range(epochs):
        for batch_idx in loader:
            mine = batch_idx[len(batch_idx) * rank // world:len(batch_idx) * (rank + 1) // world]
            total = max(loss_units(examples, batch_idx), 1)
            parts = micro_batches(examples, mine, micro_batch) if mine else [batch_idx[:1]]
            step_loss = torch.zeros((), device=accelerator.device)
            for k, part in enumerate(parts):
                # 1.0 exactly with one process and one part; 0 for a process without examples
                weight = loss_units(examples, part) * world / total if mine else 0.0
                # gradients are all-reduced once per step, after the last micro-batch
                with accelerator.no_sync(model) if k < len(parts) - 1 else nullcontext():
                    batch = send_to_device(examples.collate(part), accelerator.device)
                    loss = loss_fn(model, batch) * weight
                    accelerator.backward(loss)
                step_loss += loss.detach() / world  # this process's part of the global batch's mean
            if world > 1:
                step_loss = accelerator.reduce(step_loss, reduction="sum")
            if not torch.isfinite(step_loss):
                raise FloatingPointError(f"non-finite loss ({step_loss.item()}) in {desc} at step {len(losses)}")
            opt.step()
            schedule.step()
            opt.zero_grad(set_to_none=True)
            losses.append(step_loss.item())
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    model.eval()
    return losses


def train_reward_model(
    model: torch.nn.Module,
    examples: PairExamples,
    *,
    objective: str,
    alpha: float,
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    micro_batch: int | None = None,
    weight_decay: float = 0.0,
    desc: str = "train",
) -> list[float]:
    """Train a reward model in place under one objective (`losses.rm_loss`); returns per-step losses."""
    def loss_fn(m: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return rm_loss(m(batch), batch["target"], batch["helpful"], objective, alpha)

    return fit(model, examples, loss_fn, lr=lr, epochs=epochs, batch_size=batch_size, seed=seed,
               micro_batch=micro_batch, weight_decay=weight_decay, desc=desc)


@torch.no_grad()
def predict_rows(examples: Dataset, fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
                 batch_size: int) -> torch.Tensor:
    """`fn` of every example's batch row, in the examples' order, computed over batches of similar
    length where the examples have one (less padding)."""
    idx = list(range(len(examples)))
    length = token_length(examples)
    if length is not None:
        idx.sort(key=length)
    parts = [fn(examples.collate(idx[s:s + batch_size])) for s in range(0, len(idx), batch_size)]
    rows = torch.cat(parts)
    return rows[torch.as_tensor(idx).argsort()] if parts else rows


def predict_margins(model: torch.nn.Module, examples: PairExamples, batch_size: int = 256) -> np.ndarray:
    """Reward margins r(x, y_c) − r(x, y_r) for every pair, in order."""
    model.eval()
    return predict_rows(examples, lambda b: model(b).float(), batch_size).cpu().numpy()
