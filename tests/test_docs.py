"""The README's and the docs' maps from each step of the algorithm to the function that implements it must name real functions.

Teaches: documentation that points into code rots silently when a function is renamed; this reads every
`file.py:function` the README names and imports it.

Run:  .venv/bin/python -m pytest -q tests/test_docs.py
"""
import importlib
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def names_in(path):
    return set(re.findall(r"`(\w+)\.py:(\w+)`", open(os.path.join(ROOT, path)).read()))


def test_every_function_the_readme_names_exists():
    names = names_in("README.md")
    assert len(names) >= 15, names                     # the step map is there
    for module, name in sorted(names):
        assert callable(getattr(importlib.import_module(module), name, None)), f"{module}.py has no {name}"


def test_every_function_the_docs_name_exists():
    # docs/log.md is exempt: a dated notebook names the code as it was at each entry's revision
    docs = [os.path.join("docs", f) for f in sorted(os.listdir(os.path.join(ROOT, "docs")))
            if f.endswith(".md") and f != "log.md"]
    names = {(path, m, n) for path in docs for m, n in names_in(path)}
    assert len({(m, n) for _, m, n in names}) >= 20, names  # docs/method.md's equation-to-code map is there
    for path, module, name in sorted(names):
        assert getattr(importlib.import_module(module), name, None) is not None, f"{path}: {module}.py has no {name}"
