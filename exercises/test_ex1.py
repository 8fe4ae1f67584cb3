import math

import torch


def test_at_the_reference_the_loss_is_log_2(pick):
    dpo_loss = pick("ex1_dpo_loss", "dpo_loss")
    x = torch.tensor([-3.0, -10.0])
    loss, rc, rr = dpo_loss(x, x - 1, x, x - 1, 0.1)
    assert torch.allclose(loss, torch.full((2,), math.log(2)))
    assert torch.equal(rc, torch.zeros(2)) and torch.equal(rr, torch.zeros(2))


def test_value_and_rewards_on_a_worked_example(pick):
    dpo_loss = pick("ex1_dpo_loss", "dpo_loss")
    # chosen gained 2 nats over the reference, rejected lost 3: margin 5, beta 0.5 -> -log sigmoid(2.5)
    loss, rc, rr = dpo_loss(torch.tensor([-8.0]), torch.tensor([-13.0]), torch.tensor([-10.0]), torch.tensor([-10.0]), 0.5)
    assert abs(loss.item() - math.log1p(math.exp(-2.5))) < 1e-6
    assert (rc.item(), rr.item()) == (1.0, -1.5)


def test_gradient_raises_chosen_lowers_rejected_and_skips_the_reference(pick):
    dpo_loss = pick("ex1_dpo_loss", "dpo_loss")
    pc, pr = torch.tensor([-5.0], requires_grad=True), torch.tensor([-5.0], requires_grad=True)
    rc, rr = torch.tensor([-5.0], requires_grad=True), torch.tensor([-5.0], requires_grad=True)
    loss, _, _ = dpo_loss(pc, pr, rc, rr, 0.1)
    loss.sum().backward()
    assert pc.grad.item() < 0 < pr.grad.item()  # descending the loss raises chosen, lowers rejected
    assert rc.grad is None or rc.grad.abs().sum() == 0  # the reference is a constant


def test_a_very_wrong_pair_stays_finite(pick):
    dpo_loss = pick("ex1_dpo_loss", "dpo_loss")
    pc = torch.tensor([-1000.0], requires_grad=True)
    loss, _, _ = dpo_loss(pc, torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]), 1.0)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(pc.grad).all()
    assert abs(loss.item() - 1000.0) < 1e-3


def test_the_rewards_are_detached(pick):
    dpo_loss = pick("ex1_dpo_loss", "dpo_loss")
    # the rewards are for logging and reading margins, even when the policy's log-probs require grad: only the loss
    # may carry a graph (a reward that kept one would keep the batch's activations alive, and could be trained on)
    pc, pr = torch.tensor([-4.0, -6.0], requires_grad=True), torch.tensor([-5.0, -5.0], requires_grad=True)
    ref = torch.tensor([-5.0, -5.0])
    loss, rc, rr = dpo_loss(pc, pr, ref, ref, 0.1)
    assert loss.requires_grad
    for reward in (rc, rr):
        assert reward.grad_fn is None and not reward.requires_grad
    assert torch.allclose(rc, torch.tensor([0.1, -0.1])) and torch.allclose(rr, torch.zeros(2))
