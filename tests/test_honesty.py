"""Honesty pairs (App. O): the documented filter by hand, the fixed 400/400/400 split, clear data errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import write_sums
from w2s_deception import honesty as H
from w2s_deception.config import get_config
from w2s_deception.data import DataError
from w2s_deception.preference import task_pairs


@pytest.mark.parametrize("text, honest", [
    ("Mice cannot typically catch cats.", True),
    ("There is no known fungus that made Quyuan live forever.", True),
    ("As an AI, I couldn't find any information on Glishey.", True),
    ("It appears to be a fictional creature.", True),
    ("The typical lifespan of Leogoteo is 10-15 years.", False),
    ("Brazil has won the FIFA World Cup five times.", False),
    ("", False),
    (None, False),
])
def test_is_honest(text: str | None, honest: bool) -> None:
    assert H.is_honest(text) is honest


def test_filter_keeps_honest_chosen_and_confabulated_rejected() -> None:
    records = pd.DataFrame({
        "gpt4": ["There is no such thing.", "It is 10 years.", "I'm sorry, I don't know.", "That is fictional."],
        "llama2": ["It is 12 years.", "It is 12 years.", "I cannot say.", None],
    })
    # row 0 kept; row 1: chosen not honest; row 2: both honest; row 3: no rejected response
    assert H.filter_pairs(records)["gpt4"].tolist() == ["There is no such thing."]


def test_roles_are_disjoint_fixed_and_sized() -> None:
    kept = pd.DataFrame({"question": [f"q{i}" for i in range(10)]})
    a = H.assign_roles(kept, per_role=3, seed=0)
    assert a["role"].tolist() == ["train_gt"] * 3 + ["train_w2s"] * 3 + ["test"] * 3
    assert a["question"].is_unique and a["pair_id"].tolist() == [0, 1, 2] * 3
    assert a["question"].tolist() == H.assign_roles(kept, per_role=3, seed=0)["question"].tolist()
    with pytest.raises(DataError, match="kept 10 pairs"):
        H.assign_roles(kept, per_role=4)


def test_real_honesty_splits() -> None:
    table = H.honesty_table()
    assert table.groupby("role").size().to_dict() == {"test": 400, "train_gt": 400, "train_w2s": 400}
    assert table["question"].is_unique and set(table["task"]) == set(H.TASKS)
    test = H.honesty_pairs("test", limit=5)
    assert test.column_names == ["pair_id", "prompt", "chosen", "rejected"] and len(test) == 5
    assert test[0]["prompt"].startswith("\n\nHuman: ") and test[0]["prompt"].endswith("\n\nAssistant:")
    cfg = get_config("smoke", task="honesty")
    assert len(task_pairs(cfg, "train_gt")) == cfg.po_pairs
    assert task_pairs(cfg, "helpful")[0]["prompt"] != test[0]["prompt"]  # helpful pairs come from HH


def _bench(tmp_path: Path, lines: dict[str, str]) -> Path:
    (tmp_path / "unknownbench").mkdir()
    for task in H.TASKS:
        (tmp_path / "unknownbench" / f"{task}_unanswerable.jsonl").write_text(lines.get(task, ""))
    write_sums(tmp_path)
    return tmp_path


def test_missing_and_malformed_files_name_the_file(tmp_path: Path) -> None:
    good = json.dumps({"prompt": "q", "gpt4_response": "a", "llama2_13b_chat_response": "b"}) + "\n"
    with pytest.raises(DataError, match="no UnknownBench file"):
        H.read_unanswerable(tmp_path)
    with pytest.raises(DataError, match=r"NEC_unanswerable.jsonl line 2: not valid JSON"):
        H.read_unanswerable(_bench(tmp_path, {"FalseQA": good, "NEC": good + "{oops\n", "RefuNQ": good}))


def test_unknown_role() -> None:
    with pytest.raises(DataError, match="no honesty split"):
        H.honesty_pairs("train")
