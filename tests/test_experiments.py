"""End-to-end smoke runs: determinism, caching (a repeat call trains nothing), W2S wiring."""

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from w2s_deception import experiments as E
from w2s_deception.cache import RunCache
from w2s_deception.config import ConfigError, get_config
from w2s_deception.ladder import describe, pretrain_entry
from w2s_deception.results import confidences
from w2s_deception.train import PairExamples


@pytest.fixture(scope="module")
def cfg():
    return get_config("smoke")


@pytest.fixture(scope="module")
def cache(cfg):
    return E.open_cache(cfg)  # shared with the notebooks' smoke runs, so CI pays the cold cost once


def test_same_config_and_seed_give_identical_confidences(cfg, cache, tmp_path):
    first = confidences(E.gt_entry(cfg, "s-micro", 0, cache), "test")
    # a second cache that shares only the (deterministic) tokenizer and corpus, so pre-training,
    # feature extraction and head training all run again
    fresh = RunCache(tmp_path)
    for kind in ("tokenizer", "corpus"):
        shutil.copytree(cache.root / kind, tmp_path / kind)
    again = confidences(E.gt_entry(cfg, "s-micro", 0, fresh), "test")
    np.testing.assert_array_equal(first, again)
    other_seed = confidences(E.gt_entry(cfg, "s-micro", 1, fresh), "test")
    assert not np.array_equal(first, other_seed)


def test_repeat_call_trains_nothing(cfg, cache, monkeypatch):
    E.w2s_entry(cfg, "s-nano", "s-mini", "explicit", 0, cache)

    def boom(*a, **k):
        raise AssertionError("trained although the run is cached")

    monkeypatch.setattr(E, "train_reward_model", boom)
    entry = E.w2s_entry(cfg, "s-nano", "s-mini", "explicit", 0, cache)
    assert len(confidences(entry, "test")) == cfg.n_pairs


def test_w2s_student_learns_from_teacher_labels_and_conflicts_change_it(cfg, cache):
    teacher = E.gt_entry(cfg, "s-nano", 0, cache)
    labels = confidences(teacher, "train_w2s")
    assert labels.shape == (cfg.n_pairs,) and ((labels > 0) & (labels < 1)).all()
    plain = confidences(E.w2s_entry(cfg, "s-nano", "s-mini", "no_conflict", 0, cache), "test")
    explicit = confidences(E.w2s_entry(cfg, "s-nano", "s-mini", "explicit", 0, cache), "test")
    assert not np.allclose(plain, explicit)
    rec = E.w2s_entry(cfg, "s-nano", "s-mini", "explicit", 0, cache).record
    assert rec["spec"]["teacher"] == teacher.record["key"] and rec["spec"]["alpha"] == cfg.alpha


def test_weak_must_be_below_strong(cfg, cache):
    with pytest.raises(ConfigError, match="must sit below"):
        E.w2s_entry(cfg, "s-mini", "s-nano", "no_conflict", 0, cache)


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_whole_model_and_lora_fine_tuning_share_the_loop(cache, finetune):
    cfg = get_config("smoke", finetune=finetune, n_pairs=40, n_helpful=40, batch_size=8, epochs=1)
    gt = E.gt_entry(cfg, "s-nano", 0, cache)
    res = gt.results
    assert set(res["split"]) == set(E.HARMLESS) and res["confidence"].between(0, 1).all()
    student = E.w2s_entry(cfg, "s-nano", "s-micro", "implicit", 0, cache)
    conf = confidences(student, "test")
    assert conf.shape == (40,) and np.isfinite(conf).all()
    assert len(student.record["losses"]) == 2 * 40 // 8  # harmless + helpful pairs, one epoch


def test_whole_model_fine_tuning_cuts_the_trunk_at_the_rungs_feature_layer(cache):
    base = get_config("smoke")
    cut = dataclasses.replace(base.rung("s-micro"), feature_layer=1)  # s-micro has 2 blocks
    cut_ladder = tuple(cut if r.name == "s-micro" else r for r in base.ladder)
    for ladder, blocks in ((base.ladder, 2), (cut_ladder, 1)):
        model = E._fresh_model(get_config("smoke", finetune="full", ladder=ladder), "s-micro", cache, None)
        assert len(model.trunk.h) == blocks


def test_feature_scale_by_hand():
    # dimension 0 takes 1, 3, 5, 7 over the chosen and rejected rows: sample std sqrt(20 / 3);
    # dimension 1 never varies, so it keeps scale 1 instead of dividing by zero
    feats = torch.tensor([[[1.0, 2.0], [3.0, 2.0]], [[5.0, 2.0], [7.0, 2.0]]])
    np.testing.assert_allclose(E.feature_scale(feats).numpy(), [np.sqrt(20 / 3), 1.0], rtol=1e-6)


def test_head_margins_do_not_depend_on_a_feature_dimensions_units(cfg, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(64, 2, 4, generator=gen)
    target = (feats[:, 0, 0] > feats[:, 1, 0]).float()
    stretched = feats.clone()
    stretched[..., 2] *= 1000.0  # one dimension in other units, as a wide activation would be

    def margins(f):
        ex = PairExamples(target, torch.zeros(64, dtype=torch.bool), features=f)
        monkeypatch.setattr(E, "_examples", lambda *a, **k: (ex, np.arange(64)))
        res, extras = E._train_and_predict(cfg, "s-nano", ex, "no_conflict", 0.0, 0, None, ("test",), "t")
        # the stored head applies to raw features
        np.testing.assert_allclose((f[:, 0] - f[:, 1]) @ torch.tensor(extras["head"][0]), res["margin"],
                                   rtol=1e-4, atol=1e-5)
        return res["margin"].to_numpy()

    np.testing.assert_allclose(margins(stretched), margins(feats), rtol=1e-4, atol=1e-5)


def test_ladder_table_reports_pretraining_steps_not_machine_time(cfg, cache):
    """The ladder table describes each scratch rung by what was done (tokens, optimiser steps), never by the CPU
    time it took on the machine that built it: that differs between machines and runs."""
    table = describe(cfg, cache).set_index("rung")
    for name in cfg.rungs:
        record = pretrain_entry(cfg, cfg.rung(name), cache).record
        assert table.loc[name, "pretrain_steps"] == record["steps"] > 0
    assert not any("cpu" in column or "seconds" in column for column in table.columns)
