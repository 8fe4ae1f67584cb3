import envs


def test_every_episode_is_a_near_success_failure(pick):
    near_miss = pick("ex7_near_miss", "near_miss_actions")
    tasks = envs.make_tasks("shop", "train", 20, seed=3) + envs.make_tasks("shop", "test_unseen", 20, seed=3)
    for task in tasks:
        result = envs.replay(task, near_miss(task))
        assert 0.6 <= result["reward"] < 1.0, (task["id"], result["reward"], result["messages"][1::2])
