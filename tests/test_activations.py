"""The frozen-bottom activation cache: exact against the full pass, on three architectures and through
the run cache on a smoke rung."""

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from w2s_deception.activations import bottom_states, check_depth, keep_top_blocks, pad_states
from w2s_deception.config import ConfigError, get_config
from w2s_deception.data import pad_batch
from w2s_deception.experiments import open_cache
from w2s_deception.ladder import load_trunk, pretrain_entry
from w2s_deception.preference import _trainable, load_policy_pairs, score_pairs

SEQS = [[1, 2, 3, 4, 5, 6, 7], [3, 4, 5], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]


def tiny(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "llama":  # SmolLM2's architecture
        return LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                            num_attention_heads=4, num_key_value_heads=2))
    if kind == "gemma3":  # sliding-window and full-attention blocks, scaled embeddings
        return Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=50, hidden_size=32, intermediate_size=64,
                                                  num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                                                  head_dim=8, sliding_window=4))
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=32, n_layer=4, n_head=4))  # learned positions


@pytest.mark.parametrize("kind", ["llama", "gemma3", "gpt2"])
@pytest.mark.parametrize("frozen", [1, 3])
def test_top_blocks_on_cached_states_equal_the_full_pass(kind, frozen):
    lm = tiny(kind).eval()
    ids, mask = pad_batch(SEQS, 0)
    with torch.no_grad():
        full = lm(input_ids=ids, attention_mask=mask).logits
        states = bottom_states(lm, frozen, SEQS, 0, batch=2)
        assert [len(s) for s in states] == [len(s) for s in SEQS]
        top = keep_top_blocks(lm, frozen)
        assert top.config.num_hidden_layers == 4 - frozen
        part = top(inputs_embeds=pad_states(states), attention_mask=mask).logits
    for i, seq in enumerate(SEQS):
        torch.testing.assert_close(part[i, :len(seq)], full[i, :len(seq)], atol=1e-5, rtol=1e-5)


def test_a_frozen_depth_must_leave_blocks_to_train():
    lm = tiny("llama")
    for bad in (0, 4, -1):
        with pytest.raises(ConfigError, match="frozen_blocks"):
            check_depth(lm, bad)


def test_policy_pairs_through_the_run_cache_score_as_the_full_model(tmp_path):
    cfg = get_config("smoke", rungs=["s-micro"], po_finetune="lora", frozen_blocks=1, po_pairs=24)
    pre = pretrain_entry(cfg, cfg.rung("s-micro"), open_cache(cfg))  # the shared cache's, built there if missing
    shutil.copytree(pre.path, tmp_path / "pretrain" / pre.path.name)
    cfg = replace(cfg, runs_dir=str(tmp_path))
    cache = open_cache(cfg)
    cached, ids = load_policy_pairs(cfg, "s-micro", "test", cache)
    assert len(cached.first_states) == len(ids) == 24
    assert [len(s) for s in cached.first_states] == [len(f) for f in cached.first]
    entries = sorted(p.name for p in (tmp_path / "activations").iterdir() if not p.name.startswith("."))
    again, _ = load_policy_pairs(cfg, "s-micro", "test", cache)  # read from the cache, not recomputed
    assert sorted(p.name for p in (tmp_path / "activations").iterdir() if not p.name.startswith(".")) == entries
    assert np.array_equal(again.second_states[3], cached.second_states[3])

    lm, _ = load_trunk(cfg, cfg.rung("s-micro"), cache)
    full = score_pairs(lm.eval(), replace(cached, first_states=None, second_states=None), 8)
    top = _trainable(cfg, lm)  # the top block with adapters at their initial (identity) value
    part = score_pairs(top.eval(), cached, 8)
    for col in ("logp_first", "logp_second"):
        np.testing.assert_allclose(part[col], full[col], atol=1e-4)
    assert (part["n_first"] == full["n_first"]).all()
