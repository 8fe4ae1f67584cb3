"""Exercise 4: log pi(e | u), the quantity every loss here compares. Test: python -m pytest -q exercises/test_ex4.py

Given a model (model(ids) -> logits (B, T, V)), right-padded token ids (B, T) and a mask (B, T) that is 1 on the
agent's action tokens (and 0 on the instruction, observations and padding), return
    (logps (B,), n_tokens (B,)):  the SUM over masked tokens of log p(token | the tokens before it), and their count.
Traps the test checks: token t is predicted by the logits at position t - 1 (so the very first token is never
scored); observation and padding tokens never count; the sum is over log-softmax, not raw logits.
The project's version is agent.sequence_logps (it also avoids computing the head on unmasked positions).
"""


def sequence_logps(model, ids, mask):
    raise NotImplementedError
