"""The reward head: last real token, one forward pass for both responses, features == tokens, the
depth a truncated trunk reads."""

import copy
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from w2s_deception.config import Rung
from w2s_deception.data import pad_batch
from w2s_deception.ladder import gguf_parameters, truncate_layers
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


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_truncated_trunk_reads_the_normed_state_at_that_depth(arch, monkeypatch):
    """`Rung.feature_layer` = k gives the k-th block's output through the final norm: the same
    features `benchmarks/select_layer.py` scores for depth k in its one all-layer pass."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from select_layer import layer_features

    torch.manual_seed(0)
    if arch == "gpt2":
        lm = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=8, n_layer=3, n_head=2))
    else:
        lm = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=8, intermediate_size=16, num_hidden_layers=3,
                                          num_attention_heads=2, num_key_value_heads=2))
    seqs = [[5, 6, 7], [5, 6, 8, 9], [3]]
    every = layer_features(lm.eval(), seqs, pad_id=0)
    assert every.shape == (3, 3, 8)
    for depth in (1, 2, 3):
        rm = RewardModel(8, truncate_layers(copy.deepcopy(lm), depth)).eval()
        ids, mask = pad_batch(seqs, 0)
        with torch.no_grad():
            assert torch.allclose(rm.features(ids, mask), torch.tensor(every[depth - 1]), atol=1e-5), depth
    assert not torch.allclose(torch.tensor(every[0]), torch.tensor(every[2]))  # the depth matters


def test_gguf_parameters_sum_the_tensors_of_the_rungs_file(tmp_path, monkeypatch):
    package = tmp_path / "fake_wheel"
    package.mkdir()
    (package / "__init__.py").write_text("")
    writer = gguf.GGUFWriter(package / "tiny.gguf", arch="llama")
    writer.add_tensor("token_embd.weight", np.zeros((5, 3), dtype=np.float32))  # 15
    writer.add_tensor("blk.0.attn_norm.weight", np.zeros(3, dtype=np.float32))  # 3
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file()
    writer.close()
    monkeypatch.syspath_prepend(str(tmp_path))
    assert gguf_parameters(Rung("tiny", "test rung", "gguf", package="fake_wheel", filename="tiny.gguf")) == 18
