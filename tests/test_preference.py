"""Preference optimisation: hand-computed SFT/SimPO/DPO losses, response log-probs, weak ordering,
the explicit-conflict orientation, and cached SimPO/DPO runs on the smoke ladder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from w2s_deception import preference as P
from w2s_deception.cache import Entry, RunCache
from w2s_deception.config import PO_FIELDS, RM_FIELDS, ConfigError, get_config
from w2s_deception.experiments import open_cache
from w2s_deception.ladder import pretrain_entry
from w2s_deception.losses import dpo_loss, po_objective, sft_nll, simpo_loss
from w2s_deception.results import confidences


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# --- losses, by hand ---

def test_sft_nll_is_mean_over_response_tokens() -> None:
    # sums -3 (2 tokens) and -5 (3 tokens): 8 nats over 5 tokens
    assert sft_nll(torch.tensor([-3.0, -5.0]), torch.tensor([2, 3])).item() == pytest.approx(1.6)


def test_simpo_loss_by_hand() -> None:
    # β(π̄_1 − π̄_2) − γ = 2·1 − 1 = 1 → log(1 + e^-1); a gap of exactly γ/β = 0.5 gives log 2
    got = simpo_loss(torch.tensor([-1.0, -1.5]), torch.tensor([-2.0, -2.0]), beta=2.0, gamma=1.0)
    assert got.tolist() == pytest.approx([softplus(-1.0), math.log(2)], abs=1e-6)


def test_dpo_loss_by_hand() -> None:
    # (−10 − (−11)) − (−12 − (−11)) = 2, β = 0.1 → log(1 + e^-0.2) = 0.598139
    got = dpo_loss(torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]), torch.tensor([-11.0]), 0.1)
    assert got.item() == pytest.approx(0.598139, abs=1e-6)
    # policy equal to the reference: log 2 whatever the log-probs
    same = dpo_loss(torch.tensor([-3.0]), torch.tensor([-9.0]), torch.tensor([-3.0]), torch.tensor([-9.0]), 0.1)
    assert same.item() == pytest.approx(math.log(2))


def test_po_objective_adds_reverse_only_where_explicit_harmless_and_preferred() -> None:
    forward, reverse = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 30.0])
    prefers = torch.tensor([True, False, True])
    harmless = torch.tensor([True, True, False])  # the third pair is a helpful one
    assert po_objective(forward, reverse, prefers, harmless, "explicit", 0.5).item() == pytest.approx((6 + 2 + 3) / 3)
    for objective in ("no_conflict", "implicit"):
        assert po_objective(forward, reverse, prefers, harmless, objective, 0.5).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="adaptive"):
        po_objective(forward, reverse, prefers, harmless, "adaptive")


def test_explicit_conflict_orientation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three pairs, each with one-token responses, so sums are means:
    A: GT order, policy prefers GT-chosen (−1 vs −2): no conflict term;
    B: weak swapped it (first = GT-rejected), policy prefers first = GT-rejected: + α·L(first, second);
    C: GT order, policy prefers GT-rejected (−2 vs −1): + α·L(second, first)."""
    logps = (torch.tensor([-1.0, -1.0, -2.0]), torch.ones(3), torch.tensor([-2.0, -2.0, -1.0]), torch.ones(3))
    monkeypatch.setattr(P, "pair_logps", lambda lm, batch: logps)
    batch = {"gt_first": torch.tensor([True, False, True]), "helpful": torch.zeros(3, dtype=torch.bool)}
    cfg = get_config("smoke", alpha=0.5)
    fwd_a = fwd_b = softplus(-1.0)  # 2·(−1 − (−2)) − 1 = 1
    fwd_c = softplus(3.0)  # 2·(−2 − (−1)) − 1 = −3
    expected = (fwd_a + fwd_b * 1.5 + fwd_c + 0.5 * softplus(-1.0)) / 3
    assert P.po_loss_fn(cfg, "simpo", "explicit")(None, batch).item() == pytest.approx(expected, abs=1e-6)
    assert P.po_loss_fn(cfg, "simpo", "no_conflict")(None, batch).item() == pytest.approx((fwd_a + fwd_b + fwd_c) / 3)


# --- log-probs and data ---

def _tiny_lm() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_layer=1, n_embd=8, n_head=2, resid_pdrop=0.0,
                                      embd_pdrop=0.0, attn_pdrop=0.0)).eval()


def test_response_logps_match_a_token_by_token_sum() -> None:
    lm = _tiny_lm()
    ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    start = torch.tensor([2, 0])  # row 1: prompt cut away; its first token has no prefix and is not scored
    with torch.no_grad():
        logp = lm(input_ids=ids, attention_mask=mask).logits.log_softmax(-1)
        total, n = P.response_logps(lm, ids, mask, start)
    expected0 = sum(logp[0, j - 1, ids[0, j]].item() for j in (2, 3, 4))
    expected1 = sum(logp[1, j - 1, ids[1, j]].item() for j in (1, 2))
    assert total.tolist() == pytest.approx([expected0, expected1], abs=1e-5)
    assert n.tolist() == [3, 2]


@pytest.mark.parametrize("arch", ["gpt2", "opt", "llama"])
def test_head_on_scored_positions_equals_full_logits(arch: str) -> None:
    """The head applied to the last hidden state (scored positions only) is the model's own head."""
    from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM
    torch.manual_seed(0)
    lm = {"gpt2": lambda: _tiny_lm(),
          "opt": lambda: OPTForCausalLM(OPTConfig(vocab_size=50, hidden_size=8, ffn_dim=16, num_hidden_layers=1,
                                                  num_attention_heads=2, word_embed_proj_dim=4)).eval(),
          "llama": lambda: LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=8, intermediate_size=16,
                                                        num_hidden_layers=1, num_attention_heads=2,
                                                        num_key_value_heads=1)).eval()}[arch]()
    ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 1, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        logp = lm(input_ids=ids, attention_mask=mask).logits.log_softmax(-1)
        total, _ = P.response_logps(lm, ids, mask, torch.tensor([3, 1]))
    expected = [logp[0, 2, 8].item() + logp[0, 3, 9].item(), logp[1, 0, 11].item() + logp[1, 1, 12].item()]
    assert total.tolist() == pytest.approx(expected, abs=1e-5)


def test_ordered_swaps_where_the_teacher_disagrees() -> None:
    pairs = P.PolicyPairs([[1], [2], [3]], [[4], [5], [6]], [0, 0, 0], [1, 1, 1], torch.ones(3, dtype=torch.bool),
                          torch.zeros(3, dtype=torch.bool), pad_id=0)
    weak = pairs.ordered(np.array([True, False, True]))
    assert weak.first == [[1], [5], [3]] and weak.second == [[4], [2], [6]]
    assert weak.first_start == [0, 1, 0] and weak.gt_first.tolist() == [True, False, True]
    batch = weak.collate([1, 0])
    assert batch["input_ids"].tolist() == [[5], [1], [2], [4]] and batch["response_start"].tolist() == [1, 0, 0, 1]


def test_subset_keeps_rows_in_the_given_order() -> None:
    pairs = P.PolicyPairs([[1], [2], [3]], [[4], [5], [6]], [0, 0, 0], [1, 1, 1], torch.tensor([True, False, True]),
                          torch.tensor([False, False, True]), pad_id=0, ref_first=torch.tensor([-1.0, -2.0, -3.0]),
                          ref_second=torch.tensor([-4.0, -5.0, -6.0]))
    sub = pairs.subset(np.array([2, 0]))
    assert sub.first == [[3], [1]] and sub.second == [[6], [4]] and sub.gt_first.tolist() == [True, True]
    assert sub.helpful.tolist() == [True, False] and sub.ref_first.tolist() == [-3.0, -1.0]
    assert len(pairs.subset(np.array([], dtype=int))) == 0


def test_keep_mask_by_hand() -> None:
    # M_w: wrong & confident, wrong & unsure, exactly 0.5, right & unsure, exactly T, right & confident
    m_w = np.array([0.1, 0.4, 0.5, 0.7, 0.75, 0.9])
    assert P.keep_mask(m_w, "all", 0.75).tolist() == [True] * 6
    # oracle: correct (GT-chosen preferred) and M_w ≥ T; T itself is kept
    assert P.keep_mask(m_w, "oracle", 0.75).tolist() == [False, False, False, False, True, True]
    # non-oracle: max(M_w, 1 − M_w) ≥ T, so confident wrong labels stay in
    assert P.keep_mask(m_w, "confident", 0.75).tolist() == [True, False, False, False, True, True]
    assert P.keep_mask(np.array([0.25]), "confident", 0.75).tolist() == [True]  # 1 − 0.25 = T exactly
    with pytest.raises(ConfigError, match="keep"):
        P.keep_mask(m_w, "best", 0.75)


def test_confidences_follow_spec() -> None:
    logp_c, n_c, logp_r, n_r = np.array([-4.0]), np.array([2]), np.array([-9.0]), np.array([3])
    assert P.po_confidence("simpo", logp_c, n_c, logp_r, n_r)[0] == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert P.po_confidence("dpo", logp_c, n_c, logp_r, n_r)[0] == pytest.approx(1 / (1 + math.exp(-0.1)))


# --- configuration and cache keys ---

def test_po_and_rm_keys_ignore_each_others_fields() -> None:
    base = get_config("smoke")
    assert set(base.training_spec("rm")).isdisjoint(PO_FIELDS)
    assert set(base.training_spec("po")).isdisjoint(RM_FIELDS)
    assert get_config("smoke", po_lr=1e-2).training_spec("rm") == base.training_spec("rm")
    assert get_config("smoke", lr=0.5).training_spec("po") == base.training_spec("po")


def test_po_spec_keeps_only_what_the_run_reads() -> None:
    cfg = get_config("smoke")
    simpo = P._train_spec(cfg, "simpo", "no_conflict")
    assert "dpo_beta" not in simpo and simpo["alpha"] == 0.0 and simpo["po_helpful"] == 0
    dpo = P._train_spec(cfg, "dpo", "explicit")
    assert "simpo_gamma" not in dpo and dpo["alpha"] == cfg.alpha
    assert P._train_spec(cfg, "simpo", "implicit")["po_helpful"] == cfg.po_helpful


@pytest.mark.parametrize("bad", [{"po_lr": 0.0}, {"simpo_beta": -1.0}, {"po_finetune": "head"}, {"po_pairs": 0}])
def test_invalid_po_values_fail_at_construction(bad: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        get_config("smoke", **bad)


def test_unknown_method_or_objective_fails_before_training(tmp_path: Path) -> None:
    cfg = get_config("smoke", runs_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="method"):
        P.po_gt_entry(cfg, "ppo", "s-nano", 0, RunCache(tmp_path))
    with pytest.raises(ConfigError, match="objective"):
        P.po_w2s_entry(cfg, "simpo", "s-nano", "s-mini", "adaptive", 0, RunCache(tmp_path))
    with pytest.raises(ConfigError, match="below"):
        P.po_w2s_entry(cfg, "simpo", "s-mini", "s-nano", "explicit", 0, RunCache(tmp_path))
    with pytest.raises(ConfigError, match="below"):
        P.po_w2s_entry(cfg, "simpo", "s-nano", "s-mini", "implicit", 0, RunCache(tmp_path), via="s-nano")
    with pytest.raises(ConfigError, match="keep"):
        P.po_w2s_entry(cfg, "simpo", "s-nano", "s-mini", "implicit", 0, RunCache(tmp_path), keep="some")
    with pytest.raises(ConfigError, match="task"):
        get_config("smoke", task="truthful")
    assert not list(tmp_path.glob("po*"))


# --- cached runs on the smoke ladder ---

def _runs_with_shared_ladder(root: Path) -> RunCache:
    """A fresh runs folder that shares the smoke ladder (tokenizer, corpus, pre-trained rungs) with
    the project's cache, building it there once if missing, so only policies train here."""
    cfg = get_config("smoke")
    shared = open_cache(cfg)
    for rung in cfg.rungs:
        pretrain_entry(cfg, cfg.rung(rung), shared)
    root.mkdir(parents=True, exist_ok=True)
    for kind in ("tokenizer", "corpus", "pretrain"):
        (root / kind).symlink_to(shared.root / kind)
    return RunCache(root)


@pytest.mark.parametrize("method", ["simpo", "dpo"])
def test_w2s_run_is_cached_deterministic_and_conflict_changes_it(method: str, tmp_path: Path) -> None:
    cfg = get_config("smoke", po_pairs=24, po_helpful=24, batch_size=8, po_lr=3e-3, dpo_epochs=1)
    cache = _runs_with_shared_ladder(tmp_path / "a")
    plain = P.po_w2s_entry(cfg, method, "s-nano", "s-mini", "no_conflict", 0, cache)
    test = plain.results[plain.results["split"] == "test"]
    assert len(test) == 24 and test["confidence"].between(0, 1).all() and (test["n_chosen"] > 0).all()
    again = P.po_w2s_entry(cfg, method, "s-nano", "s-mini", "no_conflict", 0, cache)
    assert again.record["key"] == plain.record["key"] and again.record["created"] == plain.record["created"]
    explicit = P.po_w2s_entry(cfg, method, "s-nano", "s-mini", "explicit", 0, cache)
    assert not np.allclose(explicit.results["confidence"], plain.results["confidence"])
    # a fresh cache (same ladder, policies retrained) reproduces the numbers exactly
    redo = P.po_w2s_entry(cfg, method, "s-nano", "s-mini", "no_conflict", 0, _runs_with_shared_ladder(tmp_path / "b"))
    assert np.array_equal(redo.results["confidence"].to_numpy(), plain.results["confidence"].to_numpy())
    assert redo.record["key"] == plain.record["key"]


def test_filter_and_bootstrap_runs(tmp_path: Path) -> None:
    """App. M: a filtered student trains on the kept pairs plus as many helpful ones; App. N: the
    intermediate is scored on train_gt and its order of train_gt supervises the strong rung."""
    cfg = get_config("smoke", po_pairs=24, po_helpful=24, batch_size=8, po_lr=3e-3, threshold=0.55)
    cache = _runs_with_shared_ladder(tmp_path)
    teacher = P.po_gt_entry(cfg, "simpo", "s-nano", 0, cache)
    m_w = confidences(teacher, "train_w2s")
    for keep in ("oracle", "confident"):
        kept = int(P.keep_mask(m_w, keep, 0.55).sum())
        run = P.po_w2s_entry(cfg, "simpo", "s-nano", "s-mini", "implicit", 0, cache, keep=keep)
        assert run.record["n_pairs"] == 2 * min(kept, 24)
        assert run.record["spec"]["supervision"] == {"split": "train_w2s", "labels": teacher.record["key"],
                                                     "keep": keep, "threshold": 0.55}
    boot = P.run_bootstrap(cfg, cache, "simpo")
    assert set(map(tuple, boot[["weak", "via"]].drop_duplicates().to_numpy())) == {
        ("s-nano", "s-nano"), ("s-nano", "s-micro"), ("s-micro", "s-micro")}
    via = P.po_w2s_entry(cfg, "simpo", "s-nano", "s-mini", "implicit", 0, cache, via="s-micro")
    mid = cache.path("po", via.record["spec"]["supervision"]["labels"])
    assert via.record["spec"]["supervision"]["split"] == "train_gt"
    assert set(pd.read_parquet(mid / "results.parquet")["split"]) == {"train_gt", "test"}
    assert json.loads((mid / "record.json").read_text())["spec"]["objective"] == "no_conflict"


def test_a_filter_that_keeps_nothing_fails_before_training(tmp_path: Path) -> None:
    cfg = get_config("smoke", po_pairs=24)
    cache = _runs_with_shared_ladder(tmp_path / "runs")
    folder = tmp_path / "teacher"
    folder.mkdir()
    pd.DataFrame({"split": "train_w2s", "pair_id": range(24), "confidence": 0.6}).to_parquet(folder / "results.parquet")
    teacher = Entry(folder, {"key": "t" * 64})
    with pytest.raises(ConfigError, match="keep='oracle' at T = 0.75 leaves no train_w2s pair"):
        P._training_pairs(cfg, "s-nano", cache, P.Supervision("train_w2s", teacher, "oracle", 0.75))
    assert len(P._training_pairs(cfg, "s-nano", cache, P.Supervision("train_w2s", teacher))) == 24
