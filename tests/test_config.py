"""Config: profiles, invalid values named at construction, the cache-relevant fields."""

import pytest

from w2s_deception.config import Config, ConfigError, get_config


def test_profiles_and_defaults():
    cpu = get_config("cpu")
    assert cpu.rungs == ("pico", "micro", "mini", "gemma", "smol") and cpu.seeds == (0, 1, 2)
    assert cpu.rung("smol").source == cpu.rung("gemma").source == "gguf"  # two real model families
    assert cpu.rung("nano").source == "scratch"  # nano: selectable
    assert cpu.threshold == 0.75 and cpu.alpha == 0.5
    smoke = get_config("smoke")
    assert len(smoke.rungs) == 3 and smoke.n_pairs == 300
    paper = get_config("paper")
    assert paper.rung("gpt2-xl").hub_id == "openai-community/gpt2-xl" and paper.finetune == "full"


def test_env_selects_profile(monkeypatch):
    monkeypatch.setenv("W2S_PROFILE", "smoke")
    assert get_config().profile == "smoke"


def test_pairs_are_weak_below_strong():
    cfg = get_config("smoke")
    assert cfg.pairs() == [("s-nano", "s-micro"), ("s-nano", "s-mini"), ("s-micro", "s-mini")]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"profile": "gpu"}, "profile"),
        ({"rungs": ("nano", "gpt5")}, "rungs"),
        ({"threshold": 0.5}, "threshold"),
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": 1.2}, "threshold"),
        ({"alpha": -0.1}, "alpha"),
        ({"batch_size": 0}, "batch_size"),
        ({"seeds": ()}, "seeds"),
        ({"finetune": "qlora"}, "finetune"),
    ],
)
def test_invalid_values_fail_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"invalid {field}="):
        Config(**kwargs)


def test_threshold_just_inside_the_interval_is_accepted():
    assert Config(threshold=0.5001).threshold == 0.5001
    assert Config(threshold=0.9999).threshold == 0.9999


def test_unknown_override_and_rung_lookup():
    with pytest.raises(ConfigError, match="invalid parameter='T'"):
        get_config("cpu", T=0.8)
    with pytest.raises(ConfigError, match="invalid rung='gpt2'"):
        get_config("cpu").rung("gpt2")


def test_position_counts_selected_rungs_only():
    cfg = get_config("cpu", rungs=["smol", "pico", "mini"])  # given out of order
    assert [cfg.position(r) for r in ("pico", "mini", "smol")] == [0, 1, 2]
    assert [cfg.rank(r) for r in ("pico", "mini", "smol")] == [0, 3, 5]  # the whole ladder's order (gemma is 4)
    with pytest.raises(ValueError):
        cfg.position("nano")  # not selected
    assert cfg.by_rank({"smol", "nano", "pico"}) == ["pico", "nano", "smol"]  # any rungs of the ladder, weakest first


def test_training_spec_drops_presentational_fields():
    a, b = get_config("cpu"), get_config("cpu", threshold=0.8, seeds=(5,), runs_dir="/tmp/x")
    assert a.training_spec() == b.training_spec()
    assert a.training_spec() != get_config("cpu", lr=0.5).training_spec()


def test_weak_and_strong_selections_filter_the_pairs():
    cfg = get_config("cpu", weak_rungs=["pico"], strong_rungs=["micro", "mini"])
    assert cfg.pairs() == [("pico", "micro"), ("pico", "mini")]
    assert get_config("cpu", strong_rungs="mini").pairs() == [("pico", "mini"), ("micro", "mini")]
    with pytest.raises(ConfigError, match="invalid weak_rungs='mini'"):
        get_config("cpu", rungs=["pico", "nano"], weak_rungs=["mini"])
    assert cfg.training_spec() == get_config("cpu").training_spec()


# --------------------------------------------------------------------------- the controlled arithmetic task


def test_the_arithmetic_task_takes_the_sum_rungs_and_only_them():
    cfg = get_config("cpu", task="arithmetic")
    assert cfg.rungs == ("sum-1", "sum-2", "sum-3", "sum-4")
    assert all(cfg.rung(r).corpus == "arithmetic" for r in cfg.rungs)
    assert get_config("smoke", task="arithmetic").rungs == ("s-sum-1", "s-sum-2", "s-sum-3")
    with pytest.raises(ConfigError, match="rungs pre-trained on sums for task 'arithmetic'"):
        get_config("cpu", task="arithmetic", rungs=["pico", "sum-2"])
    with pytest.raises(ConfigError, match="rungs pre-trained on sums"):
        get_config("cpu", rungs=["pico", "sum-2"])  # task harmless
    assert "sum-1" not in get_config("cpu", rungs=()).rungs  # the default for HH leaves the sum rungs out


def test_same_size_pairs_differ_only_in_pre_training_budget():
    from w2s_deception.config import same_size_pairs

    assert same_size_pairs(get_config("cpu", task="arithmetic")) == [("sum-1", "sum-2"), ("sum-1", "sum-3"),
                                                                     ("sum-2", "sum-3")]
    assert same_size_pairs(get_config("cpu", rungs=["pico", "nano", "micro", "nano-long"])) == [("nano", "nano-long")]
    assert same_size_pairs(get_config("cpu")) == []


@pytest.mark.parametrize(("alphas", "expected"), [([0.5, 0.25], [0.25, 0.5]), (1, [1.0]), ((0, 2), [0.0, 2.0])])
def test_check_alphas(alphas, expected):
    from w2s_deception.config import check_alphas

    assert check_alphas(alphas) == expected


@pytest.mark.parametrize("alphas", [[], [-0.1, 0.5], ["0.5"], "0.25,0.5", [True], [float("nan")]])
def test_check_alphas_refuses(alphas):
    from w2s_deception.config import check_alphas

    with pytest.raises(ConfigError, match="alphas"):
        check_alphas(alphas)


def test_frozen_blocks_need_adapters():
    assert get_config("cpu", po_finetune="lora", frozen_blocks=15).frozen_blocks == 15
    with pytest.raises(ConfigError, match="frozen_blocks"):
        get_config("cpu", frozen_blocks=15)  # po_finetune full
    with pytest.raises(ConfigError, match="frozen_blocks"):
        get_config("cpu", po_finetune="lora", frozen_blocks=-1)
    with pytest.raises(ConfigError, match="frozen_blocks"):
        get_config("cpu", po_finetune="lora", frozen_blocks=1.5)


def test_reward_model_chapters_take_five_seeds_on_cpu_and_a_parameter_overrides_them():
    from w2s_deception.config import rm_config
    from w2s_deception.preference import po_config

    assert rm_config("cpu").seeds == (0, 1, 2, 3, 4)
    assert po_config("cpu").seeds == (0, 1, 2)  # policies keep the profile's seeds
    assert rm_config("cpu", seeds=None).seeds == (0, 1, 2, 3, 4)  # a notebook's None is the default
    assert rm_config("cpu", seeds=[7]).seeds == (7,)
    assert rm_config("smoke").seeds == get_config("smoke").seeds  # no reward-model seeds of its own
    # seeds are not part of a run's key: seeds 0–2 of the five are the entries three seeds computed
    assert rm_config("cpu").training_spec() == get_config("cpu").training_spec()
