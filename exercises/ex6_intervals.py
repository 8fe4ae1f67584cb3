"""Exercise 6: is a difference real? Test: python -m pytest -q exercises/test_ex6.py

Return (mean, half_width) of the 95% Student-t confidence interval of the mean of xs (a list of floats):
    half_width = t_{0.975, n-1} * sd / sqrt(n),  sd the sample standard deviation (divide by n - 1).
One value has no spread: return (that value, nan). You may use runs.t95(df) for the t quantile.
The test then uses your function to show why the project compares methods by PAIRED per-task differences:
two methods whose intervals overlap can still differ measurably on the same tasks.
"""


def mean_ci(xs):
    raise NotImplementedError
