"""The modules' dependencies point one way (coevo -> runs, loader -> model; coevo -> envs, losses, plots).

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
ALLOWED = {"model": set(), "envs": set(), "losses": set(), "loader": {"model"}, "plots": set(), "runs": {"model"},
           "coevo": {"envs", "loader", "losses", "model", "plots", "runs"}, "bench": {"coevo", "envs", "loader", "losses", "model", "runs"}}


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
