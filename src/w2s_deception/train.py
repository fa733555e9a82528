"""One training loop (on `accelerate`) and one prediction loop, shared by every scenario."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
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


def fit(
    model: torch.nn.Module,
    examples: Dataset,
    loss_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    weight_decay: float = 0.0,
    warmup: float = 0.0,
    desc: str = "train",
) -> list[float]:
    """Train `model` in place with AdamW on one shuffled stream of `examples` (which must have a
    `collate`), minimising `loss_fn(model, batch)`; returns the per-step losses.

    `warmup` is the fraction of steps with a linear learning-rate warm-up (then constant). Raises
    FloatingPointError naming the run and step on a NaN/inf loss.
    """
    set_seed(seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    loader = DataLoader(examples, batch_size=batch_size, shuffle=True, collate_fn=examples.collate,
                        generator=torch.Generator().manual_seed(seed))
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    schedule = get_constant_schedule_with_warmup(opt, num_warmup_steps=int(warmup * epochs * len(loader)))
    model, opt, loader, schedule = accelerator.prepare(model, opt, loader, schedule)
    model.train()
    losses: list[float] = []
    # disable=None: bars on a terminal, none in notebooks or logs (non-TTY), so executed chapters stay clean
    bar = tqdm(total=epochs * len(loader), desc=desc, leave=False, disable=None if accelerator.is_main_process else True)
    for _ in range(epochs):
        for batch in loader:
            loss = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss ({loss.item()}) in {desc} at step {len(losses)}")
            accelerator.backward(loss)
            opt.step()
            schedule.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}")
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
    weight_decay: float = 0.0,
    desc: str = "train",
) -> list[float]:
    """Train a reward model in place under one objective (`losses.rm_loss`); returns per-step losses."""
    def loss_fn(m: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return rm_loss(m(batch), batch["target"], batch["helpful"], objective, alpha)

    return fit(model, examples, loss_fn, lr=lr, epochs=epochs, batch_size=batch_size, seed=seed,
               weight_decay=weight_decay, desc=desc)


@torch.no_grad()
def predict_margins(model: torch.nn.Module, examples: PairExamples, batch_size: int = 256) -> np.ndarray:
    """Reward margins r(x, y_c) − r(x, y_r) for every pair, in order."""
    model.eval()
    loader = DataLoader(examples, batch_size=batch_size, shuffle=False, collate_fn=examples.collate)
    return torch.cat([model(b).float() for b in loader]).cpu().numpy()
