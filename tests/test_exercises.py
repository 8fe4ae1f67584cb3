"""What this teaches: an exercise a student has not written yet fails, loudly and with a pointer to the file to
write, instead of skipping (a skipped test reads as "fine"); the reference solutions pass the same tests.

Run: python -m pytest -q tests/test_exercises.py
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_on(*args):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_an_unwritten_exercise_fails_and_names_the_file_to_write():
    done = pytest_on("exercises/test_ex1.py")
    assert done.returncode != 0 and "skipped" not in done.stdout.splitlines()[-1]
    assert "exercises/ex1_dpo_loss.py: dpo_loss is not written yet" in done.stdout


def test_the_reference_solutions_pass():
    done = pytest_on("exercises/test_ex1.py", "--solutions")
    assert done.returncode == 0, done.stdout[-2000:]
