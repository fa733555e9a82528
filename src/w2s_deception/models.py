"""The reward model: a base LM with a bias-free linear head on the last non-padding token (Eq. 3)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel


def last_token_states(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state of each row's last real token, found from the attention mask.

    (The authors' code searched for `token_id != 0`, but GPT-2's id 0 is "!"; the mask is exact
    for right padding, and for left padding the last position is the last real token.)
    """
    last = attention_mask.long().cumsum(dim=1).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class RewardModel(nn.Module):
    """r_θ(x, y) = w·h_θ(x, y); `trunk=None` trains the head alone on pre-computed features."""

    def __init__(self, hidden_size: int, trunk: PreTrainedModel | None = None) -> None:
        super().__init__()
        self.trunk = trunk.base_model if trunk is not None else None
        # what FSDP's transformer wrap policy reads when its config names no layer class: the
        # trunk's layers (GPT2Block, LlamaDecoderLayer, ...), each its own FSDP unit
        self._no_split_modules = getattr(trunk, "_no_split_modules", None)
        self.head = nn.Linear(hidden_size, 1, bias=False)
        nn.init.normal_(self.head.weight, std=1.0 / hidden_size)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """h_θ(x, y): the trunk's final hidden state at the last real token."""
        assert self.trunk is not None, "features() needs a trunk"
        out = self.trunk(input_ids=input_ids, attention_mask=attention_mask)
        return last_token_states(out.last_hidden_state, attention_mask)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Reward margins r(x, y_c) − r(x, y_r); chosen and rejected go through one forward pass."""
        if "features" in batch:  # (B, 2, H): chosen, rejected
            return self.head(batch["features"]).squeeze(-1).diff(dim=1).neg().squeeze(1)
        h = self.features(batch["input_ids"], batch["attention_mask"])  # (2B, H): chosen rows, then rejected
        r = self.head(h).squeeze(-1)
        n = r.shape[0] // 2
        return r[:n] - r[n:]
