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


# --- Preference optimisation (SPEC §2, App. E): per-pair losses on response log-probabilities ---
# Each takes the policy's log-probs of the pair's *first* (preferred in training) and *second* response.


def sft_nll(logp_sum: torch.Tensor, n_tokens: torch.Tensor) -> torch.Tensor:
    """SFT negative log-likelihood per response token, over a batch (response tokens only)."""
    return -logp_sum.sum() / n_tokens.sum().clamp(min=1)


def simpo_loss(mean_first: torch.Tensor, mean_second: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimPO (Meng et al. 2024): −log σ(β(π̄_first − π̄_second) − γ), π̄ = mean response log-prob."""
    return F.softplus(-(beta * (mean_first - mean_second) - gamma))


def dpo_loss(logp_first: torch.Tensor, logp_second: torch.Tensor, ref_first: torch.Tensor, ref_second: torch.Tensor,
             beta: float) -> torch.Tensor:
    """DPO (Rafailov et al. 2023): −log σ(β((log π_first − log π_ref,first) − (log π_second − log π_ref,second)))."""
    return F.softplus(-beta * ((logp_first - ref_first) - (logp_second - ref_second)))


def po_objective(forward: torch.Tensor, reverse: torch.Tensor, prefers_gt_rejected: torch.Tensor,
                 harmless: torch.Tensor, objective: str, alpha: float = 0.5) -> torch.Tensor:
    """Mean loss of a batch under one weak-to-strong objective (SPEC §2.3, PO column).

    `forward` is L_PO on the training order (weak labels, or ground truth for GT and helpful pairs);
    `reverse` is L_PO(x, y_r^gt, y_c^gt) and `prefers_gt_rejected` marks I[π(y_c^gt) < π(y_r^gt)].
    The explicit objective adds α·reverse where the policy already prefers the GT-rejected response
    (harmless pairs only); implicit conflict lives in the data stream (helpful pairs), not the loss.
    """
    if objective not in ("no_conflict", "explicit", "implicit"):
        raise ValueError(f"unknown objective {objective!r}: expected no_conflict, explicit or implicit")
    loss = forward
    if objective == "explicit":
        loss = loss + alpha * reverse * (prefers_gt_rejected & harmless).to(forward.dtype)
    return loss.mean()
