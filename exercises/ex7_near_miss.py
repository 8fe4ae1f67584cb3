"""Exercise 7 (the idea of the paper, by hand): a "failure agent" that only produces near-success failures.
Test: python -m pytest -q exercises/test_ex7.py

For a ToyShop task (envs.make_tasks("shop", "train", n, seed)), return a list of actions (strings) that ends the
episode with a reward in [0.6, 1): close to success, but not success. These are the hard negatives of the paper.
envs.oracle(task) and envs.replay(task, actions) both return a trajectory dict, not a list: "messages" alternates
observation and action (messages[0] is the instruction, then action, observation, ...), with "reward", "end" and
"n_invalid" beside it. So the oracle's actions, a successful list to start from, are
envs.oracle(task)["messages"][1::2], and envs.replay(task, your_actions)["reward"] scores yours (the task's slots
hold its world, but the agent sees only the messages). What small change to the oracle's actions keeps most of
WebShop's partial reward (type, attributes, options, price) but loses one part? envs.scripted_failures(task), a
dict {failure name: actions}, is the reference: read it after your test passes.
The test runs your function on 40 tasks, seen and unseen.
"""


def near_miss_actions(task):
    raise NotImplementedError
