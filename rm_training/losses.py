"""The reward objectives' losses as plain functions of tensors (RewardTrainer.compute_loss picks one
by the objective's name): each returns the loss and the batch's training statistics (floats named as
TRL logs them: loss, accuracy, margin, mean_reward, and the objective's own)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry(r_chosen: torch.Tensor, r_rejected: torch.Tensor, label: torch.Tensor, strength: torch.Tensor,
                  variant: str = "plain", margin_scale: float = 1.0, tie_weight: float = 1.0,
                  center_coefficient: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Bradley-Terry: -[p log sigmoid(d) + (1 - p) log sigmoid(-d)] with d = r_chosen - r_rejected and
    p = P(chosen better) (1, a soft label, or 0.5 for a tie); with p = 1 that is TRL's
    -log sigmoid(r_c - r_r). variant margin (Llama 2 / TRL): the chosen reward must beat the rejected
    one by margin_scale * strength; scaled (HelpSteer2-Preference): each pair weighted by its
    strength, ties by tie_weight. center_coefficient: TRL's c * mean((r_c + r_r)^2)."""
    d = r_chosen - r_rejected
    p, s = label, strength
    if variant == "margin":
        loss = -(p * F.logsigmoid(d - margin_scale * s) + (1 - p) * F.logsigmoid(-d)).mean()
    elif variant == "scaled":
        w = torch.where(s > 0, s, torch.full_like(s, tie_weight))
        loss = (w * -(p * F.logsigmoid(d) + (1 - p) * F.logsigmoid(-d))).sum() / w.sum()
    else:
        loss = -(p * F.logsigmoid(d) + (1 - p) * F.logsigmoid(-d)).mean()
    if center_coefficient:
        loss = loss + center_coefficient * torch.mean((r_chosen + r_rejected) ** 2)
    with torch.no_grad():
        stats = {"loss": float(loss), "accuracy": float((d > 0).float().mean()), "margin": float(d.mean()),
                 "mean_reward": float(torch.cat([r_chosen, r_rejected]).mean())}
    return loss, stats


def regression(pred: torch.Tensor, targets: torch.Tensor, reward_weights, target_stats=None) -> tuple[torch.Tensor, dict[str, float]]:
    """Masked MSE over the rated attributes (SteerLM / NeMo-Aligner regression RM): a missing label
    (NaN) contributes nothing. target_stats (per-attribute mean, std): the targets are z-scored
    first. Statistics: mae (on the scale trained on) and mean_reward = pred @ reward_weights."""
    y = targets
    if target_stats is not None:  # z-scores per attribute (NaN stays NaN: masked below)
        mean, std = (t.to(y.device, y.dtype) for t in target_stats)
        y = (y - mean) / std
    known = ~torch.isnan(y)
    err = (pred - torch.nan_to_num(y)) ** 2
    loss = (err * known).sum() / known.sum().clamp(min=1)
    with torch.no_grad():
        w = torch.tensor(reward_weights, dtype=pred.dtype, device=pred.device)
        stats = {"loss": float(loss), "mae": float((err.sqrt() * known).sum() / known.sum().clamp(min=1)),
                 "mean_reward": float((pred @ w).mean())}
    return loss, stats


def principle(z: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """RLBFF: binary cross-entropy on the Yes logit z of "does the response satisfy the principle?"."""
    loss = F.binary_cross_entropy_with_logits(z, label)
    with torch.no_grad():
        stats = {"loss": float(loss), "accuracy": float(((z > 0).float() == label).float().mean()), "mean_reward": float(z.mean())}
    return loss, stats


def mean_variance(mu: torch.Tensor, log_var: torch.Tensor, label: torch.Tensor, log_var_min: float = -6.0, log_var_max: float = 6.0,
                  rating_stats: torch.Tensor | None = None, nll_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Thurstonian pairs (Diverging Preferences; Zhang et al. 2024): mu and log_var of the chosen
    rows then the rejected rows; -[p log Phi(z) + (1 - p) log Phi(-z)] with z = (mu_c - mu_r) /
    sqrt(var_c + var_r) and p the share of votes for the chosen side (ties counting half). With
    nll_weight and rating_stats ((count, mean, variance) of each row's ratings), plus a Gaussian NLL
    of the ratings under N(mu, var)."""
    log_var = log_var.clamp(log_var_min, log_var_max)
    n = mu.shape[0] // 2
    var = log_var.exp()
    z = (mu[:n] - mu[n:]) / (var[:n] + var[n:]).sqrt()
    p = label
    loss = -(p * torch.special.log_ndtr(z) + (1 - p) * torch.special.log_ndtr(-z)).mean()
    if nll_weight and rating_stats is not None:
        # Gaussian NLL of each response's ratings under N(mu, var), from their sufficient
        # statistics (count k, mean m, variance v): sum_i (r_i - mu)^2 = k (v + (m - mu)^2).
        # The variance is the annotators' spread: its gradient sees the spread around the
        # ratings' own mean (v, unbiased), not the model's error on the mean (m - mu)^2,
        # which would otherwise inflate every sigma alike and hide which responses divide people.
        k, m, v = rating_stats.to(mu.dtype).unbind(-1)
        v = torch.where(k > 1, v * k / (k - 1).clamp(min=1), v)
        nll = 0.5 * k * log_var + k * v / (2 * var) + k * (m - mu) ** 2 / (2 * var.detach())
        loss = loss + nll_weight * nll.sum() / k.sum().clamp(min=1)
    with torch.no_grad():
        stats = {"loss": float(loss), "accuracy": float((z > 0).float().mean()), "margin": float((mu[:n] - mu[n:]).mean()),
                 "mean_reward": float(mu.mean()), "mean_sigma": float(var.sqrt().mean())}
    return loss, stats
