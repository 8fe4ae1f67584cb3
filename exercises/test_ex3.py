import math

import torch

import losses


def test_one_negative_is_dpo(pick):
    listwise = pick("ex3_listwise", "listwise_hard_negative_loss")
    g = torch.Generator().manual_seed(1)
    pc, rc, pr, rr = (torch.randn(8, generator=g) * 5 for _ in range(4))
    mine, _, _ = listwise(pc, pr[:, None], rc, rr[:, None], torch.ones(8, 1, dtype=torch.bool), 0.3)
    dpo, _, _ = losses.dpo_loss(pc, pr, rc, rr, 0.3)
    assert torch.allclose(mine, dpo, atol=1e-6)


def test_padding_is_invisible_even_when_it_holds_garbage(pick):
    listwise = pick("ex3_listwise", "listwise_hard_negative_loss")
    pc, rc = torch.tensor([-4.0], requires_grad=True), torch.tensor([-5.0])
    pr = torch.tensor([[-6.0, float("nan"), float("inf")]], requires_grad=True)
    rr = torch.tensor([[-5.0, 0.0, 0.0]])
    mask = torch.tensor([[True, False, False]])
    loss, _, rej = listwise(pc, pr, rc, rr, mask, 1.0)
    loss.sum().backward()
    assert abs(loss.item() - math.log1p(math.exp(-2.0))) < 1e-6  # d+ = 1, d_1 = -1
    assert torch.isfinite(pr.grad).all() and pr.grad[0, 1:].abs().sum() == 0
    assert rej[0, 1:].abs().sum() == 0


def test_at_the_reference_the_loss_counts_the_negatives(pick):
    listwise = pick("ex3_listwise", "listwise_hard_negative_loss")
    x = torch.full((2, 4), -3.0)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    loss, _, _ = listwise(x[:, 0], x, x[:, 0], x, mask, 0.1)
    assert torch.allclose(loss, torch.tensor([math.log(4), math.log(2)]))
