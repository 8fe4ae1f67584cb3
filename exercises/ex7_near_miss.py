"""Exercise 7 (the idea of the paper, by hand): a "failure agent" that only produces near-success failures.
Test: python -m pytest -q exercises/test_ex7.py

For a ToyShop task (envs.make_tasks("shop", "train", n, seed)), return a list of actions that ends the episode
with a reward in [0.6, 1): close to success, but not success. These are the hard negatives of the paper.
Read the task's world with envs.replay(task, []) (the first observation) and play it with envs.replay(task,
actions); envs.oracle(task) shows a successful action list to start from. What small change to the oracle's
actions keeps most of WebShop's partial reward (type, attributes, options, price) but loses one part?
The test runs your function on 40 tasks, seen and unseen.
"""


def near_miss_actions(task):
    raise NotImplementedError
