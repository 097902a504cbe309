"""Imports point down: every import in primus_bridge/ and recipes/ (also those inside functions) goes to a lower layer
or stays in its own group.

LAYERS lists the layers from the bottom up; each layer holds groups of module prefixes (the longest prefix
that matches a module places it). A module may import its own group and any lower layer; groups of one
layer sit beside each other and import none of each other. Commands (the `python -m` entry points) sit on
top, wherever their file lives.
"""

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("primus_bridge", "recipes")

LAYERS = [
    # Facts every layer reads: GPU types, model shapes, LoRA targets, FLOPs, files and logs.
    [["primus_bridge.utils", "primus_bridge.logs", "primus_bridge.hardware", "primus_bridge.models",
      "primus_bridge.doctor.pins"]],
    # Recipes are data: model shapes and tuning tables.
    [["recipes"]],
    # The validated config (it reads recipes through primus_bridge.config.recipe).
    [["primus_bridge.config"]],
    # Data preparation, and beside it the memory planner (which never imports the benchmark harness).
    [["primus_bridge.data"], ["primus_bridge.planner"]],
    # A run's checkpoints on disk: their layout, markers and integrity.
    [["primus_bridge.checkpoint"]],
    # What a run needs around training: lock, signals, secrets, outputs, resume checks, the result and its report.
    [["primus_bridge.run"]],
    [["primus_bridge.engine"]],
    # Tools on top of the engines, beside each other: the benchmark harness and chat with a trained model.
    [["primus_bridge.bench"], ["primus_bridge.chat"]],
    # Commands.
    [["primus_bridge.__main__", "primus_bridge.cli", "primus_bridge.train", "primus_bridge.demo",
      "primus_bridge.convert", "primus_bridge.doctor", "primus_bridge.launch", "primus_bridge.run.preflight",
      "primus_bridge.planner.cli", "primus_bridge.data.report_cli",
      "primus_bridge.bench.cli", "primus_bridge.chat.cli"]],
]

RECIPE_LOADER = "primus_bridge.config.recipe"
"""The one module of primus_bridge that imports the recipes package."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


MODULES = _modules()


def _imported(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Modules of ours that an import statement names (a `from X import name` names X.name when that is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] in PACKAGES]
    if node.level:
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    if source.split(".")[0] not in PACKAGES:
        return []
    return [f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source for alias in node.names]


@functools.cache
def imports() -> tuple[tuple[str, str, str], ...]:
    """(importer, imported, file:line) for every import of our modules, at any depth in the file."""
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                found += [(module, target, where) for target in _imported(module, path, node)]
    return tuple(found)


def place(module: str) -> tuple[int, int] | None:
    """(layer, group) of the longest prefix matching `module`; the package root (its version) sits at the bottom."""
    if module == "primus_bridge":
        return 0, 0
    best, best_length = None, -1
    for layer, groups in enumerate(LAYERS):
        for group, prefixes in enumerate(groups):
            for prefix in prefixes:
                if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                    best, best_length = (layer, group), len(prefix)
    return best


def _describe(where: tuple[int, int]) -> str:
    layer, group = where
    return f"layer {layer} ({', '.join(LAYERS[layer][group])})"


def upward_imports(found) -> list[str]:
    problems = []
    for importer, imported, where in found:
        source, target = place(importer), place(imported)
        if source is None or target is None or source == target or target[0] < source[0]:
            continue
        direction = "beside" if target[0] == source[0] else "up"
        problems.append(f"{where}: {importer} imports {imported}, which is {direction} from {_describe(source)} "
                        f"to {_describe(target)}")
    return problems


def test_every_module_has_a_layer():
    unplaced = [f"{path.relative_to(ROOT)}: {module}" for module, path in MODULES.items() if place(module) is None]
    assert not unplaced, "modules outside LAYERS in tests/test_import_direction.py (add them to a layer):\n" + \
        "\n".join(unplaced)


def test_imports_point_down():
    problems = upward_imports(imports())
    assert not problems, "imports that point up or sideways:\n" + "\n".join(problems)


def test_only_the_recipe_loader_imports_recipes():
    readers = sorted({where for importer, imported, where in imports()
                      if importer.startswith("primus_bridge") and imported.split(".")[0] == "recipes"
                      and importer != RECIPE_LOADER})
    assert not readers, f"import recipes through {RECIPE_LOADER}, not here:\n" + "\n".join(readers)


@pytest.mark.parametrize(("importer", "imported", "upward"), [
    ("primus_bridge.planner.speed", "primus_bridge.bench.peak", True),
    ("primus_bridge.data.resolve", "primus_bridge.planner.disk", True),
    ("primus_bridge.run.report", "primus_bridge.engine.base", True),
    ("recipes._base", "primus_bridge.config", True),
    ("primus_bridge.engine.hf.model", "primus_bridge.data.resolve", False),
    ("primus_bridge.planner.cli", "primus_bridge.cli.errors", False),
])
def test_the_check_catches_an_upward_import(importer, imported, upward):
    assert bool(upward_imports([(importer, imported, "x.py:1")])) == upward
