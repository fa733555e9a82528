"""End-to-end smoke runs: determinism, caching (a repeat call trains nothing), W2S wiring."""

import shutil

import numpy as np
import pytest

from w2s_deception import experiments as E
from w2s_deception.cache import RunCache
from w2s_deception.config import ConfigError, get_config


@pytest.fixture(scope="module")
def cfg():
    return get_config("smoke")


@pytest.fixture(scope="module")
def cache(cfg):
    return E.open_cache(cfg)  # shared with the notebooks' smoke runs, so CI pays the cold cost once


def test_same_config_and_seed_give_identical_confidences(cfg, cache, tmp_path):
    first = E.test_confidences(E.gt_entry(cfg, "s-micro", 0, cache))
    # a second cache that shares only the (deterministic) tokenizer and corpus, so pre-training,
    # feature extraction and head training all run again
    fresh = RunCache(tmp_path)
    for kind in ("tokenizer", "corpus"):
        shutil.copytree(cache.root / kind, tmp_path / kind)
    again = E.test_confidences(E.gt_entry(cfg, "s-micro", 0, fresh))
    np.testing.assert_array_equal(first, again)
    other_seed = E.test_confidences(E.gt_entry(cfg, "s-micro", 1, fresh))
    assert not np.array_equal(first, other_seed)


def test_repeat_call_trains_nothing(cfg, cache, monkeypatch):
    E.w2s_entry(cfg, "s-nano", "s-mini", "explicit", 0, cache)

    def boom(*a, **k):
        raise AssertionError("trained although the run is cached")

    monkeypatch.setattr(E, "train_reward_model", boom)
    entry = E.w2s_entry(cfg, "s-nano", "s-mini", "explicit", 0, cache)
    assert len(E.test_confidences(entry)) == cfg.n_pairs


def test_w2s_student_learns_from_teacher_labels_and_conflicts_change_it(cfg, cache):
    teacher = E.gt_entry(cfg, "s-nano", 0, cache)
    labels = E.teacher_labels(teacher)
    assert labels.shape == (cfg.n_pairs,) and ((labels > 0) & (labels < 1)).all()
    plain = E.test_confidences(E.w2s_entry(cfg, "s-nano", "s-mini", "no_conflict", 0, cache))
    explicit = E.test_confidences(E.w2s_entry(cfg, "s-nano", "s-mini", "explicit", 0, cache))
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
    conf = E.test_confidences(student)
    assert conf.shape == (40,) and np.isfinite(conf).all()
    assert len(student.record["losses"]) == 2 * 40 // 8  # harmless + helpful pairs, one epoch
