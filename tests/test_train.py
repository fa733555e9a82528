"""The training loop's micro-batches: how batches are cut, what each part weighs, and that a
micro-batched step is the whole batch's step."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from w2s_deception.models import RewardModel
from w2s_deception.preference import PolicyPairs, ResponseScorer, _sft_loss, _SFTBatches
from w2s_deception.train import (
    PairExamples,
    fit,
    loss_units,
    micro_batches,
    predict_rows,
    token_length,
    train_reward_model,
)


def token_pairs(lengths_c: list[int], lengths_r: list[int]) -> PairExamples:
    n = len(lengths_c)
    return PairExamples(torch.ones(n), torch.zeros(n, dtype=torch.bool),
                        chosen_ids=[[1] * k for k in lengths_c], rejected_ids=[[2] * k for k in lengths_r], pad_id=0)


def test_micro_batches_by_hand() -> None:
    ex = token_pairs([3, 9, 2, 5, 4], [6, 1, 2, 7, 1])  # padded lengths (longer side): 6, 9, 2, 7, 4
    assert micro_batches(ex, [0, 1, 2, 3, 4], 2) == [[1, 3], [0, 4], [2]]  # longest first
    assert micro_batches(ex, [2, 0], 8) == [[0, 2]]
    assert micro_batches(ex, [4, 2, 0], None) == [[4, 2, 0]]  # None: the batch as it is
    features = PairExamples(torch.ones(3), torch.zeros(3, dtype=torch.bool), features=torch.zeros(3, 2, 4))
    assert micro_batches(features, [2, 0, 1], 1) == [[2, 0, 1]]  # no padding to save: one part


def test_token_length_only_for_padded_tokens() -> None:
    ex = token_pairs([3, 9], [6, 1])
    assert token_length(ex)(0) == 6 and token_length(ex)(1) == 9
    assert token_length(PairExamples(torch.ones(2), torch.zeros(2, dtype=torch.bool),
                                     features=torch.zeros(2, 2, 4))) is None
    assert token_length(token_pairs([], [])) is None  # nothing to sort
    assert token_length(torch.utils.data.TensorDataset(torch.zeros(3))) is None  # no lengths at all


def test_sft_units_count_scored_response_tokens_by_hand() -> None:
    # scored positions of a row of length L with response start s: max(s, 1) .. L-1
    pairs = PolicyPairs(first=[[5, 6, 7, 8], [5, 6], [5, 6, 7], [5]], second=[[1]] * 4,
                        first_start=[2, 0, 3, 0], second_start=[0] * 4,
                        gt_first=torch.ones(4, dtype=torch.bool), helpful=torch.zeros(4, dtype=torch.bool), pad_id=0)
    sft = _SFTBatches(pairs)
    assert [sft.units([i]) for i in range(4)] == [2, 1, 0, 0]  # 4-2; 2-1 (position 0 never); start at the end; L=1
    assert loss_units(sft, [0, 1, 2, 3]) == 3
    assert loss_units(token_pairs([3, 4], [1, 1]), [0, 1]) == 2  # pairs count as one unit each


def test_predict_rows_returns_the_examples_order() -> None:
    ex = token_pairs([3, 9, 2, 5, 4], [6, 1, 2, 7, 1])
    seen = []

    def fn(batch):  # one row per pair: its two lengths, so the output order can be checked
        seen.append(batch["input_ids"].shape[1])
        return batch["attention_mask"].sum(1).view(2, -1).T

    rows = predict_rows(ex, fn, batch_size=2)
    assert rows.tolist() == [[3, 6], [9, 1], [2, 2], [5, 7], [4, 1]]
    assert seen == [4, 7, 9]  # batches of similar length {2, 4}, {6, 7}, {9}, each padded to its longest


def tiny_lm() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=32, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))


def random_pairs(n: int, seed: int = 1) -> tuple[list[list[int]], list[list[int]]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 24, (2, n), generator=g).tolist()
    return ([torch.randint(3, 32, (k,), generator=g).tolist() for k in row] for row in lengths)


@pytest.mark.parametrize("micro", [1, 3, 8])
def test_micro_batched_reward_model_trains_like_whole_batches(micro: int) -> None:
    chosen, rejected = random_pairs(20)
    ex = PairExamples(torch.rand(20, generator=torch.Generator().manual_seed(2)), torch.zeros(20, dtype=torch.bool),
                      chosen_ids=chosen, rejected_ids=rejected, pad_id=0)
    base = RewardModel(16, tiny_lm())
    runs = {}
    for name, mb in (("whole", None), ("micro", micro)):
        model = copy.deepcopy(base)
        losses = train_reward_model(model, ex, objective="no_conflict", alpha=0.0, lr=1e-2, epochs=2, batch_size=8,
                                    seed=0, micro_batch=mb)
        runs[name] = (losses, model.state_dict())
    moved = max((runs["whole"][1][k] - v).abs().max().item() for k, v in base.state_dict().items())
    assert moved > 0.05  # training moved the weights, so agreeing is not vacuous
    torch.testing.assert_close(torch.tensor(runs["micro"][0]), torch.tensor(runs["whole"][0]), atol=1e-5, rtol=1e-4)
    for key, value in runs["whole"][1].items():
        if key.endswith(("ln_f.bias", "attn.c_attn.bias")):
            continue  # no margin depends on them; Adam scales their rounding noise to ±lr (test_distributed)
        torch.testing.assert_close(runs["micro"][1][key], value, atol=5e-5, rtol=1e-4, msg=key)


def sft_gradient(pairs: PolicyPairs, micro: int | None, units: bool) -> torch.Tensor:
    """The gradient of `fit`'s single SFT step, read just before the optimiser applies it."""
    lm = tiny_lm()
    data = _SFTBatches(pairs)
    if not units:  # weigh micro-batches by rows instead of tokens, as before units existed
        data.units = None
    grads = []
    opt_step = torch.optim.AdamW.step

    def record(self, *args, **kwargs):
        grads.append(torch.cat([p.grad.flatten() for p in lm.parameters() if p.grad is not None]).clone())
        return opt_step(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.AdamW, "step", record)
        fit(ResponseScorer(lm), data, _sft_loss, lr=1e-3, epochs=1, batch_size=len(pairs), seed=0, micro_batch=micro)
    return grads[0]


def test_micro_batched_sft_is_the_token_mean_of_the_whole_batch() -> None:
    first, second = random_pairs(12, seed=3)
    pairs = PolicyPairs(first, second, [max(len(s) - 3, 0) for s in first], [0] * 12,  # short prompts, mixed replies
                        torch.ones(12, dtype=torch.bool), torch.zeros(12, dtype=torch.bool), pad_id=0)
    whole = sft_gradient(pairs, None, units=True)
    torch.testing.assert_close(sft_gradient(pairs, 4, units=True), whole, atol=1e-6, rtol=1e-5)
    # weighing the parts by rows would give another gradient: the check above can fail
    assert (sft_gradient(pairs, 4, units=False) - whole).abs().max() > 1e-3
