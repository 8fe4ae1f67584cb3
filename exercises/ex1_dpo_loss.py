"""Exercise 1 (warm-up): the DPO loss. Test: python -m pytest -q exercises/test_ex1.py

Write the loss of Rafailov et al. 2023 for a batch of (chosen, rejected) pairs. Inputs (B,) are summed log-probs of
each trajectory's action tokens under the policy and the frozen reference:
    l = -log sigmoid( beta * [ (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected) ] )
Return (losses (B,), chosen_rewards (B,), rejected_rewards (B,)), where a reward is beta * (policy - ref), detached.
Traps the test checks: no gradient may reach the reference; a very wrong pair (margin -1000) must give a finite
loss and finite gradients (think about log(sigmoid(x)) in float32).
Compare with losses.dpo_loss only after the test passes.
"""


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    raise NotImplementedError
