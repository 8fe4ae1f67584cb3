"""What the losses in losses.py are, checked against arithmetic you can do by hand.

Teaches: DPO is log 2 when the policy equals the reference; each loss matches numbers written out with
math.log / math.exp; autograd matches finite differences (gradcheck, float64); one gradient step on DPO
raises the chosen trajectory relative to the rejected one and never touches the reference; the pairwise
and listwise hard-negative losses are DPO at K = 1; padded negatives change nothing; extreme log-probs
(-1e4, beta 100) stay finite where a naive log(sigmoid()) would not; the SFT term is the per-token mean NLL.

Run:  .venv/bin/python -m pytest -q tests/test_losses.py     (from the repository root; about a second)
"""
import copy
import math

import pytest
import torch

from losses import (Coefs, TargetPairs, dpo_loss, failure_loss, hard_negative_loss, listwise_hard_negative_loss,
                    nll_loss, target_loss)

HARD_NEGATIVE_LOSSES = (hard_negative_loss, listwise_hard_negative_loss)


def softplus(x):
    # -log sigmoid(m) = log(1 + exp(-m)): the DPO term for a margin m, written with math only.
    return math.log(1.0 + math.exp(-x))


def test_dpo_is_log2_with_zero_rewards_when_policy_equals_reference():
    logps = torch.tensor([-3.0, -50.0, -0.5])
    other = torch.tensor([-7.0, -2.0, -1.5])
    losses, chosen_rewards, rejected_rewards = dpo_loss(logps, other, logps, other, beta=0.1)
    # Margin 0 -> -log sigmoid(0) = log 2, whatever the log-probs themselves are.
    assert torch.allclose(losses, torch.full((3,), math.log(2)))
    assert torch.equal(chosen_rewards, torch.zeros(3)) and torch.equal(rejected_rewards, torch.zeros(3))
    # Pairwise hard negatives: still log 2 per row. Listwise: 1 chosen among 1 + n equally likely, log(1 + n).
    rejected = torch.tensor([[-7.0, -9.0], [-2.0, -4.0], [-1.5, 0.0]])
    mask = torch.tensor([[True, True], [True, False], [True, True]])
    pairwise, _, _ = hard_negative_loss(logps, rejected, logps, rejected, mask, beta=0.1)
    listwise, _, _ = listwise_hard_negative_loss(logps, rejected, logps, rejected, mask, beta=0.1)
    assert torch.allclose(pairwise, torch.full((3,), math.log(2)))
    assert torch.allclose(listwise, torch.tensor([math.log(3), math.log(2), math.log(3)]))


def test_dpo_matches_hand_computation():
    beta = 0.5
    policy_chosen, policy_rejected = torch.tensor([-5.0, -10.0]), torch.tensor([-7.0, -8.0])
    ref_chosen, ref_rejected = torch.tensor([-6.0, -10.0]), torch.tensor([-6.0, -10.0])
    losses, chosen_rewards, rejected_rewards = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    # Row 0: log-ratios +1 (chosen) and -1 (rejected): margin 0.5 * (1 - (-1)) = 1.
    # Row 1: log-ratios 0 and +2: margin 0.5 * (0 - 2) = -1, the policy prefers the rejected one: larger loss.
    assert losses.tolist() == pytest.approx([softplus(1.0), softplus(-1.0)])
    assert chosen_rewards.tolist() == pytest.approx([0.5, 0.0])
    assert rejected_rewards.tolist() == pytest.approx([-0.5, 1.0])


def test_hard_negative_losses_match_hand_computation():
    beta = 0.5
    # One expert with log-ratio d+ = 1 against negatives with log-ratios -1 and 2; the third slot is padding.
    policy_chosen, ref_chosen = torch.tensor([-4.0]), torch.tensor([-5.0])
    policy_rejected = torch.tensor([[-9.0, -6.0, 123.0]])
    ref_rejected = torch.tensor([[-8.0, -8.0, 0.0]])
    mask = torch.tensor([[True, True, False]])
    pairwise, chosen_rewards, rejected_rewards = hard_negative_loss(
        policy_chosen, policy_rejected, ref_chosen, ref_rejected, mask, beta)
    # Mean of the two DPO terms: margins 0.5 * (1 - (-1)) = 1 and 0.5 * (1 - 2) = -0.5.
    assert pairwise.item() == pytest.approx((softplus(1.0) + softplus(-0.5)) / 2)
    assert chosen_rewards.tolist() == pytest.approx([0.5])
    assert rejected_rewards[0].tolist() == pytest.approx([-0.5, 1.0, 0.0])  # 0 under padding
    listwise, _, _ = listwise_hard_negative_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, mask, beta)
    # Softmax over beta * d = (0.5, -0.5, 1.0): minus the log of the expert's share.
    share = math.exp(0.5) / (math.exp(0.5) + math.exp(-0.5) + math.exp(1.0))
    assert listwise.item() == pytest.approx(-math.log(share))


def test_nll_is_the_per_token_mean_negative_log_likelihood():
    # Expert 0 has two action tokens with probabilities 0.5 and 0.25; expert 1 has four tokens at 0.5 each;
    # expert 2 has no action token at all (an empty mask), which must give 0 and not 0 / 0 = NaN.
    policy_logps = torch.tensor([math.log(0.5) + math.log(0.25), 4 * math.log(0.5), 0.0])
    n_tokens = torch.tensor([2, 4, 0])
    losses = nll_loss(policy_logps, n_tokens)
    assert losses.tolist() == pytest.approx([-(math.log(0.5) + math.log(0.25)) / 2, math.log(2), 0.0])
    # Length does not weight the term: 4 tokens at p = 0.5 cost the same as 1 token at p = 0.5.
    assert nll_loss(torch.tensor([math.log(0.5)]), torch.tensor([1])).item() == pytest.approx(losses[1].item())


def _hard_negative_batch(dtype=torch.float64, seed=0):
    # B = 3 experts, K = 3 negative slots: a full row, a padded row, and a row with no valid negative at all.
    g = torch.Generator().manual_seed(seed)
    policy_chosen, ref_chosen = -5 * torch.rand(3, generator=g, dtype=dtype), -5 * torch.rand(3, generator=g, dtype=dtype)
    policy_rejected = -5 * torch.rand(3, 3, generator=g, dtype=dtype)
    ref_rejected = -5 * torch.rand(3, 3, generator=g, dtype=dtype)
    mask = torch.tensor([[True, True, True], [True, False, False], [False, False, False]])
    return policy_chosen, policy_rejected, ref_chosen, ref_rejected, mask


def test_gradients_match_finite_differences():
    # gradcheck perturbs each input by eps and compares with autograd; float64 so eps-sized changes register.
    # Only the policy log-probs get requires_grad: the losses detach the reference (next test).
    policy_chosen, policy_rejected, ref_chosen, ref_rejected, mask = _hard_negative_batch()
    policy_chosen.requires_grad_(True)
    policy_rejected.requires_grad_(True)
    n_tokens = torch.tensor([3, 7, 0])
    assert torch.autograd.gradcheck(lambda lp: nll_loss(lp, n_tokens), (policy_chosen,))
    assert torch.autograd.gradcheck(
        lambda pc, pr: dpo_loss(pc, pr, ref_chosen, ref_rejected[:, 0], beta=0.7)[0],
        (policy_chosen, policy_rejected[:, 0].detach().requires_grad_(True)))
    for loss_fn in HARD_NEGATIVE_LOSSES:
        assert torch.autograd.gradcheck(
            lambda pc, pr: loss_fn(pc, pr, ref_chosen, ref_rejected, mask, beta=0.7)[0], (policy_chosen, policy_rejected))


def test_reference_gets_no_gradient():
    # The reference is frozen: even if its log-probs were computed with grad, none may flow back into it.
    policy_chosen, policy_rejected, ref_chosen, ref_rejected, mask = _hard_negative_batch()
    for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected):
        t.requires_grad_(True)
    dpo_loss(policy_chosen, policy_rejected[:, 0], ref_chosen, ref_rejected[:, 0], beta=0.1)[0].sum().backward()
    for loss_fn in HARD_NEGATIVE_LOSSES:
        loss_fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, mask, beta=0.1)[0].sum().backward()
    assert ref_chosen.grad is None and ref_rejected.grad is None
    assert policy_chosen.grad is not None and policy_rejected.grad is not None


def test_one_dpo_step_on_leaf_log_probs_raises_chosen_over_rejected():
    policy_chosen = torch.tensor([-12.0, -3.0], requires_grad=True)
    policy_rejected = torch.tensor([-10.0, -4.0], requires_grad=True)
    ref_chosen, ref_rejected = policy_chosen.detach().clone(), policy_rejected.detach().clone()
    dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1)[0].mean().backward()
    # The gradient pushes the chosen log-prob up and the rejected one down, by equal and opposite amounts.
    assert (policy_chosen.grad < 0).all() and (policy_rejected.grad > 0).all()
    assert torch.allclose(policy_chosen.grad, -policy_rejected.grad)
    with torch.no_grad():
        margin_before = policy_chosen - policy_rejected
        new_margin = (policy_chosen - 1.0 * policy_chosen.grad) - (policy_rejected - 1.0 * policy_rejected.grad)
    assert (new_margin > margin_before).all()


def test_one_dpo_step_on_a_tiny_linear_policy_raises_chosen_over_rejected():
    # A toy "language model": a linear map from a context vector at each step to next-token logits.
    # A trajectory is T tokens; its log-prob is the SUM of its token log-probs, as agent.sequence_logps gives.
    torch.manual_seed(0)
    B, T, D, V = 4, 5, 8, 11
    policy = torch.nn.Linear(D, V)
    reference = copy.deepcopy(policy).requires_grad_(False)
    contexts = torch.randn(B, T, D)  # (B, T, D) one context per step, shared by both trajectories of a pair
    chosen_ids, rejected_ids = torch.randint(V, (B, T)), torch.randint(V, (B, T))  # (B, T)

    def logps(model, ids):
        token_logps = model(contexts).log_softmax(-1).gather(-1, ids[..., None]).squeeze(-1)  # (B, T)
        return token_logps.sum(-1)  # (B,)

    with torch.no_grad():
        ref_chosen, ref_rejected = logps(reference, chosen_ids), logps(reference, rejected_ids)
    reference_before = copy.deepcopy(reference.state_dict())
    margin_before = (logps(policy, chosen_ids) - logps(policy, rejected_ids)).detach()
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    loss = dpo_loss(logps(policy, chosen_ids), logps(policy, rejected_ids), ref_chosen, ref_rejected, beta=0.1)[0]
    assert torch.allclose(loss, torch.full((B,), math.log(2)))  # policy starts equal to the reference
    loss.mean().backward()
    optimizer.step()
    margin_after = (logps(policy, chosen_ids) - logps(policy, rejected_ids)).detach()
    assert (margin_after > margin_before).all()
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in reference_before.items())


@pytest.mark.parametrize("loss_fn", HARD_NEGATIVE_LOSSES)
def test_hard_negative_losses_equal_dpo_at_one_negative(loss_fn):
    policy_chosen, policy_rejected, ref_chosen, ref_rejected, _ = _hard_negative_batch()
    policy_rejected = policy_rejected[:, :1].clone()  # (B, 1)
    ref_rejected = ref_rejected[:, :1].clone()
    inputs = [t.clone().requires_grad_(True) for t in (policy_chosen, policy_rejected)]
    expected, chosen_rewards, rejected_rewards = dpo_loss(
        inputs[0], inputs[1][:, 0], ref_chosen, ref_rejected[:, 0], beta=0.3)
    got, got_chosen, got_rejected = loss_fn(
        inputs[0], inputs[1], ref_chosen, ref_rejected, torch.ones(3, 1, dtype=torch.bool), beta=0.3)
    assert torch.allclose(got, expected)
    assert torch.allclose(got_chosen, chosen_rewards) and torch.allclose(got_rejected[:, 0], rejected_rewards)
    grads_expected = torch.autograd.grad(expected.sum(), inputs)
    grads_got = torch.autograd.grad(got.sum(), inputs)
    assert all(torch.allclose(a, b) for a, b in zip(grads_got, grads_expected))


@pytest.mark.parametrize("loss_fn", HARD_NEGATIVE_LOSSES)
@pytest.mark.parametrize("garbage", [-1e4, 1e4, 0.0, float("inf"), float("nan")])
def test_padded_negatives_change_nothing(loss_fn, garbage):
    # Two real negatives per expert, then three padded slots holding garbage; compare with the unpadded batch.
    policy_chosen, policy_rejected, ref_chosen, ref_rejected, _ = _hard_negative_batch()
    policy_rejected, ref_rejected = policy_rejected[:, :2], ref_rejected[:, :2]  # (B, 2)
    padding = torch.full((3, 3), garbage, dtype=torch.float64)
    padded_policy = torch.cat([policy_rejected, padding], dim=1).requires_grad_(True)  # (B, 5)
    padded_ref = torch.cat([ref_rejected, -padding], dim=1)
    padded_mask = torch.tensor([[True, True, False, False, False]] * 3)
    policy_rejected.requires_grad_(True)
    plain, _, plain_rewards = loss_fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected,
                                      torch.ones(3, 2, dtype=torch.bool), beta=0.5)
    padded, _, padded_rewards = loss_fn(policy_chosen, padded_policy, ref_chosen, padded_ref, padded_mask, beta=0.5)
    assert torch.allclose(padded, plain) and torch.isfinite(padded).all()
    assert torch.allclose(padded_rewards[:, :2], plain_rewards) and (padded_rewards[:, 2:] == 0).all()
    (plain_grad,) = torch.autograd.grad(plain.sum(), policy_rejected)
    (padded_grad,) = torch.autograd.grad(padded.sum(), padded_policy)
    assert torch.allclose(padded_grad[:, :2], plain_grad)
    assert (padded_grad[:, 2:] == 0).all()  # exactly zero, not NaN


@pytest.mark.parametrize("loss_fn", HARD_NEGATIVE_LOSSES)
def test_row_without_valid_negative_gives_zero_loss_and_zero_gradient(loss_fn):
    policy_chosen, policy_rejected, ref_chosen, ref_rejected, mask = _hard_negative_batch()
    policy_chosen.requires_grad_(True)
    losses, _, _ = loss_fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, mask, beta=0.5)
    (grad,) = torch.autograd.grad(losses.sum(), policy_chosen)
    assert losses[2].item() == 0.0 and grad[2].item() == 0.0  # row 2's mask is all False
    assert (losses[:2] > 0).all()


def test_extreme_inputs_stay_finite():
    # float32, log-probs of -1e4 against 0, beta 100: margins of +-1e6.
    beta = 100.0
    big, zero = torch.tensor([-1e4, 0.0]), torch.tensor([0.0, -1e4])
    margin = beta * ((big - zero) - (zero - big))
    # The trap: sigmoid underflows to exactly 0, so a naive log(sigmoid()) gives an infinite loss.
    assert torch.isinf(torch.log(torch.sigmoid(margin))).any()
    policy_chosen = big.clone().requires_grad_(True)
    policy_rejected = zero.clone().requires_grad_(True)
    losses, chosen_rewards, rejected_rewards = dpo_loss(policy_chosen, policy_rejected, zero, big, beta)
    losses.sum().backward()
    for t in (losses, chosen_rewards, rejected_rewards, policy_chosen.grad, policy_rejected.grad):
        assert torch.isfinite(t).all()
    assert losses[0].item() == pytest.approx(2e6)  # the wrong pair costs its margin, linearly; the right one ~0
    for loss_fn in HARD_NEGATIVE_LOSSES:
        policy_chosen = big.clone().requires_grad_(True)
        policy_rejected = torch.stack([zero, big, zero], dim=1).requires_grad_(True)  # (2, 3)
        mask = torch.tensor([[True, True, False], [True, False, False]])
        losses, _, rewards = loss_fn(policy_chosen, policy_rejected, zero, policy_rejected.detach().flip(1), mask, beta)
        losses.sum().backward()
        for t in (losses, rewards, policy_chosen.grad, policy_rejected.grad):
            assert torch.isfinite(t).all()
    n_tokens = torch.tensor([1, 0])
    assert torch.isfinite(nll_loss(torch.tensor([-1e4, 0.0]), n_tokens)).all()


def test_bad_input_gets_a_clear_error():
    b = torch.zeros(3)
    with pytest.raises(ValueError, match="policy_rejected"):
        dpo_loss(b, torch.zeros(2), b, b, beta=0.1)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(b, b, b, b, beta=0.0)
    with pytest.raises(ValueError, match="mask"):
        hard_negative_loss(b, torch.zeros(3, 2), b, torch.zeros(3, 2), torch.ones(3, 2), beta=0.1)
    with pytest.raises(ValueError, match="policy_rejected"):
        listwise_hard_negative_loss(b, b, b, b, torch.ones(3, dtype=torch.bool), beta=0.1)
    with pytest.raises(TypeError, match="policy_logps"):
        nll_loss([-1.0, -2.0], torch.tensor([1, 2]))


@pytest.mark.parametrize("loss_fn", HARD_NEGATIVE_LOSSES)
def test_a_batch_without_any_negative_gives_zero_loss_not_an_error(loss_fn):
    # ETO's and the nll control's groups carry no hard negatives at all, so K = 0 for the whole batch: both
    # losses must return 0 per row (listwise once masked its chosen column away too and raised IndexError).
    chosen = torch.tensor([-3.0, -5.0], requires_grad=True)
    empty, mask = torch.zeros(2, 0), torch.zeros(2, 0, dtype=torch.bool)
    losses, _, rejected_rewards = loss_fn(chosen, empty, chosen.detach(), empty, mask, beta=0.1)
    assert losses.tolist() == [0.0, 0.0] and rejected_rewards.shape == (2, 0)
    losses.sum().backward()
    assert chosen.grad.tolist() == [0.0, 0.0]


def test_failure_sft_coef_adds_a_pull_on_the_chosen_failure_only():
    # at policy == reference DPO pushes chosen up and rejected down by the same amount (beta / 2 each);
    # the NLL anchor adds coef / n_tokens of extra pull on the chosen failure and leaves the rejected one alone
    def grads(coef):
        policy = torch.tensor([-4.0, -6.0], requires_grad=True)
        loss, stats = failure_loss(policy, policy.detach().clone(), torch.tensor([2.0, 3.0]), torch.tensor([[0], [1]]),
                                   beta=0.1, nll_coef=coef)
        loss.backward()
        return policy.grad, stats
    (g0, s0), (g1, s1) = grads(0.0), grads(1.0)
    assert torch.allclose(g0, torch.tensor([-0.05, 0.05]))
    assert torch.allclose(g1 - g0, torch.tensor([-0.5, 0.0]))      # d(-logp / 2) / dlogp for the chosen only
    assert s1["nll"] == pytest.approx(2.0) and s1["loss"] == pytest.approx(s0["loss"] + 2.0)


def test_target_loss_weighs_each_kind_and_its_nll_also_covers_rfts_successes():
    # pool: e* (0), an own failure (1), a hard negative (2), an own success the NLL also fits under RFT (3)
    pi = torch.tensor([-2.0, -4.0, -6.0, -8.0], requires_grad=True)
    n_tokens = torch.tensor([2.0, 2.0, 2.0, 4.0])
    pairs = TargetPairs(expert=torch.tensor([0]), own=torch.tensor([[0], [1]]), hard=torch.tensor([[2]]),
                        hard_mask=torch.tensor([[True]]), ff=torch.zeros(2, 0, dtype=torch.long),
                        imitate=torch.tensor([3]))
    loss, stats = target_loss(pi, pi.detach(), n_tokens, pairs, Coefs(dpo=0.0, hn=0.0, nll=1.0, ff=0.0), beta=0.1)
    assert loss.item() == pytest.approx((2.0 / 2 + 8.0 / 4) / 2)           # the mean of two per-token NLLs
    loss.backward()
    assert pi.grad.tolist() == pytest.approx([-0.25, 0.0, 0.0, -0.125])   # pairs weigh 0: only e* and the success
    # at policy = reference every DPO term is log 2, whatever the kind: the weights alone set the loss
    loss, stats = target_loss(pi, pi.detach(), n_tokens, pairs, Coefs(dpo=1.0, hn=2.0, nll=0.0, ff=5.0), beta=0.1)
    assert loss.item() == pytest.approx(3 * math.log(2)) and "ff_acc" not in stats and stats["hard_acc"] == 0.0
