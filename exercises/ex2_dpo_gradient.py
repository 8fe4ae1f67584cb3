"""Exercise 2: derive the DPO gradient by hand. Test: python -m pytest -q exercises/test_ex2.py

With m = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected) and l = -log sigmoid(beta * m), write
dl/d policy_chosen and dl/d policy_rejected in closed form (no autograd), elementwise for tensors (B,).
Return (grad_chosen, grad_rejected). The test compares them with autograd through losses.dpo_loss.
Then answer for yourself: which pairs get the largest gradient, the ones the policy already ranks right or wrong?
What happens to the gradient as beta grows, at a fixed margin? (This is why a pair DPO already separates teaches
little, and why hard negatives, whose margin is small, are where the gradient is.)
"""


def dpo_grads(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    raise NotImplementedError
