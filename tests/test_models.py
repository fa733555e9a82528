"""The reward head: last real token, one forward pass for both responses, features == tokens."""

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from w2s_deception.models import RewardModel, last_token_states


def test_last_token_from_mask_right_and_left_padding():
    hidden = torch.arange(2 * 3, dtype=torch.float32).view(2, 3, 1)
    right = last_token_states(hidden, torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert right.squeeze(-1).tolist() == [1.0, 5.0]
    left = last_token_states(hidden, torch.tensor([[0, 1, 1], [0, 0, 1]]))
    assert left.squeeze(-1).tolist() == [2.0, 5.0]


def test_head_margin_on_features_is_r_chosen_minus_r_rejected():
    rm = RewardModel(2)
    with torch.no_grad():
        rm.head.weight.copy_(torch.tensor([[1.0, -2.0]]))
    feats = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [3.0, 0.0]]])
    # pair 1: r_c = 1, r_r = -2 -> 3; pair 2: r_c = 0, r_r = 3 -> -3
    assert rm({"features": feats}).tolist() == [3.0, -3.0]


def test_token_path_matches_feature_path_and_ignores_padding():
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=8, n_layer=1, n_head=2)).eval()
    rm = RewardModel(8, lm).eval()
    ids = torch.tensor([[5, 6, 7, 0], [5, 6, 8, 9]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    with torch.no_grad():
        margin = rm({"input_ids": ids, "attention_mask": mask})
        h_c = rm.features(ids[:1, :3], mask[:1, :3])
        h_r = rm.features(ids[1:], mask[1:])
        expected = rm.head(h_c) - rm.head(h_r)
    assert torch.allclose(margin, expected.squeeze(-1), atol=1e-5)
