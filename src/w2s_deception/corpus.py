"""In-domain pre-training text for the CPU ladder, and the project's own BPE tokenizer."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .data import PAIR_KEYS, DataError, load_pairs, read_jsonl, resolve_data_dir, split_dialogue

VOCAB_SIZE = 4096
RAW_FILES = (
    "harmless-base-test",
    "helpful-base-test",
    "helpful-online-test",
    "helpful-rejection-sampled-test",
)
SPECIAL = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>"}
# the files the pre-training text comes from, and the test split it leaves out: what its cache keys hash
SOURCES = (*(f"hh-raw/{name}.jsonl" for name in RAW_FILES), "hh-harmless/train_gt.jsonl", "hh-harmless/train_w2s.jsonl",
           "hh-helpful/train.jsonl")
READS = (*SOURCES, "hh-harmless/test.jsonl")


def pretraining_texts(data_dir: str | Path | None = None) -> list[str]:
    """Every distinct dialogue of hh-raw and the training splits whose prompt is not a test prompt.

    The evaluation split (`hh-harmless/test`) is never seen in pre-training, not even through
    the raw HH files, which share prompts with it.
    """
    root = resolve_data_dir(data_dir)
    test_prompts = set(load_pairs("hh-harmless/test", root)["prompt"])
    texts: dict[str, None] = {}
    for name in SOURCES:
        for number, rec in read_jsonl(root / name, PAIR_KEYS, root):
            for key in PAIR_KEYS:
                text = rec[key]
                try:
                    prompt = split_dialogue(text)[0]
                except DataError as exc:
                    raise DataError(f"{root / name} line {number}, '{key}': {exc}") from None
                if prompt not in test_prompts and not _shares_first_turn(text, test_prompts):
                    texts[text] = None
    return list(texts)


def _shares_first_turn(text: str, test_prompts: set[str]) -> bool:
    """Whether a multi-turn dialogue opens with a test prompt's first Human turn."""
    first = text.split("\n\nAssistant:", 1)[0] + "\n\nAssistant:"
    return first in test_prompts


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on the pre-training text (GPT-2's scheme, smaller vocab)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)
