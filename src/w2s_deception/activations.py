"""Frozen-bottom activation cache: what a rung's bottom blocks compute for a split, stored once.

A policy trained through adapters on its top blocks (`Config.frozen_blocks` > 0, `po_finetune="lora"`)
never changes its bottom blocks, so their output for every training and test sequence is computed
once, cached like every run, and fed to the top blocks as `inputs_embeds`: exact up to float
rounding (tested against the full pass), and each training step skips the bottom's forward and
backward passes (`benchmarks/frozen_bottom.py` prints the speed-up over adapters on all blocks).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from .cache import Entry, RunCache, code_version
from .config import Config, ConfigError
from .data import pad_batch
from .numerics import autocast, autocast_dtype


def _blocks(lm: PreTrainedModel) -> tuple[torch.nn.Module, str]:
    """The LM's base model and the name of its list of transformer blocks."""
    base = lm.base_model
    return base, ("layers" if hasattr(base, "layers") else "h")


def check_depth(lm: PreTrainedModel, frozen: int) -> None:
    """Refuse a frozen depth that leaves no block to train (or is negative)."""
    base, name = _blocks(lm)
    n = len(getattr(base, name))
    if not 0 < frozen < n:
        raise ConfigError(f"invalid frozen_blocks={frozen}: expected 1 to {n - 1} for a model of {n} blocks")


@torch.no_grad()
def bottom_states(lm: PreTrainedModel, frozen: int, seqs: list[list[int]], pad_id: int, batch: int = 16,
                  desc: str = "bottom blocks") -> list[np.ndarray]:
    """Each sequence's hidden states after the first `frozen` blocks (one (length, hidden) array per
    sequence, padding dropped), computed in length-sorted batches."""
    check_depth(lm, frozen)
    base, name = _blocks(lm)
    layers = getattr(base, name)
    captured: list[torch.Tensor] = []
    hook = layers[frozen - 1].register_forward_hook(
        lambda _m, _i, out: captured.append(out[0] if isinstance(out, tuple) else out))
    saved, n_layers = layers, lm.config.num_hidden_layers
    setattr(base, name, layers[:frozen])  # the blocks above never run
    lm.config.num_hidden_layers = frozen
    try:
        out: list[np.ndarray | None] = [None] * len(seqs)
        order = np.argsort([len(s) for s in seqs], kind="stable")
        for start in tqdm(range(0, len(seqs), batch), desc=desc, leave=False, disable=None):
            idx = order[start:start + batch]
            ids, mask = pad_batch([seqs[i] for i in idx], pad_id, side="right")
            captured.clear()
            base(input_ids=ids, attention_mask=mask, use_cache=False)
            states = captured[-1].float()
            for row, i in enumerate(idx):
                out[i] = states[row, :len(seqs[i])].numpy().copy()
    finally:
        hook.remove()
        setattr(base, name, saved)
        lm.config.num_hidden_layers = n_layers
    return out  # type: ignore[return-value]


def keep_top_blocks(lm: PreTrainedModel, frozen: int) -> PreTrainedModel:
    """`lm` without its first `frozen` blocks (in place): fed their output as `inputs_embeds`, it computes
    what the whole model computes on the token ids. Saved and reloaded, it stays that top part."""
    check_depth(lm, frozen)
    base, name = _blocks(lm)
    setattr(base, name, torch.nn.ModuleList(list(getattr(base, name))[frozen:]))
    lm.config.num_hidden_layers -= frozen
    lm.config.use_cache = False  # the kept blocks keep their indices, which a KV cache would count from 0
    if hasattr(base, "wpe"):  # GPT-2 adds position embeddings to its input: the bottom states hold them already
        base.wpe.weight.data.zero_()
        base.wpe.weight.requires_grad_(False)
    if getattr(lm.config, "layer_types", None):  # Gemma-3: sliding or full attention, per block
        lm.config.layer_types = list(lm.config.layer_types)[frozen:]
    return lm


def activation_entry(cfg: Config, rung: str, split: str, cache: RunCache, seqs: list[list[int]], pad_id: int,
                     ids: np.ndarray, key: dict) -> Entry:
    """The cached bottom states of a split's sequences (`seqs`: chosen then rejected of each pair, as the
    policy tokenises them) for `cfg.frozen_blocks`; `key` names what the sequences depend on. Matrix products
    in bf16 on CPUs with bf16 units (`numerics.autocast_dtype`), states kept in fp32."""
    from .ladder import load_trunk, trunk_key

    dtype = autocast_dtype()
    spec = {"rung": cfg.rung(rung).spec(), "trunk": trunk_key(cfg, cfg.rung(rung)), "split": split,
            "frozen_blocks": cfg.frozen_blocks, "sequences": key, "autocast": dtype, "code": code_version(__name__)}

    def compute(tmp):
        lm, _ = load_trunk(cfg, cfg.rung(rung), cache)
        with autocast(dtype):
            states = bottom_states(lm.eval(), cfg.frozen_blocks, seqs, pad_id, desc=f"bottom {rung}/{split}")
        lengths = np.array([len(s) for s in states])
        np.save(tmp / "states.npy", np.concatenate(states).astype(np.float32))
        np.save(tmp / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]))
        return pd.DataFrame({"row": range(len(seqs)), "length": lengths}), {"n_pairs": len(ids)}

    return cache.get_or_compute("activations", spec, compute)


def load_states(entry: Entry) -> list[np.ndarray]:
    """The cached states, one (length, hidden) array per sequence (views of one memory-mapped file)."""
    states = np.load(entry.file("states.npy"), mmap_mode="r")
    offsets = np.load(entry.file("offsets.npy"))
    return [states[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def pad_states(states: list[np.ndarray]) -> torch.Tensor:
    """(rows, longest, hidden) right-padded with zeros (padding is masked out by the attention mask)."""
    longest = max(len(s) for s in states)
    out = torch.zeros(len(states), longest, states[0].shape[-1])
    for i, s in enumerate(states):
        out[i, :len(s)] = torch.from_numpy(np.array(s))  # a copy: the cache is memory-mapped read-only
    return out
