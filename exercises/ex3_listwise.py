"""Exercise 3: from pairwise to listwise hard negatives. Test: python -m pytest -q exercises/test_ex3.py

The target sees one expert trajectory e* and K rejected ones (its own failure and the failure agent's hard
negatives). losses.hard_negative_loss averages K pairwise DPO terms. Write the listwise alternative (S-DPO):
with d = policy - ref for e* (d+, shape (B,)) and for each negative (d_k, shape (B, K)),
    l = -log( exp(beta * d+) / (exp(beta * d+) + sum over valid k of exp(beta * d_k)) )
`mask` (B, K) bool marks real negatives (False = padding, whose values may be garbage such as inf or NaN).
Return (losses (B,), chosen_rewards (B,), rejected_rewards (B, K) with 0 under padding), rewards = beta * d, detached.
Checks: K = 1 gives exactly DPO; padding changes nothing, even when it holds inf/NaN; at policy = reference the
loss is log(1 + number of valid negatives).
"""


def listwise_hard_negative_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, mask, beta):
    raise NotImplementedError
