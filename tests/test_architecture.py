"""docs/architecture.md, checked: every claim on the first page that a machine can check (which
modules exist, what imports what, what loads torch, the size of one search step)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGE = (REPO / "docs" / "architecture.md").read_text()
PACKAGE = REPO / "itnas"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py"))

# The method: what a reader of the paper's equations reads, which never imports acceleration.
METHOD = [PACKAGE / "ops.py", PACKAGE / "run.py", *sorted((PACKAGE / "search").glob("*.py")),
          *sorted((PACKAGE / "train").glob("*.py"))]
# One search step, as the page counts it (search/ without the derivation, plus ops.py).
SEARCH_STEP = [PACKAGE / "ops.py"] + [PACKAGE / "search" / f"{n}.py"
                                      for n in ("policies", "supernet", "architect", "batches", "loop")]
# Imports a function may make (the page's "Rules the layout keeps"): optional heavy libraries,
# acceleration when it is on (runtime.py only), and the commands' lazy loading.
LAZY_LIBRARIES = ("mlflow", "matplotlib", "scipy", "torchvision", "PIL", "jsonschema", "torch._inductor")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, inside a function) for every import of `path`."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((alias.name, nested) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                out.extend((f"{child.module}.{alias.name}", nested) for alias in child.names)
            visit(child, inner)

    visit(tree, False)
    return out


def test_every_module_of_the_package_is_on_the_page_and_every_module_it_names_exists():
    tree = PAGE.split("## The packages", 1)[1].split("## What flows", 1)[0]
    for path in MODULES:
        assert path.name in tree, f"{path.relative_to(REPO)} is not on docs/architecture.md"
    named = set(re.findall(r"([a-z_0-9]+\.py)", tree))
    on_disk = {p.name for p in PACKAGE.rglob("*.py")}
    assert named <= on_disk, sorted(named - on_disk)


def test_every_config_file_the_page_lists_exists():
    for pattern in ("config/config.yaml", "config/paper/published.yaml", "config/paper/claims.yaml",
                    "config/plan/noise.yaml", "config/plan/costs.yaml"):
        assert pattern in PAGE and (REPO / pattern).is_file(), pattern
    for overlay in ("smoke", "validate", "gpu-rehearsal", "decide"):
        assert (REPO / "config" / f"{overlay}.yaml").is_file(), overlay
    assert sorted(p.name for p in (REPO / "config" / "recipes").glob("*.yaml")) == [
        "search.yaml", "train_cifar.yaml", "train_imagenet.yaml"]


@pytest.mark.parametrize("path", METHOD, ids=lambda p: str(p.relative_to(REPO)))
def test_the_method_never_imports_acceleration(path):
    assert not [m for m, _ in _imports(path) if m.startswith("itnas.accel")]


def test_the_runtime_imports_acceleration_only_inside_a_function():
    accel = [nested for m, nested in _imports(PACKAGE / "runtime.py") if m.startswith("itnas.accel")]
    assert accel and all(accel)  # it does reach acceleration, and only lazily


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_imports_inside_functions_are_only_the_pages_exceptions(path):
    lazy = [m for m, nested in _imports(path) if nested]
    in_cli = path.parent.name == "cli"
    for module in lazy:
        allowed = (module.startswith(LAZY_LIBRARIES)
                   or (in_cli and module.startswith("itnas."))  # commands load their implementation lazily
                   or (path.name == "runtime.py" and module.startswith("itnas.accel"))
                   or (path.parent.name == "cli" and module == "torch"))  # gpu-check, without torch at start
        assert allowed, f"{path.relative_to(REPO)} imports {module} inside a function"


def test_the_torch_free_modules_the_page_names_load_no_torch():
    names = re.search(r"Torch-free, so that.*?:(.*?)\(matplotlib", PAGE, re.S).group(1)
    files = re.findall(r"`([a-z_/]+\.py)`", names)
    assert "layout.py" in files and "power.py" in files
    modules = ["itnas." + f.removesuffix(".py").replace("/", ".") for f in files]
    modules += ["itnas.report." + p.stem for p in (PACKAGE / "report").glob("*.py") if p.stem != "__init__"]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(sorted(k for k in sys.modules if k == 'torch' or k.startswith('torch.')))")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert child.returncode == 0, child.stderr[-1000:]
    assert child.stdout.strip() == "[]", child.stdout[:300]


def test_one_search_step_is_about_as_long_as_the_page_says():
    said = int(re.search(r"ONE SEARCH STEP, the method \(about ([\d,]+) lines with ops.py\)", PAGE)
               .group(1).replace(",", ""))
    lines = sum(len(p.read_text().splitlines()) for p in SEARCH_STEP)
    assert abs(lines - said) <= 0.15 * said, f"one search step is {lines} lines; the page says about {said}"


def test_the_workflow_calls_only_the_itnas_command():
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        for shell in re.findall(r"shell:\n((?:\s+\".*\"\n)+)", text):
            command = "".join(re.findall(r"\"(.*)\"", shell))
            assert re.search(r"(^|\s)itnas\s", command), f"{path.name}: {command[:120]}"


def test_the_paths_and_cell_names_of_the_workflow_are_formatted_in_the_layout_module_only():
    rules = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert "from itnas.layout import" in rules
    # No other module spells a run folder's name: `seed{...}` is layout.py's.
    for path in MODULES:
        if path.name != "layout.py":
            assert not re.search(r"f\"[^\"]*/seed\{", path.read_text()), path.relative_to(REPO)
