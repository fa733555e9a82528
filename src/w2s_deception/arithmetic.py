"""A controlled preference task where capability provably matters at laptop scale (beyond the paper).

Prompts are sums `a+b=` with operands of one to four digits; the preferred reply is the correct
sum, the other a near miss (±1, ±10, or one digit changed). Small character-level models
pre-trained here on sums know the easy problems; only well-trained ones know the long ones with
carries, so Strong-Known ∩ Weak-Unknown is a real, sizeable area. The implicit conflict's pairs
(the HH `helpful` split's counterpart) come from a second instruction, a leading `?` ("give a
plausible wrong answer"), whose preferred reply is the near miss: training on it pulls against
correctness the way HH helpfulness pulls against harmlessness.

Every split is generated from a fixed seed (no data files); splits are disjoint in problems
beyond the 100 one-digit sums, which recur as they do in any arithmetic curriculum.
"""

from __future__ import annotations

import datasets
import numpy as np
from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

ALPHABET = "0123456789+=?\n"
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
WRONG = "?"  # the conflicting instruction's marker
SIZES = {"train_gt": 4000, "train_w2s": 4000, "test": 2000, "helpful": 4000}
_SEEDS = {"train_gt": 11, "train_w2s": 12, "test": 13, "helpful": 14, "corpus": 15}
MAX_DIGITS = 4
VERSION = 1  # bump when the generator changes: cache keys of every run on this task include it


def _operand(rng: np.random.Generator, digits: int) -> int:
    """A uniformly drawn number with exactly `digits` digits (0–9 for one digit)."""
    return int(rng.integers(0 if digits == 1 else 10 ** (digits - 1), 10 ** digits))


def problem(rng: np.random.Generator) -> tuple[int, int]:
    """(a, b), each operand's digit count drawn uniformly from 1 to MAX_DIGITS."""
    da, db = rng.integers(1, MAX_DIGITS + 1, size=2)
    return _operand(rng, int(da)), _operand(rng, int(db))


def near_miss(c: int, rng: np.random.Generator) -> int:
    """A plausible wrong answer to a sum equal to c: c ± 1, c ± 10, or c with one digit changed."""
    kind = int(rng.integers(3))
    if kind < 2:
        step = 1 if kind == 0 else 10
        sign = 1 if c < step or rng.random() < 0.5 else -1
        return c + sign * step
    digits = list(str(c))
    i = int(rng.integers(len(digits)))
    choices = [d for d in "0123456789" if d != digits[i] and not (i == 0 and d == "0" and len(digits) > 1)]
    digits[i] = str(rng.choice(choices))
    return int("".join(digits))


def difficulty(a: int, b: int) -> str:
    """A problem's difficulty class: digits of the longer operand, and whether any column carries."""
    carry, x, y = False, a, b
    while x or y:
        if x % 10 + y % 10 + carry >= 10:
            carry = True
            break
        x, y = x // 10, y // 10
    return f"{max(len(str(a)), len(str(b)))} digits{' + carry' if carry else ''}"


def pairs(split: str, limit: int | None = None) -> datasets.Dataset:
    """One split as preference pairs: pair_id, prompt (`a+b=`), chosen, rejected (each ending in a
    newline), and the problem's difficulty. `helpful` holds the conflicting instruction's pairs:
    prompt `?a+b=`, chosen the near miss, rejected the correct sum."""
    if split not in SIZES:
        raise ValueError(f"unknown split {split!r} of the arithmetic task; splits: {', '.join(SIZES)}")
    n = SIZES[split] if limit is None else min(limit, SIZES[split])
    rng = np.random.default_rng(_SEEDS[split])
    rows = {"pair_id": [], "prompt": [], "chosen": [], "rejected": [], "difficulty": []}
    for i in range(SIZES[split]):
        a, b = problem(rng)
        right, wrong = a + b, near_miss(a + b, rng)
        if i >= n:
            break
        first, second = (wrong, right) if split == "helpful" else (right, wrong)
        rows["pair_id"].append(i)
        rows["prompt"].append(f"{WRONG if split == 'helpful' else ''}{a}+{b}=")
        rows["chosen"].append(f"{first}\n")
        rows["rejected"].append(f"{second}\n")
        rows["difficulty"].append(difficulty(a, b))
    return datasets.Dataset.from_dict(rows)


def corpus(n_lines: int) -> list[str]:
    """Pre-training text: `n_lines` correct sums `a+b=c` (newline-terminated, as the replies are), drawn
    independently of the pair splits."""
    rng = np.random.default_rng(_SEEDS["corpus"])
    out = []
    for _ in range(n_lines):
        a, b = problem(rng)
        out.append(f"{a}+{b}={a + b}\n")
    return out


def tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer over the task's alphabet (a BPE model with no merges)."""
    vocab = {tok: i for i, tok in enumerate([*SPECIAL.values(), *ALPHABET])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.decoder = decoders.BPEDecoder()
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)
