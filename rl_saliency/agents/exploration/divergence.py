"""Divergences among K diagonal Gaussians, ``mean, var: (K, ..., d) -> (...)``: the Jensen-Renyi divergence in
closed form (MAX) and a Monte-Carlo Shannon Jensen-Shannon estimate to check it."""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def jensen_renyi_divergence(mean: torch.Tensor, var: torch.Tensor, per_dimension: bool = False) -> torch.Tensor:
    """Jensen-Renyi (order 2) divergence among K equally weighted diagonal Gaussians (MAX's utility).

    ``H2(mixture) - mean_i H2(P_i)`` with ``H2(mixture) = -log[(1/K^2) sum_ij N(mu_i; mu_j, S_i + S_j)]`` and
    ``H2(N(mu, S)) = 1/2 log|S| + d/2 log(4 pi)``. Computed in float64 whatever the input's dtype (the result
    comes back in it): the constant and log-determinant terms are folded into each pairwise term per dimension
    before summing, so identical members give exactly 0 and 512 dimensions lose no precision, and the sum
    over the K^2 pairs is a log-sum-exp, so it stays finite however far apart the members are (it tends to
    ``log K`` as equal-variance members separate, like the Shannon JSD). With unequal variances the order-2
    version can dip below 0 (by up to about ``d/2`` times the spread of the members' log-variances), which
    is why the explorer shrinks variances towards a common bound first, as MAX does.

    ``per_dimension=True`` gives the mean over dimensions of the divergence among the members' 1-D
    marginals instead of the joint one (not MAX's; an option): it saturates later in many dimensions but
    ignores how the members' disagreements combine across dimensions.
    """
    _check_members(mean, var)
    dtype = mean.dtype
    mean, var = mean.double(), var.double()
    k = mean.shape[0]
    log_var = var.log()
    ref = log_var.mean(0)  # mean_k log var_k, per dimension
    # log N(mu_i; mu_j, S_i+S_j) + mean_k H2(P_k), per pair; exactly 0 for identical members. The term is
    # symmetric in (i, j), so only the K (K - 1) / 2 pairs i < j are computed (each counted twice: + log 2), and
    # the K pairs i = i reduce to -1/2 (log var_i - ref)
    i, j = torch.triu_indices(k, k, offset=1, device=mean.device)
    pair_var = var[i] + var[j]
    off = -0.5 * ((mean[i] - mean[j]).pow(2) / pair_var + torch.log(pair_var / 2.0) - ref)
    same = -0.5 * (log_var - ref)
    if per_dimension:
        terms = torch.cat([same, off + math.log(2.0)])
        return (2.0 * math.log(k) - torch.logsumexp(terms, dim=0)).mean(-1).to(dtype)
    terms = torch.cat([same.sum(-1), off.sum(-1) + math.log(2.0)])
    return (2.0 * math.log(k) - torch.logsumexp(terms, dim=0)).to(dtype)


def jensen_shannon_mc(mean: torch.Tensor, var: torch.Tensor, n_samples: int = 256,
                      generator: torch.Generator | None = None, per_dimension: bool = False) -> torch.Tensor:
    """Monte-Carlo estimate of the Shannon Jensen-Shannon divergence among K diagonal Gaussians:
    ``mean_i E_{x ~ P_i}[log P_i(x) - log mixture(x)]`` (for checking the closed form; ``per_dimension``
    as there)."""
    _check_members(mean, var)
    k = mean.shape[0]
    std = var.sqrt()
    noise = torch.randn((n_samples, *mean.shape), generator=generator, dtype=mean.dtype, device=mean.device)
    x = mean + std * noise  # (S, K_i, ..., d): samples of each member
    # log P_j(x) for every sample of every member i: (S, K_i, K_j, ...)
    log_p = -0.5 * ((x[:, :, None] - mean[None, None]).pow(2) / var[None, None] + var.log()[None, None] + LOG_2PI)
    if not per_dimension:
        log_p = log_p.sum(-1)
    log_own = torch.diagonal(log_p, dim1=1, dim2=2).movedim(-1, 1)  # (S, K, ...)
    log_mix = torch.logsumexp(log_p, dim=2) - math.log(k)
    out = (log_own - log_mix).mean(dim=(0, 1))
    return out.mean(-1) if per_dimension else out


def _check_members(mean: torch.Tensor, var: torch.Tensor) -> None:
    if mean.shape != var.shape or mean.dim() < 2:
        raise ValueError(f"expected mean and var of one shape (K, ..., d), got {tuple(mean.shape)} and "
                         f"{tuple(var.shape)}")
    if mean.shape[0] < 2:
        raise ValueError("a divergence among members needs at least 2 members")


DIVERGENCES = {"jrd": jensen_renyi_divergence, "mc": jensen_shannon_mc}
