"""rm_training/losses.py: each objective's loss against a hand computation, a gradient, and the
Bradley-Terry loss against TRL's RewardTrainer.compute_loss on the same rewards."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from rm_training import losses


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_bradley_terry_plain_is_minus_log_sigmoid_of_the_margin():
    rc, rr = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 1.0, 2.0])
    loss, stats = losses.bradley_terry(rc, rr, torch.ones(3), torch.ones(3))
    want = -(_logsig(1.0) + _logsig(-1.0) + _logsig(0.0)) / 3  # d = 1, -1, 0
    assert float(loss) == pytest.approx(want, rel=1e-6)
    assert float(loss) == pytest.approx((math.log1p(math.exp(-1)) + math.log1p(math.e) + math.log(2)) / 3, rel=1e-6)
    assert stats == pytest.approx({"loss": want, "accuracy": 1 / 3, "margin": 0.0, "mean_reward": 1.0}, rel=1e-6)


def test_bradley_terry_soft_label_tie_and_centering():
    rc, rr = torch.tensor([2.0, 0.5]), torch.tensor([0.0, 0.5])
    p = torch.tensor([0.75, 0.5])  # a soft label, a tie
    loss, _ = losses.bradley_terry(rc, rr, p, torch.tensor([1.0, 0.0]), center_coefficient=0.01)
    bt = -((0.75 * _logsig(2.0) + 0.25 * _logsig(-2.0)) + (0.5 * _logsig(0.0) + 0.5 * _logsig(0.0))) / 2
    center = 0.01 * ((2.0 + 0.0) ** 2 + (0.5 + 0.5) ** 2) / 2
    assert float(loss) == pytest.approx(bt + center, rel=1e-6)


def test_bradley_terry_margin_and_scaled_variants():
    rc, rr, s, p = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]), torch.tensor([2.0, 1.0]), torch.ones(2)
    loss, _ = losses.bradley_terry(rc, rr, p, s, variant="margin", margin_scale=0.5)
    assert float(loss) == pytest.approx(-(_logsig(1.0 - 1.0) + _logsig(3.0 - 0.5)) / 2, rel=1e-6)
    # scaled: strength weights each pair; a tie (strength 0) gets tie_weight
    s = torch.tensor([2.0, 0.0])
    loss, _ = losses.bradley_terry(rc, rr, torch.tensor([1.0, 0.5]), s, variant="scaled", tie_weight=0.5)
    want = (2.0 * -_logsig(1.0) + 0.5 * -(0.5 * _logsig(3.0) + 0.5 * _logsig(-3.0))) / 2.5
    assert float(loss) == pytest.approx(want, rel=1e-6)


def test_bradley_terry_gradient():
    # d/dr_c of -log sigmoid(r_c - r_r) / n = -(1 - sigmoid(d)) / n; d/dr_r is its negative
    rc = torch.tensor([1.0, -0.5], requires_grad=True)
    rr = torch.tensor([0.0, 0.5], requires_grad=True)
    loss, _ = losses.bradley_terry(rc, rr, torch.ones(2), torch.ones(2))
    loss.backward()
    sig = [1 / (1 + math.exp(-d)) for d in (1.0, -1.0)]
    assert rc.grad.tolist() == pytest.approx([-(1 - x) / 2 for x in sig], rel=1e-6)
    assert rr.grad.tolist() == pytest.approx([(1 - x) / 2 for x in sig], rel=1e-6)


def test_bradley_terry_equals_trl_reward_trainer_loss():
    """TRL's RewardTrainer.compute_loss (trl/trainer/reward_trainer.py: -logsigmoid(r_c - r_r [- margin]).mean()
    + c * mean((r_c + r_r)^2)) on the same rewards: called with stand-ins for the model and the trainer."""
    trl = pytest.importorskip("trl.trainer.reward_trainer")
    rc, rr = torch.tensor([1.0, 0.2, -0.3]), torch.tensor([0.5, 0.4, -1.0])
    margin = torch.tensor([0.5, 1.0, 0.0])

    def trl_loss(inputs, coefficient):
        logits = torch.cat([rc, rr])[:, None]
        stub = SimpleNamespace(model=SimpleNamespace(training=False), args=SimpleNamespace(center_rewards_coefficient=coefficient),
                               accelerator=SimpleNamespace(gather=lambda x: x, gather_for_metrics=lambda x: x),
                               _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0)
        return float(trl.RewardTrainer.compute_loss(stub, lambda **kw: SimpleNamespace(logits=logits), inputs))

    mask = {"attention_mask": torch.ones(6, 4)}
    assert float(losses.bradley_terry(rc, rr, torch.ones(3), margin)[0]) == pytest.approx(trl_loss(dict(mask), None), rel=1e-6)
    ours, _ = losses.bradley_terry(rc, rr, torch.ones(3), margin, variant="margin", center_coefficient=0.01)
    assert float(ours) == pytest.approx(trl_loss({**mask, "margin": margin}, 0.01), rel=1e-6)


def test_regression_masked_mse_with_z_scores():
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    y = torch.tensor([[2.0, float("nan")], [1.0, 3.0]])
    loss, stats = losses.regression(pred, y, [1.0, 0.5])
    assert float(loss) == pytest.approx((1 + 1 + 9) / 3)  # the NaN target left out
    assert stats == pytest.approx({"loss": 11 / 3, "mae": (1 + 1 + 3) / 3, "mean_reward": (2.0 + 0.0) / 2})
    stats_ = (torch.tensor([1.0, 1.0]), torch.tensor([2.0, 1.0]))  # z = (y - mean) / std
    loss, _ = losses.regression(pred, y, [1.0, 0.5], stats_)
    assert float(loss) == pytest.approx(((1 - 0.5) ** 2 + (0 - 0) ** 2 + (0 - 2) ** 2) / 3)


def test_principle_binary_cross_entropy():
    z, y = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 0.0, 0.0])
    loss, stats = losses.principle(z, y)
    want = -(_logsig(2.0) + _logsig(1.0) + _logsig(-0.5)) / 3
    assert float(loss) == pytest.approx(want, rel=1e-6)
    assert stats["accuracy"] == pytest.approx(2 / 3) and stats["mean_reward"] == pytest.approx(0.5)


def _log_phi(x: float) -> float:
    return math.log(0.5 * math.erfc(-x / math.sqrt(2)))


def test_mean_variance_thurstonian_loss_and_nll():
    mu = torch.tensor([1.0, 0.0, 0.0, 0.0])  # chosen 1.0, 0.0; rejected 0.0, 0.0
    log_var = torch.tensor([0.0, math.log(3.0), 0.0, 9.0])  # the last is clamped to log_var_max = 6
    p = torch.tensor([1.0, 0.5])
    loss, stats = losses.mean_variance(mu, log_var, p)
    z1 = 1.0 / math.sqrt(1 + 1)
    want = -(_log_phi(z1) + (0.5 * _log_phi(0.0) + 0.5 * _log_phi(0.0))) / 2
    assert float(loss) == pytest.approx(want, rel=1e-6)
    assert stats["accuracy"] == pytest.approx(0.5) and stats["margin"] == pytest.approx(0.5)
    assert stats["mean_sigma"] == pytest.approx((1 + math.sqrt(3) + 1 + math.exp(3)) / 4, rel=1e-6)
    # Gaussian NLL of the ratings from (count, mean, variance): one row of 2 ratings (mean 1, variance 0.5
    # -> unbiased 1), the others without ratings
    rs = torch.tensor([[2.0, 1.0, 0.5], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    with_nll, _ = losses.mean_variance(mu, log_var, p, rating_stats=rs, nll_weight=0.5)
    nll = 0.5 * 2 * 0.0 + 2 * 1.0 / 2 + 2 * (1 - 1) ** 2 / 2
    assert float(with_nll) == pytest.approx(want + 0.5 * nll / 2, rel=1e-6)
