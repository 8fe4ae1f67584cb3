"""The README's map from each step of the algorithm to the function that implements it must name real functions.

Teaches: documentation that points into code rots silently when a function is renamed; this reads every
`file.py:function` the README names and imports it.

Run:  .venv/bin/python -m pytest -q tests/test_docs.py
"""
import importlib
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_function_the_readme_names_exists():
    text = open(os.path.join(ROOT, "README.md")).read()
    names = set(re.findall(r"`(\w+)\.py:(\w+)`", text))
    assert len(names) >= 15, names                     # the step map is there
    for module, name in sorted(names):
        assert callable(getattr(importlib.import_module(module), name, None)), f"{module}.py has no {name}"
