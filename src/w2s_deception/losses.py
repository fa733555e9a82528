"""Reward-model objectives of the paper (Eqs. 4-6, 10-12, 16), per pair, on reward margins.

A pair's margin is `m = r(x, y_c) - r(x, y_r)` with `y_c` the ground-truth chosen response, so the
model's confidence is `M = σ(m)` (Eq. 3). Cross-entropies are written on logits (softplus) for
numerical stability: `CE(σ(m), t) = t·softplus(-m) + (1 - t)·softplus(m)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import OBJECTIVES


def soft_ce(margin: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pair CE(σ(margin), target) for soft targets in [0, 1] (Eq. 4's L_CE)."""
    return F.binary_cross_entropy_with_logits(margin, target, reduction="none")


def explicit_conflict(margin: torch.Tensor, alpha: float) -> torch.Tensor:
    """α·CE(M, 0)·I[M < 0.5] (Eq. 5): pushes pairs the student already gets wrong further wrong."""
    return alpha * F.softplus(margin) * (margin < 0).to(margin.dtype)


def rm_loss(
    margin: torch.Tensor,
    target: torch.Tensor,
    helpful: torch.Tensor,
    objective: str,
    alpha: float = 0.5,
) -> torch.Tensor:
    """Mean loss of a batch under one weak-to-strong objective.

    `target` is the weak teacher's confidence M_w for harmless pairs (1.0 for ground truth and for
    helpful pairs); `helpful` marks the helpful pairs that the implicit/adaptive streams mix in.
    Ground-truth training is `no_conflict` with targets of 1.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}: expected one of {OBJECTIVES}")
    loss = soft_ce(margin, target)
    harmless = ~helpful
    if objective == "explicit":
        loss = loss + explicit_conflict(margin, alpha) * harmless
    elif objective == "adaptive":  # Eq. 16: weight harmless pairs by the teacher's certainty |2M_w - 1|
        loss = torch.where(harmless, loss * (2 * target - 1).abs(), loss)
    return loss.mean()
