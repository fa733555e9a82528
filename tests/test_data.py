"""Tests for w2s_deception.data: real splits, error messages, tokenisation and padding."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from conftest import write_sums
from w2s_deception.data import (
    ASSISTANT,
    DataError,
    encode_pair,
    load_pairs,
    load_stats,
    pad_batch,
    resolve_data_dir,
    split_dialogue,
    split_pair,
)

SHARED = resolve_data_dir()


def dialogue(question: str, answer: str) -> str:
    """Build a one-turn HH-style dialogue."""
    return f"\n\nHuman: {question}{ASSISTANT} {answer}"


def write_split(root: Path, name: str, lines: list[str]) -> Path:
    """Write raw JSON Lines into `root/<name>.jsonl` and return the path."""
    path = root / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    write_sums(root)
    return path


def record(question: str, chosen: str, rejected: str) -> str:
    """Return one JSON line holding a pair."""
    return json.dumps({"chosen": dialogue(question, chosen), "rejected": dialogue(question, rejected)})


@pytest.mark.parametrize("split", ["train_gt", "train_w2s", "test"])
def test_real_harmless_splits(split: str) -> None:
    pairs = load_pairs(f"hh-harmless/{split}", data_dir=SHARED)
    assert pairs.column_names == ["pair_id", "prompt", "chosen", "rejected"]
    assert len(pairs) == 4000
    assert pairs["pair_id"] == list(range(4000))
    assert all(prompt.endswith(ASSISTANT) for prompt in pairs["prompt"])
    assert load_stats(pairs)["n_dropped_identical"] == 0


def test_real_pair_ids_stable_and_responses_exact() -> None:
    first = load_pairs("hh-harmless/test", data_dir=SHARED)
    again = load_pairs("hh-harmless/test", data_dir=SHARED, limit=400)
    assert again["pair_id"] == first["pair_id"][:400]
    raw = json.loads((SHARED / "hh-harmless/test.jsonl").read_text(encoding="utf-8").splitlines()[360])
    # pair 360's rejected response contains a spurious Assistant marker: the split must not use it
    assert first[360]["prompt"] + first[360]["rejected"] == raw["rejected"]
    assert first[360]["prompt"] + first[360]["chosen"] == raw["chosen"]
    assert first[360]["prompt"].count("\n\nHuman:") == 1


def test_real_helpful_train() -> None:
    assert len(load_pairs("hh-helpful/train", data_dir=SHARED)) == 4000


def test_data_dir_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("W2S_DATA_DIR", str(SHARED))
    assert resolve_data_dir() == SHARED


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="W2S_DATA_DIR") as error:
        load_pairs("hh-harmless/test", data_dir=missing)
    assert str(missing) in str(error.value)


def test_missing_file(tmp_path: Path) -> None:
    write_split(tmp_path, "hh-harmless/train_gt", [record("q", "a", "b")])
    with pytest.raises(DataError) as error:
        load_pairs("hh-harmless/test", data_dir=tmp_path)
    assert str(tmp_path / "hh-harmless/test.jsonl") in str(error.value)
    assert "hh-harmless/train_gt" in str(error.value)


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    write_split(tmp_path, "s/bad", [record("q", "a", "b"), record("r", "a", "b"), '{"chosen": "x", '])
    with pytest.raises(DataError, match="line 3") as error:
        load_pairs("s/bad", data_dir=tmp_path)
    assert "bad.jsonl" in str(error.value)


def test_missing_key(tmp_path: Path) -> None:
    write_split(tmp_path, "s/nokey", [record("q", "a", "b"), json.dumps({"chosen": dialogue("q", "a")})])
    with pytest.raises(DataError, match=r"nokey\.jsonl line 2.*rejected"):
        load_pairs("s/nokey", data_dir=tmp_path)


def test_non_string_value(tmp_path: Path) -> None:
    write_split(tmp_path, "s/num", [json.dumps({"chosen": dialogue("q", "a"), "rejected": 3})])
    with pytest.raises(DataError, match="line 1.*rejected"):
        load_pairs("s/num", data_dir=tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    write_split(tmp_path, "s/empty", [])
    with pytest.raises(DataError, match="empty"):
        load_pairs("s/empty", data_dir=tmp_path)
    write_split(tmp_path, "s/all_identical", [record("q", "same", "same")])
    with pytest.raises(DataError, match="no usable pairs"):
        load_pairs("s/all_identical", data_dir=tmp_path)


def test_no_shared_prompt(tmp_path: Path) -> None:
    write_split(tmp_path, "s/apart", [json.dumps({"chosen": dialogue("q", "a"), "rejected": "no dialogue"})])
    with pytest.raises(DataError, match=r"apart\.jsonl line 1.*share no prompt"):
        load_pairs("s/apart", data_dir=tmp_path)


def test_identical_pair_dropped_and_counted(tmp_path: Path) -> None:
    write_split(tmp_path, "s/dup", [record("q0", "a", "b"), record("q1", "same", "same"), record("q2", "c", "d")])
    pairs = load_pairs("s/dup", data_dir=tmp_path)
    assert pairs["pair_id"] == [0, 2]
    assert pairs["chosen"] == [" a", " c"]
    assert pairs["rejected"] == [" b", " d"]
    assert load_stats(pairs)["n_dropped_identical"] == 1


def test_limit_applies_after_dropping(tmp_path: Path) -> None:
    write_split(tmp_path, "s/lim", [record("q0", "x", "x")] + [record(f"q{i}", "a", "b") for i in range(1, 6)])
    pairs = load_pairs("s/lim", data_dir=tmp_path, limit=3)
    assert pairs["pair_id"] == [1, 2, 3]
    with pytest.raises(DataError, match="limit"):
        load_pairs("s/lim", data_dir=tmp_path, limit=0)


def test_unknown_source() -> None:
    with pytest.raises(DataError, match="local, hub"):
        load_pairs("hh-harmless/test", source="s3")


def test_hub_offline_raises_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # the env var is read at import
    with pytest.raises(DataError, match="source='local'"):
        load_pairs("hh-harmless/test", source="hub")


def test_hub_unknown_split() -> None:
    with pytest.raises(DataError, match="hub splits"):
        load_pairs("unknownbench/NEC_answerable", source="hub")


def test_split_dialogue_multi_turn() -> None:
    text = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help?\n\nAssistant: I can't help."
    prompt, response = split_dialogue(text)
    assert prompt == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help?\n\nAssistant:"
    assert response == " I can't help."
    with pytest.raises(DataError):
        split_dialogue("\n\nHuman: no answer")


def test_split_pair_uses_shared_prefix() -> None:
    chosen = dialogue("q", "no.")
    rejected = dialogue("q", "sure. Human: more?\n\nAssistant: yes")
    assert split_pair(chosen, rejected) == ("\n\nHuman: q\n\nAssistant:", " no.",
                                            " sure. Human: more?\n\nAssistant: yes")


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a tiny vocabulary."""
    words = ["[UNK]", "[PAD]", "Human", "Assistant", ":", "how", "do", "I", "can", "'", "t", "help", "."]
    model = models.WordLevel({word: i for i, word in enumerate(words)}, unk_token="[UNK]")
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


def test_encode_pair_fits(tokenizer: PreTrainedTokenizerFast) -> None:
    prompt, response = "\n\nHuman: how do I\n\nAssistant:", " I can't help."
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    ids, start = encode_pair(tokenizer, prompt, response, max_length=64)
    assert ids == prompt_ids + response_ids
    assert start == len(prompt_ids) == 7


def test_encode_pair_truncates_prompt_from_left(tokenizer: PreTrainedTokenizerFast) -> None:
    prompt, response = "\n\nHuman: how do I\n\nAssistant:", " I can't help."
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    ids, start = encode_pair(tokenizer, prompt, response, max_length=10)
    assert len(ids) == 10
    assert ids[start:] == response_ids == ids[-len(response_ids):]
    assert start == 10 - len(response_ids)


def test_encode_pair_response_longer_than_max(tokenizer: PreTrainedTokenizerFast) -> None:
    response = " I can't help."
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    ids, start = encode_pair(tokenizer, "\n\nHuman: how\n\nAssistant:", response, max_length=3)
    assert ids == response_ids[-3:]
    assert start == 0


def test_pad_batch_both_sides() -> None:
    right_ids, right_mask = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert right_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    left_ids, left_mask = pad_batch([[5, 6, 7], [8]], pad_id=1, side="left")
    assert left_ids.tolist() == [[5, 6, 7], [1, 1, 8]]
    assert left_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert right_ids.dtype == left_mask.dtype == torch.long
    with pytest.raises(ValueError):
        pad_batch([[1]], pad_id=0, side="middle")
