import torch

import agent
import model as M


def tiny_model():
    torch.manual_seed(0)
    return M.Transformer(M.ModelConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       num_key_value_heads=1, intermediate_size=32, max_position_embeddings=32)).eval()


def test_matches_a_token_by_token_count(pick):
    sequence_logps = pick("ex4_action_logps", "sequence_logps")
    model = tiny_model()
    ids = torch.tensor([[1, 5, 6, 7, 8, 2], [1, 9, 3, 0, 0, 0]])  # row 1 is padded with 0
    mask = torch.tensor([[0, 0, 1, 1, 0, 1], [0, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        logps, n = sequence_logps(model, ids, mask)
        logp = model(ids).log_softmax(-1)
    expected = [sum(logp[b, t - 1, ids[b, t]].item() for t in range(1, 6) if mask[b, t]) for b in range(2)]
    assert torch.allclose(logps, torch.tensor(expected), atol=1e-5)
    assert n.tolist() == [3, 2]


def test_padding_and_observations_do_not_count(pick):
    sequence_logps = pick("ex4_action_logps", "sequence_logps")
    model = tiny_model()
    ids = torch.tensor([[1, 5, 6, 7]])
    mask = torch.tensor([[0, 0, 1, 0]])
    with torch.no_grad():
        a, _ = sequence_logps(model, ids, mask)
        b, _ = sequence_logps(model, torch.tensor([[1, 5, 6, 7, 3, 3]]), torch.tensor([[0, 0, 1, 0, 0, 0]]))
        c, _ = sequence_logps(model, torch.tensor([[1, 5, 6, 11]]), mask)  # another token after the action
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a, c, atol=1e-6)


def test_it_is_the_project_function(pick):
    # your version and agent.sequence_logps agree on a real rendered transcript
    sequence_logps = pick("ex4_action_logps", "sequence_logps")
    model = tiny_model()
    ids, mask = agent.collate([([1, 4, 5, 6, 7, 8, 9], [0, 0, 1, 1, 0, 1, 1]), ([1, 2, 3], [0, 1, 1])], pad_id=0)
    with torch.no_grad():
        assert torch.allclose(sequence_logps(model, ids, mask)[0], agent.sequence_logps(model, ids, mask)[0], atol=1e-5)
