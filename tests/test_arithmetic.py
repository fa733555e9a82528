"""The controlled arithmetic task: pairs, near misses, difficulty classes, corpus, tokenizer."""

import numpy as np
import pytest

from w2s_deception import arithmetic as ar


def test_pairs_are_sums_against_near_misses():
    pairs = ar.pairs("test").to_pandas()
    assert len(pairs) == ar.SIZES["test"] and list(pairs["pair_id"]) == list(range(len(pairs)))
    for prompt, chosen, rejected in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"]):
        a, b = map(int, prompt.removesuffix("=").split("+"))
        assert chosen == f"{a + b}\n" and rejected.endswith("\n") and rejected != chosen
        assert int(rejected) >= 0


def test_helpful_pairs_prefer_the_near_miss_under_the_marker():
    pairs = ar.pairs("helpful", limit=50).to_pandas()
    for prompt, chosen, rejected in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"]):
        assert prompt.startswith(ar.WRONG)
        a, b = map(int, prompt[1:].removesuffix("=").split("+"))
        assert rejected == f"{a + b}\n" and chosen != rejected


def test_splits_are_deterministic_and_a_limit_is_a_prefix():
    full = ar.pairs("train_gt").to_pandas()
    assert full.equals(ar.pairs("train_gt").to_pandas())
    assert ar.pairs("train_gt", limit=10).to_pandas().equals(full.head(10))
    assert not full["prompt"].head(100).equals(ar.pairs("train_w2s").to_pandas()["prompt"].head(100))
    with pytest.raises(ValueError, match="unknown split"):
        ar.pairs("validation")


@pytest.mark.parametrize("c", [0, 5, 9, 10, 99, 100, 1234, 19998])
def test_near_miss_is_close_and_never_equal(c):
    rng = np.random.default_rng(c)
    for _ in range(200):
        w = ar.near_miss(c, rng)
        assert w != c and w >= 0
        assert abs(w - c) in (1, 10) or sum(x != y for x, y in zip(str(w).zfill(6), str(c).zfill(6))) == 1


@pytest.mark.parametrize(("a", "b", "expected"), [
    (3, 4, "1 digits"), (5, 5, "1 digits + carry"), (12, 7, "2 digits"), (19, 1, "2 digits + carry"),
    (1000, 234, "4 digits"), (999, 1, "3 digits + carry"), (4501, 499, "4 digits + carry"), (0, 0, "1 digits"),
])
def test_difficulty(a, b, expected):
    assert ar.difficulty(a, b) == expected


def test_corpus_lines_are_correct_newline_terminated_sums():
    lines = ar.corpus(200)
    assert lines == ar.corpus(200)
    for line in lines:
        left, c = line.removesuffix("\n").split("=")
        a, b = map(int, left.split("+"))
        assert line.endswith("\n") and int(c) == a + b


def test_tokenizer_is_one_token_per_character():
    tok = ar.tokenizer()
    text = "?37+485=522\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) and tok.decode(ids) == text
    assert len(tok) == len(ar.ALPHABET) + 3 and tok.pad_token_id != tok.eos_token_id
