"""Losses of the co-evolving agents, as pure functions on summed sequence log-probs.

Every function takes log-prob tensors that `agent.sequence_logps` already produced (summed over the agent's
action tokens) and returns UNREDUCED per-example losses plus detached implicit rewards for logging. None of
them calls a model, so each can be checked by hand (tests/test_losses.py does).

Tensor letters:  B = pairs (one expert or higher-reward trajectory each),  K = rejected trajectories per pair.

- `nll_loss`: the SFT term on the expert trajectory e*.
- `dpo_loss`: DPO (Rafailov et al. 2023), one chosen against one rejected.
- `hard_negative_loss`: e* against K rejected (its own failure and/or the failure agent's hard negatives),
  the mean of the pairwise DPO terms; the default for the target agent.
- `listwise_hard_negative_loss`: the same K negatives in one softmax (S-DPO style); the ablation.
Then the two objectives of the algorithm, each the weighted sum of those terms, as the paper writes it:
- `failure_loss` (step 3): DPO on (higher-reward failure, lower-reward failure) pairs, which rewards failures that
  come close to success, plus an optional NLL pull on the chosen failure.
- `target_loss` (step 6): dpo * DPO(a) + hn * HN(b) + nll * NLL(e*) + ff * DPO(c), weights in `Coefs`.
These two take log-probs by position in a batch's pool of trajectories and the positions of the pairs
(`TargetPairs`, built by coevo.py's pair section), and return the loss with its metrics.

beta, the DPO temperature, at its extremes:
- beta -> 0: every margin -> 0, the loss -> log 2 and its gradient (about beta/2 per pair) vanishes; in the
  objective DPO solves, beta is the KL coefficient, so a small beta means a weak pull toward the reference.
- large beta: the sigmoid is sharp (the loss nears a hinge on the sign of the log-ratio margin), already
  small log-ratio changes saturate it, so the policy is held close to the reference (strong KL constraint).
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F


def _check(name, tensor, shape):
    # Bad input gets a message naming the argument, not a broadcasting error three lines later.
    # A None in shape matches any size: the first argument fixes B (and K) for the others.
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != len(shape) or any(w is not None and w != g for w, g in zip(shape, tensor.shape)):
        want = tuple("any" if w is None else w for w in shape)
        raise ValueError(f"{name}: expected a tensor of shape {want}, got {tuple(tensor.shape)}")


def _check_beta(beta):
    if not beta > 0:
        raise ValueError(f"beta must be > 0 (the DPO temperature), got {beta}")


def nll_loss(policy_logps, n_tokens):
    """SFT loss on the expert's action tokens: -logps / n_tokens, the per-token mean NLL per sequence.

    policy_logps (B,) summed action-token log-probs of e*;  n_tokens (B,) how many action tokens were summed.
    Returns losses (B,). Per-token mean rather than sum [ours]: in L = lambda_dpo * DPO + lambda_sft * NLL the
    SFT term should not grow with trajectory length, or long expert trajectories would dominate the batch and
    outweigh the DPO term. A sequence with no action token (n_tokens = 0, so logps = 0) gives loss 0, not NaN.
    """
    _check("policy_logps", policy_logps, (None,))
    _check("n_tokens", n_tokens, policy_logps.shape)
    # clamp: 0 tokens would divide 0 by 0; int counts become the log-probs' float dtype.
    return -policy_logps / n_tokens.clamp(min=1).to(policy_logps.dtype)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    """DPO loss (Rafailov et al. 2023, "Direct Preference Optimization", Eq. 7), one pair per row.

    All four inputs (B,): summed log-probs of chosen / rejected under the policy and the frozen reference.
        l = -log sigmoid( beta * [ (logp(e+) - ref(e+)) - (logp(e-) - ref(e-)) ] )
    Returns (losses (B,), chosen_rewards (B,), rejected_rewards (B,)), rewards = beta * (logp - ref), detached.
    Policy equal to reference gives l = log 2 and rewards 0.
    """
    _check("policy_chosen", policy_chosen, (None,))
    for name, t in (("policy_rejected", policy_rejected), ("ref_chosen", ref_chosen), ("ref_rejected", ref_rejected)):
        _check(name, t, policy_chosen.shape)
    _check_beta(beta)
    # The reference is a constant: detach, so no gradient ever reaches it even if it was computed with grad.
    chosen_logratios = policy_chosen - ref_chosen.detach()  # (B,)
    rejected_logratios = policy_rejected - ref_rejected.detach()  # (B,)
    # logsigmoid, not log(sigmoid()): in float32 sigmoid underflows to 0 below a margin of about -88, so the
    # latter gives loss inf and NaN gradients exactly when a pair is most wrong.
    losses = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))  # (B,)
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def _hard_negative_inputs(policy_chosen, policy_rejected, ref_chosen, ref_rejected, mask, beta):
    """Shared checks and log-ratios of the two hard-negative losses; padded negatives become exactly 0."""
    _check("policy_chosen", policy_chosen, (None,))
    _check("ref_chosen", ref_chosen, policy_chosen.shape)
    _check("policy_rejected", policy_rejected, (len(policy_chosen), None))
    _check("ref_rejected", ref_rejected, policy_rejected.shape)
    _check("mask", mask, policy_rejected.shape)
    if mask.dtype != torch.bool:
        raise ValueError(f"mask: expected a bool tensor (True = real negative), got dtype {mask.dtype}")
    _check_beta(beta)
    chosen_logratios = policy_chosen - ref_chosen.detach()  # (B,)
    # torch.where BEFORE any nonlinearity: padded slots may hold garbage (-1e4, inf, NaN), and where's backward
    # sends them exactly 0 gradient, while a mask multiplied in afterwards would give 0 * inf = NaN.
    rejected_logratios = torch.where(mask, policy_rejected - ref_rejected.detach(), 0.0)  # (B, K)
    return chosen_logratios, rejected_logratios


def hard_negative_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, mask, beta):
    """One chosen (the expert e*) against K rejected: the mean of the pairwise DPO terms over valid negatives.

    policy_chosen, ref_chosen (B,); policy_rejected, ref_rejected (B, K); mask (B, K) bool, False = padding.
        l = (1 / n_valid) * sum_{k valid} -log sigmoid( beta * [ (logp(e*) - ref(e*)) - (logp(e_k) - ref(e_k)) ] )
    These are the paper's pairs (e*, target failure) and (e*, hard negative) sharing e*, with DPO
    (Rafailov et al. 2023) on each. Averaging, not summing, keeps a row's weight independent of how many
    negatives it has. A row with no valid negative gives loss 0 and zero gradient.
    Returns (losses (B,), chosen_rewards (B,), rejected_rewards (B, K) with 0 under padding), rewards detached.
    """
    chosen_logratios, rejected_logratios = _hard_negative_inputs(
        policy_chosen, policy_rejected, ref_chosen, ref_rejected, mask, beta)
    pair_losses = -F.logsigmoid(beta * (chosen_logratios[:, None] - rejected_logratios))  # (B, K)
    n_valid = mask.sum(dim=1)  # (B,)
    # Padded pairs are finite (their log-ratio was set to 0) and are dropped here; clamp avoids 0 / 0.
    losses = pair_losses.masked_fill(~mask, 0.0).sum(dim=1) / n_valid.clamp(min=1)  # (B,)
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def listwise_hard_negative_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, mask, beta):
    """One chosen against K rejected in one softmax (S-DPO style, Chen et al. 2024, "On Softmax Direct
    Preference Optimization for Recommendation"); the ablation of `hard_negative_loss`, same arguments.

    With d = logp - ref (a log-ratio) for e* (d+) and each valid negative k (d_k):
        l = -log( exp(beta * d+) / (exp(beta * d+) + sum_{k valid} exp(beta * d_k)) )
    computed as logsumexp - beta * d+. At K = 1 this is exactly DPO: -log sigmoid(beta * (d+ - d_1)).
    The negatives compete in one softmax, so the hardest (largest d_k) takes most of the gradient, where the
    pairwise mean gives each negative its own sigmoid. At policy = reference the loss is log(1 + n_valid).
    A row with no valid negative gives loss 0 and zero gradient.
    Returns (losses (B,), chosen_rewards (B,), rejected_rewards (B, K) with 0 under padding), rewards detached.
    """
    chosen_logratios, rejected_logratios = _hard_negative_inputs(
        policy_chosen, policy_rejected, ref_chosen, ref_rejected, mask, beta)
    # Column 0 is the chosen one, always present, so every row has a finite entry and logsumexp never
    # sees only -inf (which would give NaN); exp(-inf - lse) = 0 gives padded slots zero gradient.
    logits = beta * torch.cat([chosen_logratios[:, None], rejected_logratios], dim=1)  # (B, 1 + K)
    # ones of shape (B, 1), not ones_like(mask[:, :1]): with K = 0 (a batch without negatives) that slice is
    # (B, 0), and the chosen column would be masked away with it
    valid = torch.cat([mask.new_ones(len(mask), 1), mask], dim=1)  # (B, 1 + K)
    logits = logits.masked_fill(~valid, float("-inf"))
    losses = torch.logsumexp(logits, dim=1) - logits[:, 0]  # (B,)
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


# -----------------------------------------------------------------------------------------------------------
# The objectives of steps 3 and 6: weighted sums of the terms above
class Coefs(NamedTuple):
    """Weights of the target's loss terms (step 6); 0 switches a term off."""
    dpo: float  # (a) expert vs the target's own failure
    hn: float  # (b) expert vs the failure agent's hard negatives
    nll: float  # the NLL anchor on the expert trajectories
    ff: float  # (c) the target's better vs worse failure


class TargetPairs(NamedTuple):
    """Positions of one batch's pairs in its pool of trajectories (long tensors; hard_mask bool)."""
    expert: torch.Tensor  # (B,) each group's expert e*
    own: torch.Tensor  # (2, A) kind (a): chosen (an expert, or the agent if it beat the expert), rejected
    hard: torch.Tensor  # (B, K) kind (b): each expert's hard negatives, padded
    hard_mask: torch.Tensor  # (B, K) True = a real hard negative
    ff: torch.Tensor  # (2, C) kind (c): better failure, worse failure
    imitate: torch.Tensor  # (M,) more trajectories for the NLL term beside the experts (RFT: own successes)


def pair_stats(kind: str, chosen_rewards, rejected_rewards) -> dict:
    """The usual DPO metrics of one pair kind: reward accuracy, margin, and the implicit rewards themselves."""
    if chosen_rewards.numel() == 0:
        return {}
    return {f"{kind}_acc": (chosen_rewards > rejected_rewards).float().mean().item(),
            f"{kind}_margin": (chosen_rewards - rejected_rewards).mean().item(),
            f"{kind}_chosen": chosen_rewards.mean().item(), f"{kind}_rejected": rejected_rewards.mean().item()}


def failure_loss(pi, ref, n_tokens, pairs, beta, nll_coef=0.0):
    """Step 3, the failure agent: L = mean DPO(e+, e-) + nll_coef * NLL(e+), over (higher-reward failure e+,
    lower-reward failure e-) pairs. pi, ref, n_tokens (P,): summed action log-probs of the pool's trajectories under
    the policy and the reference, and their action-token counts; pairs (2, N): chosen and rejected positions."""
    c, r = pairs
    l_dpo, chosen_rewards, rejected_rewards = dpo_loss(pi[c], pi[r], ref[c], ref[r], beta)
    l_nll = nll_loss(pi[c], n_tokens[c]).mean()  # the pull that keeps its samples near the chosen near-misses
    loss = l_dpo.mean() + nll_coef * l_nll
    return loss, {"loss": loss.item(), "nll": l_nll.item(), **pair_stats("failure", chosen_rewards, rejected_rewards)}


def target_loss(pi, ref, n_tokens, pairs: TargetPairs, coefs: Coefs, beta, listwise=False):
    """Step 6, the target: L = dpo * DPO(a) + hn * HN(b) + nll * NLL(e*) + ff * DPO(c), each term the mean over the
    batch's pairs of its kind (a kind with no pair here adds 0). HN is `hard_negative_loss` (or, listwise, the
    S-DPO softmax) of e* against its hard negatives; NLL covers pairs.imitate too (RFT). pi, ref, n_tokens (P,) as in
    failure_loss."""
    e, (ac, ar), (cc, cr), hard, mask = pairs.expert, pairs.own, pairs.ff, pairs.hard, pairs.hard_mask
    hn_loss = listwise_hard_negative_loss if listwise else hard_negative_loss
    zero = pi.sum() * 0  # what a kind with no pair in this batch adds: 0, still part of the graph
    l_a, a_chosen, a_rejected = dpo_loss(pi[ac], pi[ar], ref[ac], ref[ar], beta)  # (a) e* vs own failure
    l_b, b_chosen, b_rejected = hn_loss(pi[e], pi[hard], ref[e], ref[hard], mask, beta)  # (b) e* vs hard negatives
    l_c, c_chosen, c_rejected = dpo_loss(pi[cc], pi[cr], ref[cc], ref[cr], beta)  # (c) better vs worse failure
    anchor = torch.cat([e, pairs.imitate])  # the experts, and (RFT) the target's own successes
    l_nll = nll_loss(pi[anchor], n_tokens[anchor])  # the anchor: the expert's likelihood, which DPO alone lets fall
    has_b = mask.any(1)  # rows with at least one hard negative

    def mean(x):
        return x.mean() if x.numel() else zero
    loss = coefs.dpo * mean(l_a) + coefs.hn * mean(l_b[has_b]) + coefs.nll * mean(l_nll) + coefs.ff * mean(l_c)
    b_chosen = b_chosen[has_b].unsqueeze(1).expand_as(b_rejected[has_b])[mask[has_b]]  # e*'s reward, per negative
    terms = {f"{kind}_loss": mean(x).item() for kind, x in (("own", l_a), ("hard", l_b[has_b]), ("ff", l_c))
             if x.numel()}  # each term before its weight
    return loss, {"loss": loss.item(), "nll": mean(l_nll).item(), **terms, **pair_stats("own", a_chosen, a_rejected),
                  **pair_stats("hard", b_chosen, b_rejected[has_b][mask[has_b]]),
                  **pair_stats("ff", c_chosen, c_rejected)}
