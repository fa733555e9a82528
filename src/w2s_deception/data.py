"""Preference pairs: locate the data, load and check them, and turn them into token ids.

Every problem with the data raises `DataError` with a message that names the problem and
the fix. `load_pairs` returns a `datasets.Dataset` with columns `pair_id` (0-based line in
the source file, stable across runs), `prompt` (dialogue up to and including the final
``"\\n\\nAssistant:"``), `chosen` and `rejected` (the two final responses only).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import datasets
import torch

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DATA_DIR_ENV = "W2S_DATA_DIR"
ASSISTANT = "\n\nAssistant:"
HUMAN = "\n\nHuman:"
SOURCES = ("local", "hub")
COLUMNS = ["pair_id", "prompt", "chosen", "rejected"]
HUB_ID = "Anthropic/hh-rlhf"
# project split name -> (hh-rlhf subset, hub split, first single-turn pair, last + 1)
HUB_SPLITS: dict[str, tuple[str, str, int, int | None]] = {
    "hh-harmless/train_gt": ("harmless-base", "train", 0, 4000),
    "hh-harmless/train_w2s": ("harmless-base", "train", 4000, 8000),
    "hh-harmless/test": ("harmless-base", "test", 0, 4000),
    "hh-helpful/train": ("helpful-base", "train", 0, 4000),
    "hh-helpful/test": ("helpful-base", "test", 0, None),
}


class DataError(ValueError):
    """A data problem the user can fix; the message says what is wrong and how to fix it."""


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """Return the data folder (argument, else $W2S_DATA_DIR, else DEFAULT_DATA_DIR), checked to exist."""
    path = Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()
    if not path.is_dir():
        raise DataError(
            f"data folder not found: {path}; pass data_dir=... or set {DATA_DIR_ENV} "
            f"to the folder holding hh-harmless/ (default {DEFAULT_DATA_DIR})"
        )
    return path


def split_dialogue(text: str) -> tuple[str, str]:
    """Split a dialogue at its last Assistant marker into (prompt incl. marker, response)."""
    cut = text.rfind(ASSISTANT)
    if cut < 0:
        raise DataError(f"no {ASSISTANT!r} in dialogue {text[:80]!r}; each record must end with an Assistant turn")
    cut += len(ASSISTANT)
    return text[:cut], text[cut:]


def split_pair(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two dialogues into (shared prompt, chosen response, rejected response).

    The prompt is the longest common prefix cut at its last Assistant marker, not each
    dialogue's last marker: some HH responses contain a spurious "\\n\\nAssistant:" of their
    own (27 pairs across hh-harmless), and splitting at it would cut the response.
    """
    prompt, _ = split_dialogue(os.path.commonprefix([chosen, rejected]))
    return prompt, chosen[len(prompt):], rejected[len(prompt):]


def load_stats(dataset: datasets.Dataset) -> dict:
    """Return what load_pairs recorded about a dataset (source, records read, identical pairs dropped)."""
    return json.loads(dataset.info.description)


def _data_file(name: str, data_dir: str | Path | None) -> Path:
    """Return the JSON Lines file of split `name`, or a DataError listing the available splits."""
    root = resolve_data_dir(data_dir)
    path = root / f"{name.removesuffix('.jsonl')}.jsonl"
    if not path.is_file():
        available = sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.jsonl"))
        raise DataError(f"no data file {path}; available splits in {root}: {', '.join(available) or 'none'}")
    return path


def _validate_jsonl(path: Path) -> None:
    """Check `path` is non-empty and every line is a JSON object with string `chosen` and `rejected`."""
    number = 0
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {number}: not valid JSON ({exc}); fix or regenerate the file") from exc
            if not isinstance(record, dict):
                raise DataError(f"{path} line {number}: expected a JSON object with 'chosen' and 'rejected'")
            bad = [key for key in ("chosen", "rejected") if not isinstance(record.get(key), str)]
            if bad:
                raise DataError(f"{path} line {number}: missing or non-string keys {bad}; each record needs string 'chosen' and 'rejected'")
    if number == 0:
        raise DataError(f"{path} is empty: no pairs to load; regenerate it or pick another split")


def _to_pairs(raw: datasets.Dataset, where: str, source: str, limit: int | None) -> datasets.Dataset:
    """Split raw chosen/rejected dialogues into prompt + responses, drop identical pairs, apply limit."""

    def split(record: dict, index: int) -> dict:
        try:
            prompt, chosen, rejected = split_pair(record["chosen"], record["rejected"])
        except DataError as exc:
            raise DataError(f"{where} line {index + 1}: chosen and rejected share no prompt ({exc})") from exc
        return {"pair_id": index, "prompt": prompt, "chosen": chosen, "rejected": rejected}

    pairs = raw.map(split, with_indices=True, remove_columns=raw.column_names).select_columns(COLUMNS)
    pairs = pairs.filter(lambda record: record["chosen"] != record["rejected"])
    dropped = len(raw) - len(pairs)
    if dropped:
        logger.info("%s: dropped %d pairs whose chosen and rejected responses are identical", where, dropped)
    if limit is not None:
        pairs = pairs.select(range(min(limit, len(pairs))))
    if len(pairs) == 0:
        raise DataError(f"{where}: no usable pairs (records: {len(raw)}, identical dropped: {dropped}, limit: {limit})")
    pairs.info.description = json.dumps({"source": source, "where": where, "n_records": len(raw), "n_dropped_identical": dropped})
    return pairs


def _load_hub(name: str) -> tuple[datasets.Dataset, str]:
    """Load the hub counterpart of split `name` (see HUB_SPLITS) as raw single-turn records."""
    if name not in HUB_SPLITS:
        raise DataError(f"no hub mapping for {name!r}; hub splits: {', '.join(HUB_SPLITS)}")
    subset, split, start, stop = HUB_SPLITS[name]
    try:
        raw = datasets.load_dataset(HUB_ID, data_dir=subset, split=split)
    except OSError as exc:
        raise DataError(
            f"hub not reachable or {HUB_ID} unavailable ({exc}); use source='local' with data_dir=... or {DATA_DIR_ENV}"
        ) from exc
    single = [i for i, text in enumerate(raw["chosen"]) if text.count(HUMAN) == 1]
    return raw.select(single[start:stop]), f"{HUB_ID}/{subset} {split} (single-turn pairs {start}:{stop})"


def load_pairs(
    name: str, data_dir: str | Path | None = None, limit: int | None = None, source: str = "local"
) -> datasets.Dataset:
    """Load split `name` (e.g. "hh-harmless/train_gt") as checked pairs: pair_id, prompt, chosen, rejected.

    source="local" reads `<data_dir>/<name>.jsonl`; `pair_id` is the 0-based line index.
    source="hub" reads `Anthropic/hh-rlhf`, keeping single-turn pairs (one Human turn):
    hh-harmless/train_gt = harmless-base train single-turn pairs [0, 4000),
    hh-harmless/train_w2s = the same [4000, 8000), hh-harmless/test = harmless-base test
    [0, 4000) (fewer exist), hh-helpful/train = helpful-base train [0, 4000),
    hh-helpful/test = all of helpful-base test; `pair_id` is the row in that selection.
    Pairs whose two responses are identical are dropped (logged; count in `load_stats`);
    `limit` then keeps the first `limit` pairs. An empty result raises DataError.
    """
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of pairs or None, got {limit}")
    if source == "local":
        path = _data_file(name, data_dir)
        _validate_jsonl(path)
        raw = datasets.load_dataset("json", data_files=str(path), split="train")
        where = str(path)
    elif source == "hub":
        raw, where = _load_hub(name)
    else:
        raise DataError(f"unknown source {source!r}; allowed: {', '.join(SOURCES)}")
    return _to_pairs(raw, where, source, limit)


def encode_pair(tokenizer, prompt: str, response: str, max_length: int) -> tuple[list[int], int]:
    """Tokenise prompt and response separately (exact boundary); keep the last max_length ids.

    Returns (ids, response_start). Truncation drops tokens from the left, so the end of the
    response always survives; response_start is 0 once the whole prompt is cut away.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be positive, got {max_length}")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    ids = prompt_ids + response_ids
    cut = max(len(ids) - max_length, 0)
    return ids[cut:], max(len(prompt_ids) - cut, 0)


def pad_batch(sequences: list[list[int]], pad_id: int, side: str = "right") -> tuple[torch.LongTensor, torch.LongTensor]:
    """Pad token id lists into (input_ids, attention_mask) tensors, padding on `side` ("right"/"left")."""
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    ids = [torch.tensor(seq, dtype=torch.long) for seq in sequences]
    masks = [torch.ones(len(seq), dtype=torch.long) for seq in sequences]
    pad = torch.nn.utils.rnn.pad_sequence
    return (
        pad(ids, batch_first=True, padding_value=pad_id, padding_side=side),
        pad(masks, batch_first=True, padding_value=0, padding_side=side),
    )
