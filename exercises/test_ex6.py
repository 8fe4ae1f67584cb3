import math
import random


def test_known_values(pick):
    mean_ci = pick("ex6_intervals", "mean_ci")
    m, h = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5 and abs(h - 3.182 * (5 / 3) ** 0.5 / 2) < 1e-3
    m, h = mean_ci([7.0])
    assert m == 7.0 and math.isnan(h)


def test_pairing_sees_what_overlapping_intervals_hide(pick):
    mean_ci = pick("ex6_intervals", "mean_ci")
    rng = random.Random(0)
    difficulty = [rng.random() for _ in range(200)]  # tasks differ far more than the methods do
    a = [d + rng.gauss(0, 0.02) for d in difficulty]
    b = [d + 0.03 + rng.gauss(0, 0.02) for d in difficulty]  # b is better by 0.03 on every task
    (ma, ha), (mb, hb) = mean_ci(a), mean_ci(b)
    assert mb - hb < ma + ha  # the two intervals overlap: "no difference" if read that way
    md, hd = mean_ci([y - x for x, y in zip(a, b)])
    assert md - hd > 0  # the paired difference excludes 0: b is measurably better
