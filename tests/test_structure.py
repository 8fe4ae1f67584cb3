"""The modules' dependencies point one way: coevo -> config, runs, losses, loader, agent, model, envs; runs -> config,
loader; loader -> agent -> model; config -> envs. model.py, envs.py, losses.py and plots.py import no project module.

What this teaches: a flat project stays readable only if each file can be read knowing the files below it and
none above it. An import cycle (model.py importing loader.py, which imports model.py) works by accident of
import order and makes `model.py` impossible to read or reuse alone. The check reads the import statements
(also those inside functions) with `ast`, so a late `import loader` hidden in a function counts too.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {p.stem for p in ROOT.glob("*.py")}
# what each module may import from the project; everything else it imports must come from outside
ALLOWED = {"model": set(), "envs": set(), "losses": set(), "plots": {"runs"}, "agent": {"model"},
           "loader": {"agent", "model"}, "config": {"envs"}, "runs": {"config", "loader"},
           "coevo": {"agent", "config", "envs", "loader", "losses", "model", "plots", "runs"},
           "diagnostics": {"agent", "coevo", "config", "envs", "loader", "runs"},
           "pretrain": {"agent", "envs", "loader", "model"},
           "bench": {"agent", "coevo", "config", "diagnostics", "envs", "loader", "losses", "model", "runs"}}


def project_imports(path: Path) -> set:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PROJECT


def test_every_module_is_listed():
    assert set(ALLOWED) >= PROJECT, f"add {sorted(PROJECT - set(ALLOWED))} to ALLOWED with what it may import"


def test_dependencies_point_one_way():
    for name, allowed in ALLOWED.items():
        if (ROOT / f"{name}.py").exists():
            extra = project_imports(ROOT / f"{name}.py") - allowed
            assert not extra, f"{name}.py imports {sorted(extra)}; allowed: {sorted(allowed) or 'no project module'}"


def test_the_check_sees_a_late_import(tmp_path):
    # the mistake this file guards against: an import inside a function
    f = tmp_path / "m.py"
    f.write_text("def load():\n    import loader\n    return loader\n")
    assert project_imports(f) == {"loader"}


# The core: what a reader opens to learn the method. Its lines fit a screen and its functions fit one.
CORE = ("coevo", "config", "runs", "losses", "model", "agent", "loader", "envs", "plots", "pretrain", "diagnostics")


def test_core_lines_fit_120_characters():
    long = [f"{name}.py:{i}" for name in CORE for i, line in enumerate((ROOT / f"{name}.py").read_text().splitlines(), 1)
            if len(line) > 120]
    assert not long, f"lines over 120 characters: {long}"


def test_no_core_function_is_longer_than_80_lines_but_the_rollout_engine():
    long = [f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)" for name in CORE
            for node in ast.walk(ast.parse((ROOT / f"{name}.py").read_text()))
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 80 and node.name != "rollout"]
    assert not long, long


def test_run_method_reads_as_the_algorithm_box():
    # the loop is the paper's box: short, a numbered comment per step, no lambdas (plumbing lives in runs.RunDir.cached)
    tree = ast.parse((ROOT / "coevo.py").read_text())
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "run_method")
    source = ast.get_source_segment((ROOT / "coevo.py").read_text(), fn)
    assert fn.end_lineno - fn.lineno + 1 <= 45
    assert not any(isinstance(n, ast.Lambda) for n in ast.walk(fn))
    assert all(f"# {step}. " in source for step in range(1, 8))


def algorithm_box(text: str) -> list:
    """The lines of the first block that starts with the box's step 0, without their common indentation."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("0. SFT"))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip() or lines[i].strip() == "```"), len(lines))
    indent = len(lines[start]) - len(lines[start].lstrip())
    return [line[indent:] for line in lines[start:end]]


def test_the_algorithm_box_lives_once_and_the_docs_quote_it():
    # coevo.py's docstring holds the box with its equations and functions; the README quotes it verbatim, and no
    # other page keeps a copy of its own that could drift
    import coevo
    box = algorithm_box(coevo.__doc__)
    assert len(box) >= 8 and "update_target" in "\n".join(box)
    assert algorithm_box((ROOT / "README.md").read_text()) == box
    for page in sorted((ROOT / "docs").glob("*.md")):
        if any(line.strip().startswith("0. SFT") for line in page.read_text().splitlines()):
            assert algorithm_box(page.read_text()) == box, f"{page.name} keeps its own copy of the box"
