"""Exercise 5: ETO's preference pairs. Test: python -m pytest -q exercises/test_ex5.py

`expert` and each of `trajs` are trajectory dicts: {"messages": [obs, action, obs, action, ...], "reward": float, ...}
(the target's own rollouts on the expert's task). Return a list of (chosen, rejected) pairs following ETO's rules:
- a rollout with exactly the expert's reward gives no pair (nothing to prefer);
- the higher-reward side is chosen (if the agent beat the expert, the pair flips);
- the rejected trajectory keeps at most (expert's number of actions + truncate_turns) actions, and the
  observations before them: messages[:2 * n + 1]. Do not modify the input dicts.
"""


def build_eto_pairs(expert, trajs, truncate_turns):
    raise NotImplementedError
