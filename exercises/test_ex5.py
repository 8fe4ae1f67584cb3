def traj(n_actions, reward):
    messages = ["obs0"]
    for i in range(n_actions):
        messages += [f"act{i}", f"obs{i + 1}"]
    return {"messages": messages, "reward": reward}


def test_ties_are_dropped_and_the_better_side_is_chosen(pick):
    build = pick("ex5_eto_pairs", "build_eto_pairs")
    expert = traj(3, 0.9)
    tie, worse, better = traj(4, 0.9), traj(2, 0.2), traj(3, 1.0)
    pairs = build(expert, [tie, worse, better], 5)
    assert len(pairs) == 2
    assert pairs[0][0] is expert and pairs[0][1]["reward"] == 0.2
    assert pairs[1][0] is better and pairs[1][1]["reward"] == 0.9  # flipped: the agent beat the expert


def test_a_long_failure_is_truncated_and_the_input_is_untouched(pick):
    build = pick("ex5_eto_pairs", "build_eto_pairs")
    expert, long_failure = traj(3, 1.0), traj(20, 0.0)
    (chosen, rejected), = build(expert, [long_failure], 2)
    assert len(rejected["messages"]) == 2 * (3 + 2) + 1  # 5 actions and the observations before them
    assert rejected["messages"][-1] == "obs5"
    assert len(long_failure["messages"]) == 41 and chosen is expert
