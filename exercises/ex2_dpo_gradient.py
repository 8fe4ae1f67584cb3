"""Exercise 2: derive the DPO gradient by hand. Test: python -m pytest -q exercises/test_ex2.py

With m = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected) and l = -log sigmoid(beta * m), write
dl/d policy_chosen and dl/d policy_rejected in closed form (no autograd), elementwise for tensors (B,).
Return (grad_chosen, grad_rejected). The test compares them with autograd through losses.dpo_loss.
Then answer for yourself: which pairs get the largest gradient, the ones the policy already ranks right or wrong?
What happens to the gradient as beta grows, at a fixed margin? (A pair DPO already separates teaches little.)
Careful: m is DPO's implicit-reward margin, not the reward gap between the two trajectories. At the start of an
update the policy is the reference, so m = 0 for every pair, whatever the rewards, and every pair gets the same
weight beta * sigmoid(0) = beta / 2. The weights differ only once the policy moves: large for a pair it still ranks
wrongly (m < 0), small for one it separates. What makes a near-success failure a hard negative is not its small
reward gap (the loss never sees rewards): it is close to the expert in action space, sharing much of its trajectory,
so its log-ratio moves with the expert's and the margin can only come from the few actions where they differ.
"""


def dpo_grads(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    raise NotImplementedError
