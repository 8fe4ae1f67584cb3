import torch

import losses


def autograd_grads(pc, pr, rc, rr, beta):
    pc, pr = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    loss, _, _ = losses.dpo_loss(pc, pr, rc, rr, beta)
    return torch.autograd.grad(loss.sum(), (pc, pr))


def test_closed_form_matches_autograd(pick):
    dpo_grads = pick("ex2_dpo_gradient", "dpo_grads")
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(64, generator=g) * 20 for _ in range(4))
    for beta in (0.05, 0.1, 1.0):
        mine = dpo_grads(pc, pr, rc, rr, beta)
        ref = autograd_grads(pc, pr, rc, rr, beta)
        for a, b in zip(mine, ref):
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


def test_wrongly_ranked_pairs_get_the_largest_gradient(pick):
    dpo_grads = pick("ex2_dpo_gradient", "dpo_grads")
    zero = torch.zeros(3)
    gc, _ = dpo_grads(torch.tensor([-20.0, 0.0, 20.0]), zero, zero, zero, 0.1)  # margins -20, 0, +20
    assert gc[0].abs() > gc[1].abs() > gc[2].abs()


def test_at_the_reference_every_pair_gets_the_same_weight(pick):
    dpo_grads = pick("ex2_dpo_gradient", "dpo_grads")
    # the first step of an update: policy = reference, so m = 0 for every pair, whatever the trajectories' rewards
    # (a near miss at 0.9 or a failure at 0): each pair is pushed with the same weight beta * sigmoid(0) = beta / 2
    chosen, rejected = torch.tensor([-3.0, -40.0, -7.5]), torch.tensor([-3.5, -2.0, -90.0])
    gc, gr = dpo_grads(chosen, rejected, chosen, rejected, 0.1)
    assert torch.allclose(gc, torch.full((3,), -0.05)) and torch.allclose(gr, torch.full((3,), 0.05))
