"""Many runs of one small GPT-2 in one pass: every weight stacked over runs (issue: tiny models spend the core on
per-operation overhead, not on arithmetic).

`StackedGPT2` holds R copies of one GPT-2 architecture (the scratch rungs: tied embeddings, learned positions,
pre-norm blocks, tanh GELU, no dropout) as tensors with a leading run axis, and runs them with batched matrix
products (`torch.baddbmm`) and one attention call over runs × sequences: the framework's per-operation cost is
paid once for all R runs. `fit_stacked` trains R such runs together, each with its own data, order, labels and
loss, with the semantics of `train.fit` run by run (its shuffled batches, length-sorted micro-batches weighted by
their units, AdamW, warm-up); the runs' losses are summed before one backward pass, and every parameter belongs to
one run, so no run's gradient sees another's data. Written here because neither transformers nor torch.func
batches whole models over runs at this cost (`torch.func.vmap` over the transformers model measured 1.3–1.6× per
run-step, this 3×: `../shared/notes/performance-measurements.md`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import GPT2LMHeadModel, get_constant_schedule_with_warmup

from .train import loss_units, micro_batches

LN_EPS = 1e-5


def _stack(tensors: Sequence[torch.Tensor]) -> nn.Parameter:
    return nn.Parameter(torch.stack([t.detach().clone() for t in tensors]))


def check_stackable(lms: Sequence[GPT2LMHeadModel]) -> None:
    """Refuse models this module does not compute exactly: not GPT-2, different shapes, dropout, another activation."""
    if not lms:
        raise ValueError("no model to stack")
    first = lms[0].config
    for lm in lms:
        cfg = lm.config
        if cfg.model_type != "gpt2":
            raise ValueError(f"only GPT-2 models stack, got {cfg.model_type!r}")
        shape = (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.n_positions)
        if shape != (first.n_layer, first.n_embd, first.n_head, first.vocab_size, first.n_positions):
            raise ValueError(f"models of different shapes do not stack: {shape}")
        if cfg.activation_function not in ("gelu_pytorch_tanh", "gelu_new"):
            raise ValueError(f"activation {cfg.activation_function!r} is not the tanh GELU this module computes")
        if any(getattr(cfg, p, 0) for p in ("resid_pdrop", "embd_pdrop", "attn_pdrop")) and lm.training:
            raise ValueError("dropout is not stacked: train the models with dropout 0")
        if cfg.layer_norm_epsilon != LN_EPS or getattr(cfg, "scale_attn_by_inverse_layer_idx", False):
            raise ValueError("a GPT-2 variant this module does not compute")


class StackedGPT2(nn.Module):
    """R GPT-2 LMs of one shape, every weight with a leading run axis."""

    def __init__(self, lms: Sequence[GPT2LMHeadModel]) -> None:
        super().__init__()
        check_stackable(lms)
        self.config = lms[0].config
        self.runs = len(lms)
        self.n_head = self.config.n_head
        bases = [lm.transformer for lm in lms]
        self.wte = _stack([b.wte.weight for b in bases])  # (R, V, D); the LM head is tied to it
        self.wpe = _stack([b.wpe.weight for b in bases])  # (R, P, D)
        self.blocks = nn.ModuleList()
        for i in range(self.config.n_layer):
            blocks = [b.h[i] for b in bases]
            block = nn.Module()
            block.ln_1_w, block.ln_1_b = _stack([k.ln_1.weight for k in blocks]), _stack([k.ln_1.bias for k in blocks])
            block.attn_w, block.attn_b = (_stack([k.attn.c_attn.weight for k in blocks]),
                                          _stack([k.attn.c_attn.bias for k in blocks]))
            block.proj_w, block.proj_b = (_stack([k.attn.c_proj.weight for k in blocks]),
                                          _stack([k.attn.c_proj.bias for k in blocks]))
            block.ln_2_w, block.ln_2_b = _stack([k.ln_2.weight for k in blocks]), _stack([k.ln_2.bias for k in blocks])
            block.fc_w, block.fc_b = (_stack([k.mlp.c_fc.weight for k in blocks]),
                                      _stack([k.mlp.c_fc.bias for k in blocks]))
            block.out_w, block.out_b = (_stack([k.mlp.c_proj.weight for k in blocks]),
                                        _stack([k.mlp.c_proj.bias for k in blocks]))
            self.blocks.append(block)
        self.ln_f_w, self.ln_f_b = _stack([b.ln_f.weight for b in bases]), _stack([b.ln_f.bias for b in bases])

    @staticmethod
    def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """GPT-2's Conv1D for every run: x (R, T, in) @ w (R, in, out) + b (R, out)."""
        return torch.baddbmm(b.unsqueeze(1), x, w)

    @staticmethod
    def _norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=-1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + LN_EPS) * w.unsqueeze(1) + b.unsqueeze(1)

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Final hidden states (R, N, L, D) of right-padded rows `input_ids` (R, N, L)."""
        r, n, length = input_ids.shape
        d, heads = self.config.n_embd, self.n_head
        runs = torch.arange(r, device=input_ids.device)[:, None, None]
        x = self.wte[runs, input_ids] + self.wpe[:, :length].unsqueeze(1)  # (R, N, L, D)
        x = x.reshape(r, n * length, d)
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        # a query attends to the real keys at or before it; a padding query also to itself, so that no row is
        # masked whole (which gives NaN, and NaN times a zero weight is still NaN in the gradient)
        eye = torch.eye(length, dtype=torch.bool, device=x.device)
        mask = ((causal[None] & attention_mask.reshape(r * n, 1, length).bool()) | eye).unsqueeze(1)  # (RN, 1, L, L)
        for block in self.blocks:
            h = self._norm(x, block.ln_1_w, block.ln_1_b)
            qkv = self._linear(h, block.attn_w, block.attn_b).reshape(r * n, length, 3, heads, d // heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (RN, H, L, d/H)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            a = a.transpose(1, 2).reshape(r, n * length, d)
            x = x + self._linear(a, block.proj_w, block.proj_b)
            h = self._norm(x, block.ln_2_w, block.ln_2_b)
            x = x + self._linear(F.gelu(self._linear(h, block.fc_w, block.fc_b), approximate="tanh"),
                                 block.out_w, block.out_b)
        return self._norm(x, self.ln_f_w, self.ln_f_b).reshape(r, n, length, d)

    def response_logps(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       response_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per run and row: the sum of log p(token | prefix) over the response tokens and their count, as
        `preference.response_logps` computes for one model (position 0 never scored; the LM head on scored
        positions only)."""
        r, n, length = input_ids.shape
        hidden = self.hidden(input_ids, attention_mask)
        position = torch.arange(1, length, device=input_ids.device)
        scored = (position[None, None, :] >= response_start[..., None]) & attention_mask[..., 1:].bool()  # (R, N, L-1)
        counts = scored.sum(dim=(1, 2))
        most = max(int(counts.max()), 1)
        # each run's scored positions gathered into (R, S) slots, padding slots pointing at position 0 and masked
        flat = scored.reshape(r, -1)
        order = torch.argsort((~flat).to(torch.int8), dim=1, stable=True)[:, :most]  # scored first, in order
        valid = torch.gather(flat, 1, order)
        states = hidden[:, :, :-1].reshape(r, n * (length - 1), -1)
        picked = torch.gather(states, 1, order[..., None].expand(-1, -1, states.shape[-1]))  # (R, S, D)
        logits = torch.bmm(picked, self.wte.transpose(1, 2))  # (R, S, V)
        targets = torch.gather(input_ids[:, :, 1:].reshape(r, -1), 1, order)
        token_logp = -F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                      reduction="none").reshape(r, most) * valid
        rows = torch.div(order, length - 1, rounding_mode="floor")
        total = torch.zeros(r, n, dtype=token_logp.dtype, device=input_ids.device).scatter_add(1, rows, token_logp)
        return total, scored.sum(dim=2)

    def export(self, lm: GPT2LMHeadModel, run: int) -> GPT2LMHeadModel:
        """Copy run `run`'s weights into `lm` (a model of the same shape) and return it."""
        base = lm.transformer
        with torch.no_grad():
            base.wte.weight.copy_(self.wte[run])
            base.wpe.weight.copy_(self.wpe[run])
            for block, k in zip(self.blocks, base.h):
                for dst, src in ((k.ln_1.weight, block.ln_1_w), (k.ln_1.bias, block.ln_1_b),
                                 (k.attn.c_attn.weight, block.attn_w), (k.attn.c_attn.bias, block.attn_b),
                                 (k.attn.c_proj.weight, block.proj_w), (k.attn.c_proj.bias, block.proj_b),
                                 (k.ln_2.weight, block.ln_2_w), (k.ln_2.bias, block.ln_2_b),
                                 (k.mlp.c_fc.weight, block.fc_w), (k.mlp.c_fc.bias, block.fc_b),
                                 (k.mlp.c_proj.weight, block.out_w), (k.mlp.c_proj.bias, block.out_b)):
                    dst.copy_(src[run])
            base.ln_f.weight.copy_(self.ln_f_w[run])
            base.ln_f.bias.copy_(self.ln_f_b[run])
        lm.tie_weights()
        return lm


def _stack_batches(batches: Sequence[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """One batch per run (token rows right-padded to their own longest row) as (R, N, L) tensors, padded to the
    longest row of any run; rows counts must agree (runs with fewer rows get masked rows)."""
    n = max(len(b["input_ids"]) for b in batches)
    length = max(b["input_ids"].shape[1] for b in batches)
    ids = torch.full((len(batches), n, length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batches), n, length), dtype=torch.long)
    start = torch.zeros((len(batches), n), dtype=torch.long)
    for r, b in enumerate(batches):
        rows, cols = b["input_ids"].shape
        ids[r, :rows, :cols] = b["input_ids"]
        mask[r, :rows, :cols] = b["attention_mask"]
        start[r, :rows] = b["response_start"]
    return {"input_ids": ids, "attention_mask": mask, "response_start": start}


class _RunScorer(nn.Module):
    """What a run's loss function calls as its scorer: the stacked pass's log-probs of that run, for its rows."""

    def __init__(self, logps: tuple[torch.Tensor, torch.Tensor], run: int, rows: int) -> None:
        super().__init__()
        self.sums, self.counts = logps[0][run, :rows], logps[1][run, :rows]

    def forward(self, *_args, **_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sums, self.counts


@dataclass
class StackedRun:
    """One run of a stack: its data (a dataset with `collate`, e.g. `preference.PolicyPairs`), its loss
    `loss_fn(scorer, batch)` as `train.fit` takes it, and its seed (data order)."""

    examples: Dataset
    loss_fn: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]
    seed: int


def fit_stacked(model: StackedGPT2, runs: Sequence[StackedRun], *, lr: float, epochs: int, batch_size: int,
                micro_batch: int | None, pad_id: int, weight_decay: float = 0.0,
                warmup: float = 0.0) -> list[list[float]]:
    """Train every run of `runs` in `model` (run r's weights are `model`'s r-th slice) as `train.fit` trains one:
    its own shuffled batches (a generator seeded with its seed), length-sorted micro-batches each weighted by its
    share of the batch's units, AdamW, a linear warm-up over the first `warmup` of the steps; the runs must have
    as many examples each (same batches per step). Returns each run's per-step losses."""
    if len({len(r.examples) for r in runs}) != 1:
        raise ValueError("stacked runs need the same number of examples (the same batches per step)")
    loaders = [DataLoader(range(len(r.examples)), batch_size=batch_size, shuffle=True, collate_fn=list,
                          generator=torch.Generator().manual_seed(r.seed)) for r in runs]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = get_constant_schedule_with_warmup(opt, num_warmup_steps=int(warmup * epochs * len(loaders[0])))
    model.train()
    losses: list[list[float]] = [[] for _ in runs]
    for _ in range(epochs):
        # each loader run to its end, as `fit`'s loop runs it: a sampler draws once more from its generator when
        # exhausted, so stopping early would give a run another order in its next epoch
        for batch_idx in zip(*[list(loader) for loader in loaders]):
            parts = [micro_batches(r.examples, idx, micro_batch) for r, idx in zip(runs, batch_idx)]
            totals = [max(loss_units(r.examples, idx), 1) for r, idx in zip(runs, batch_idx)]
            step = torch.zeros(len(runs))
            for k in range(max(len(p) for p in parts)):
                chosen = [p[k] if k < len(p) else None for p in parts]
                batches = [r.examples.collate(c) if c is not None else None for r, c in zip(runs, chosen)]
                present = [b for b in batches if b is not None]
                stacked = _stack_batches([b if b is not None else present[0] for b in batches], pad_id)
                logps = model.response_logps(stacked["input_ids"], stacked["attention_mask"], stacked["response_start"])
                loss = 0.0
                for r, (run, part, batch) in enumerate(zip(runs, chosen, batches)):
                    if part is None:
                        continue
                    weight = loss_units(run.examples, part) / totals[r]
                    run_loss = run.loss_fn(_RunScorer(logps, r, len(batch["input_ids"])), batch) * weight
                    loss = loss + run_loss
                    step[r] += run_loss.detach()
                loss.backward()
            if not torch.isfinite(step).all():
                raise FloatingPointError("non-finite loss in stacked runs "
                                         f"{[i for i, s in enumerate(step) if not math.isfinite(s)]}")
            opt.step()
            schedule.step()
            opt.zero_grad(set_to_none=True)
            for r in range(len(runs)):
                losses[r].append(float(step[r]))
    model.eval()
    return losses


@torch.no_grad()
def score_stacked(model: StackedGPT2, datasets: Sequence[Dataset], batch_size: int, pad_id: int) -> list[torch.Tensor]:
    """`preference.score_pairs` for every run at once: per run, (pairs, 4) summed log-probs and lengths of the
    `first` and `second` response of every pair, in order (batches of similar length, as `train.predict_rows`)."""
    from .train import token_length

    model.eval()
    orders = []
    for data in datasets:
        idx = list(range(len(data)))
        length = token_length(data)
        if length is not None:
            idx.sort(key=length)
        orders.append(idx)
    outs: list[list[torch.Tensor]] = [[] for _ in datasets]
    most = max(len(o) for o in orders)
    for s in range(0, most, batch_size):
        parts = [o[s:s + batch_size] for o in orders]
        batches = [d.collate(p) if p else None for d, p in zip(datasets, parts)]
        present = [b for b in batches if b is not None]
        stacked = _stack_batches([b if b is not None else present[0] for b in batches], pad_id)
        sums, counts = model.response_logps(stacked["input_ids"], stacked["attention_mask"], stacked["response_start"])
        for r, (p, b) in enumerate(zip(parts, batches)):
            if b is None:
                continue
            half = len(p)
            outs[r].append(torch.stack([sums[r, :half], counts[r, :half], sums[r, half:2 * half],
                                        counts[r, half:2 * half]], dim=1))
    results = []
    for order, out in zip(orders, outs):
        rows = torch.cat(out).double()
        results.append(rows[torch.as_tensor(order).argsort()])
    return results
