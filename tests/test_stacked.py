"""stacked.py: runs trained together in one pass equal the same runs trained alone (within float tolerance), and
no run's labels reach another run."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from w2s_deception.config import get_config
from w2s_deception.preference import PolicyPairs, ResponseScorer, _sft_loss, _SFTBatches, po_loss_fn, score_pairs
from w2s_deception.stacked import StackedGPT2, StackedRun, fit_stacked, score_stacked
from w2s_deception.train import fit

PAD = 0


def tiny_lm(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=23, n_positions=32, n_embd=16, n_layer=2, n_head=2, resid_pdrop=0.0,
                                      embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_pytorch_tanh",
                                      pad_token_id=PAD)).eval()


def pairs(seed: int, n: int = 24) -> PolicyPairs:
    """Random token pairs of varied lengths sharing a prompt, in training order."""
    rng = np.random.default_rng(seed)
    first, second, f_start, s_start = [], [], [], []
    for _ in range(n):
        prompt = rng.integers(1, 23, rng.integers(2, 6)).tolist()
        a, b = (rng.integers(1, 23, rng.integers(1, 7)).tolist() for _ in range(2))
        first.append(prompt + a), second.append(prompt + b)
        f_start.append(len(prompt)), s_start.append(len(prompt))
    gt = torch.tensor(rng.random(n) < 0.7)
    helpful = torch.tensor(rng.random(n) < 0.3)
    return PolicyPairs(first, second, f_start, s_start, gt, helpful, PAD)


CFG = get_config("smoke")


@pytest.mark.parametrize("objective", ["explicit", "implicit"])
def test_stacked_simpo_equals_each_run_alone(objective):
    """Three runs (their own seeds, data and labels) trained together end where each ends trained alone by
    `train.fit`: same losses and scores within float tolerance."""
    base = tiny_lm()
    data = [pairs(s) for s in (1, 2, 3)]
    loss = po_loss_fn(CFG, "simpo", objective)
    alone, alone_losses = [], []
    for seed, d in zip((10, 11, 12), data):
        lm = copy.deepcopy(base)
        alone_losses.append(fit(ResponseScorer(lm), d, loss, lr=3e-3, epochs=2, batch_size=8, seed=seed, micro_batch=3))
        alone.append(lm)
    stacked = StackedGPT2([copy.deepcopy(base) for _ in data])
    losses = fit_stacked(stacked, [StackedRun(d, loss, s) for s, d in zip((10, 11, 12), data)], lr=3e-3, epochs=2,
                         batch_size=8, micro_batch=3, pad_id=PAD)
    np.testing.assert_allclose(np.array(losses), np.array(alone_losses), rtol=1e-4, atol=1e-5)
    scored = score_stacked(stacked, data, batch_size=4, pad_id=PAD)
    for r, (lm, d) in enumerate(zip(alone, data)):
        solo = score_pairs(lm, d, 4)
        np.testing.assert_allclose(scored[r].numpy(), solo.to_numpy(dtype=float), rtol=1e-4, atol=1e-4)
        exported = stacked.export(copy.deepcopy(base), r)
        for (name, a), b in zip(lm.state_dict().items(), exported.state_dict().values()):
            a, b = a.numpy().copy(), b.numpy().copy()
            if name.endswith("attn.c_attn.bias"):
                # the key bias shifts every score of a query alike, which softmax ignores: its gradient is zero up
                # to rounding noise, which Adam normalises into steps of its own; it moves no output
                keys = slice(a.shape[0] // 3, 2 * a.shape[0] // 3)
                np.testing.assert_allclose(a[keys], b[keys], atol=1e-3, err_msg=name)
                a[keys] = b[keys] = 0
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5, err_msg=name)


def test_stacked_sft_equals_each_run_alone():
    """SFT (a mean over response tokens, with warm-up) the same way."""
    base = tiny_lm(1)
    data = [_SFTBatches(pairs(s)) for s in (4, 5)]
    alone_losses = [fit(ResponseScorer(copy.deepcopy(base)), d, _sft_loss, lr=3e-3, epochs=1, batch_size=8, seed=s,
                        micro_batch=3, warmup=0.25) for s, d in zip((0, 1), data)]
    stacked = StackedGPT2([copy.deepcopy(base) for _ in data])
    losses = fit_stacked(stacked, [StackedRun(d, _sft_loss, s) for s, d in zip((0, 1), data)], lr=3e-3, epochs=1,
                         batch_size=8, micro_batch=3, pad_id=PAD, warmup=0.25)
    np.testing.assert_allclose(np.array(losses), np.array(alone_losses), rtol=1e-4, atol=1e-5)


def test_one_runs_labels_never_reach_another():
    """Run 1's labels reversed (the same sequences, so the same padding): run 0 trains to the same bits, run 1 not."""
    base = tiny_lm(2)
    a, b = pairs(7), pairs(8)
    flipped = b.ordered(np.zeros(len(b), dtype=bool))  # every pair of run 1 swapped
    loss = po_loss_fn(CFG, "simpo", "explicit")

    def train(second: PolicyPairs) -> list[torch.Tensor]:
        stacked = StackedGPT2([copy.deepcopy(base) for _ in range(2)])
        fit_stacked(stacked, [StackedRun(a, loss, 0), StackedRun(second, loss, 1)], lr=3e-3, epochs=1, batch_size=8,
                    micro_batch=4, pad_id=PAD)
        return score_stacked(stacked, [a, b], batch_size=4, pad_id=PAD)

    plain, other = train(b), train(flipped)
    assert torch.equal(plain[0], other[0])
    assert not torch.allclose(plain[1], other[1])


def test_models_that_do_not_stack_are_refused():
    other = tiny_lm()
    other.config.n_embd = 8
    with pytest.raises(ValueError, match="different shapes"):
        StackedGPT2([tiny_lm(), other])
    with pytest.raises(ValueError, match="no model"):
        StackedGPT2([])
    with pytest.raises(ValueError, match="same number of examples"):
        fit_stacked(StackedGPT2([tiny_lm(), tiny_lm()]), [StackedRun(pairs(1, 8), _sft_loss, 0),
                                                          StackedRun(pairs(2, 9), _sft_loss, 0)],
                    lr=1e-3, epochs=1, batch_size=4, micro_batch=2, pad_id=PAD)
