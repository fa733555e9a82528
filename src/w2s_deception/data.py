"""Preference pairs: locate the data, load and check them, and turn them into token ids.

Every problem with the data raises `DataError` with a message that names the problem and
the fix. `load_pairs` returns a `datasets.Dataset` with columns `pair_id` (0-based line in
the source file, stable across runs), `prompt` (dialogue up to and including the final
``"\\n\\nAssistant:"``), `chosen` and `rejected` (the two final responses only).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
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
PAIR_KEYS = {"chosen": str, "rejected": str}  # what every record of an HH pair file holds
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


def data_key(names: Iterable[str], data_dir: str | Path | None = None) -> dict[str, str]:
    """{file: sha256} of the data files a run reads (`names` as `load_pairs` takes them, or paths relative to
    the data folder with their suffix), each checked against SHA256SUMS: a run's cache key holds this."""
    root = resolve_data_dir(data_dir)
    out = {}
    for name in sorted(set(names)):
        path = root / name if name.endswith(".jsonl") else data_file(name, root)
        if not path.is_file():
            raise DataError(f"no data file {path}")
        out[path.relative_to(root).as_posix()] = verified(path, root)
    return out


def load_stats(dataset: datasets.Dataset) -> dict:
    """Return what load_pairs recorded about a dataset (source, records read, identical pairs dropped)."""
    return json.loads(dataset.info.description)


def data_file(name: str, data_dir: str | Path | None = None) -> Path:
    """Return the JSON Lines file of split `name`, or a DataError listing the available splits."""
    root = resolve_data_dir(data_dir)
    path = root / f"{name.removesuffix('.jsonl')}.jsonl"
    if not path.is_file():
        available = sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.jsonl"))
        raise DataError(f"no data file {path}; available splits in {root}: {', '.join(available) or 'none'}")
    return path


MAX_RECORD_BYTES = 100_000  # one JSON Lines record; the largest in the shared data is 20 kB (hh-raw)
SUMS = "SHA256SUMS"


@functools.lru_cache(maxsize=64)
def _digest(path: Path, identity: tuple[int, ...]) -> str:
    """sha256 of a file's bytes, memoised per `identity` (inode, size, modification and change times: a file
    rewritten in place keeping its size and modification time still has a new change time)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_digest(path: str | Path) -> str:
    """The sha256 of a data file's bytes: what a run's cache key records of the data it reads."""
    path = Path(path).resolve()
    stat = path.stat()
    return _digest(path, (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))


def _listed_sums(root: Path) -> dict[str, str]:
    """`SHA256SUMS` of a data folder as {relative path: sha256}; a DataError when the folder has none, since
    without it no file can be checked."""
    sums = root / SUMS
    if not sums.is_file():
        raise DataError(f"no {SUMS} in the data folder {root}: its files cannot be checked; restore it (the project's "
                        f"data folder ships one) or write one with `sha256sum */*.jsonl > {SUMS}` in that folder")
    listed = {}
    for number, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or len(parts[0]) != 64:
            raise DataError(f"{sums} line {number}: expected '<sha256>  <path>', got {line[:80]!r}")
        listed[parts[1]] = parts[0]
    return listed


def _relative(path: Path, root: Path) -> str:
    """A data file's name within the data folder, as SHA256SUMS lists it: taken from the path as given, not
    from where a symbolic link points, so a link to a file elsewhere is checked under its listed name."""
    try:
        return Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(root))).as_posix()
    except ValueError:
        raise DataError(f"{path} is not in the data folder {root}; data files are read from that folder only") from None


def verified(path: str | Path, data_dir: str | Path | None = None) -> str:
    """The file's sha256, checked against the data folder's SHA256SUMS, which must list it; a DataError naming
    the file when it is not listed or its bytes differ (the data changed since the sums were written)."""
    path = Path(path)
    root = resolve_data_dir(data_dir)
    relative = _relative(path, root)
    expected = _listed_sums(root).get(relative)
    if expected is None:
        raise DataError(f"{path}: not listed in {root / SUMS}, so its bytes cannot be checked; restore the list, "
                        "or regenerate the data and its sums")
    digest = file_digest(path)
    if expected != digest:
        raise DataError(f"{path}: its sha256 {digest[:12]}… differs from {root / SUMS} ({expected[:12]}…); "
                        f"the file was changed or damaged: restore it, or regenerate the data and its {SUMS}")
    return digest


def verify_folder(data_dir: str | Path | None = None) -> int:
    """Check every file SHA256SUMS lists against its bytes (a build does this before trusting anything it
    built from them); the number of files checked, or a DataError naming the first that differs."""
    root = resolve_data_dir(data_dir)
    names = sorted(_listed_sums(root))
    for name in names:
        if not (root / name).is_file():
            raise DataError(f"{root / name}: listed in {root / SUMS} but missing; restore the data folder")
        verified(root / name, root)
    return len(names)


def read_jsonl(path: str | Path, required: Mapping[str, type], data_dir: str | Path | None = None,
               max_bytes: int = MAX_RECORD_BYTES) -> list[tuple[int, dict]]:
    """Every record of a JSON Lines data file as (line number, object), after checking the file against
    SHA256SUMS: each line valid UTF-8 (else the byte offset is named), at most `max_bytes` long, a JSON
    object with the `required` keys of the given types; an empty file is refused too."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no data file {path}")
    verified(path, data_dir)
    records, offset = [], 0
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if len(raw) > max_bytes:
                raise DataError(f"{path} line {number}: a record of {len(raw):,} bytes, over the limit of "
                                f"{max_bytes:,} (data.MAX_RECORD_BYTES); is the file a JSON Lines file of pairs?")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path} line {number}, byte offset {offset + exc.start}: not valid UTF-8 "
                                f"({exc.reason}); re-encode the file as UTF-8") from exc
            offset += len(raw)
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {number}: not valid JSON ({exc}); fix or regenerate the file") from exc
            except RecursionError:
                raise DataError(f"{path} line {number}: JSON nested too deeply to read; is the file a JSON Lines "
                                "file of pairs?") from None
            keys = ", ".join(f"'{k}'" for k in required)
            if not isinstance(record, dict):
                raise DataError(f"{path} line {number}: expected a JSON object with {keys}")
            bad = [k for k, kind in required.items() if not isinstance(record.get(k), kind)]
            if bad:
                kinds = ", ".join(f"{k}: {required[k].__name__}" for k in bad)
                raise DataError(f"{path} line {number}: missing or mistyped keys ({kinds}); each record needs {keys}")
            for key in required:
                if isinstance(record[key], str) and not _encodable(record[key]):
                    raise DataError(f"{path} line {number}: '{key}' holds an unpaired surrogate escape (e.g. \\ud800), "
                                    "which is no text; fix or regenerate the file")
            records.append((number, record))
    if not records:
        raise DataError(f"{path} is empty: no records to load; regenerate it or pick another split")
    return records


def _encodable(text: str) -> bool:
    """Whether a string is text that UTF-8 can hold (JSON's \\u escapes can name lone surrogates, which it cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    pairs.info.description = json.dumps({"source": source, "where": where, "n_records": len(raw),
                                         "n_dropped_identical": dropped})
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
        path = data_file(name, data_dir)
        rows = [record for _, record in read_jsonl(path, PAIR_KEYS, data_dir)]
        raw = datasets.Dataset.from_dict({key: [r[key] for r in rows] for key in PAIR_KEYS})
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


def pad_batch(sequences: list[list[int]], pad_id: int,
              side: str = "right") -> tuple[torch.LongTensor, torch.LongTensor]:
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
