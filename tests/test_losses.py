"""Reward-model objectives against values worked out by hand (ln 3 margins give σ = 0.75 / 0.25)."""

import math

import pytest
import torch

from w2s_deception.losses import explicit_conflict, rm_loss, soft_ce

LN3 = math.log(3.0)


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def test_soft_ce_hand_values():
    # m = 0 -> M = 0.5: CE = -(0.7 ln .5 + 0.3 ln .5) = ln 2
    assert soft_ce(t(0.0), t(0.7)).item() == pytest.approx(math.log(2))
    # m = ln 3 -> M = 0.75: CE(0.75, 1) = -ln 0.75 = 0.287682
    assert soft_ce(t(LN3), t(1.0)).item() == pytest.approx(0.2876821, abs=1e-6)


def test_pair_order_swap_leaves_the_loss_unchanged():
    # The authors swap chosen/rejected with p = 0.5 and flip the label; for a pairwise head
    # CE(σ(-m), 1 - t) = CE(σ(m), t), so the swap is an identity and is not needed in the stream.
    m, target = t(-2.0, 0.3, 1.7), t(0.2, 0.5, 0.9)
    assert torch.allclose(soft_ce(-m, 1 - target), soft_ce(m, target))


def test_explicit_term_only_when_student_is_wrong():
    # M = 0.25 < 0.5: 0.5 * -ln(1 - 0.25) = 0.143841; M = 0.75: nothing
    out = explicit_conflict(t(-LN3, LN3), alpha=0.5)
    assert out[0].item() == pytest.approx(0.1438410, abs=1e-6)
    assert out[1].item() == 0.0
    # a margin of exactly 0 (M = 0.5) is correct, so no conflict term
    assert explicit_conflict(t(0.0), alpha=0.5).item() == 0.0


def test_rm_loss_explicit_batch():
    # pair 1: CE(0.75, 1) = 0.287682, no conflict term
    # pair 2: CE(0.25, 0.6) = 0.6 ln 4 + 0.4 (-ln .75) = 0.946849, + 0.143841 -> 1.090690
    loss = rm_loss(t(LN3, -LN3), t(1.0, 0.6), torch.tensor([False, False]), "explicit", alpha=0.5)
    assert loss.item() == pytest.approx((0.2876821 + 1.0906903) / 2, abs=1e-6)


def test_explicit_term_skips_helpful_pairs_and_scales_with_alpha():
    helpful = torch.tensor([True])
    assert rm_loss(t(-LN3), t(1.0), helpful, "explicit", 0.5).item() == pytest.approx(-math.log(0.25))
    a1 = rm_loss(t(-LN3), t(0.0), torch.tensor([False]), "explicit", 1.0).item()
    # CE(0.25, 0) = -ln .75; plus 1.0 * -ln .75
    assert a1 == pytest.approx(2 * 0.2876821, abs=1e-6)


def test_no_conflict_and_implicit_are_plain_soft_ce():
    m, target, helpful = t(LN3, -LN3), t(0.8, 1.0), torch.tensor([False, True])
    expected = soft_ce(m, target).mean()
    assert rm_loss(m, target, helpful, "no_conflict").item() == pytest.approx(expected.item())
    assert rm_loss(m, target, helpful, "implicit").item() == pytest.approx(expected.item())


def test_adaptive_weights_harmless_by_teacher_certainty():
    # both margins 0 -> each CE = ln 2; weights |2*0.9-1| = 0.8 and |2*0.5-1| = 0; helpful keeps 1
    loss = rm_loss(t(0.0, 0.0, 0.0), t(0.9, 0.5, 1.0), torch.tensor([False, False, True]), "adaptive")
    assert loss.item() == pytest.approx((0.8 * math.log(2) + 0 + math.log(2)) / 3)


def test_unknown_objective_is_rejected():
    with pytest.raises(ValueError, match="unknown objective 'both'"):
        rm_loss(t(0.0), t(1.0), torch.tensor([False]), "both")
