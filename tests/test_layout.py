"""The dependency rules of the layout (README, "Architecture"), checked on the imports of app/ and models/.

Every import counts, also those under TYPE_CHECKING and inside functions: each is a dependency someone
has to understand. The rules:
  - no import cycle between modules;
  - app/media/ and app/dialogue/ import nothing from app/store/ or app/api/, not even through other modules;
  - app/errors.py imports nothing of the app (its errors are plain; app/api/ gives them HTTP statuses);
  - only app/api/ imports fastapi or starlette, and only app/main.py (the entry) imports app/api/: the layers
    below it never call up;
  - models/ imports nothing from app/.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "models")
HTTP_FRAMEWORKS = ("fastapi", "starlette")
PURE = ("app.media", "app.dialogue")  # ... of app.store and app.api
PURE_FORBIDDEN = ("app.store", "app.api")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, module: str, modules: set[str]) -> set[str]:
    """Every dotted name the module at `path` imports: for `from pkg import name`, pkg.name when that is one of
    `modules` (a submodule), else pkg."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                         for alias in node.names)
    return names


def project_imports() -> dict[str, set[str]]:
    """module -> every name it imports (modules of app/ and models/ and third-party names alike)."""
    files = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    return {module: imported_names(path, module, set(files)) for module, path in files.items()}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def internal_edges(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    """module -> the project modules it imports. Package __init__ modules are left out of cycles: importing
    app.store.base runs app/store/__init__.py, but that is no dependency on the package's other modules."""
    modules = set(imports)
    packages = {m for m in modules if any(other.startswith(m + ".") for other in modules)}
    return {module: {name for name in names if name in modules and name not in packages and name != module}
            for module, names in imports.items() if module not in packages}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(edges.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    """The modules `start` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in edges.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def violations(imports: dict[str, set[str]]) -> list[str]:
    """Every broken rule, one line each ("importer -> imported: why")."""
    edges = internal_edges(imports)
    found = [f"import cycle: {' -> '.join(component)}" for component in cycles(edges)]
    project = set(imports)
    for module in sorted(m for m in edges if any(within(m, pure) for pure in PURE)):
        for name in sorted(reachable(edges, module)):
            if any(within(name, forbidden) for forbidden in PURE_FORBIDDEN):
                found.append(f"{module} -> {name}: media and dialogue do not depend on the store or the API")
    for module, names in sorted(imports.items()):
        for name in sorted(names):
            if module == "app.errors" and name in project:
                found.append(f"{module} -> {name}: domain errors import nothing of app/ or models/")
            if any(within(name, http) for http in HTTP_FRAMEWORKS) and not within(module, "app.api"):
                found.append(f"{module} -> {name}: only app/api/ uses the HTTP framework")
            if within(name, "app.api") and not within(module, "app.api") and module != "app.main":
                found.append(f"{module} -> {name}: only the entry, app/main.py, imports app/api/")
            if within(module, "models") and within(name, "app"):
                found.append(f"{module} -> {name}: models/ do not depend on app/")
    return found


def test_the_tree_keeps_the_dependency_rules():
    imports = project_imports()
    assert {"app.main", "app.api.app", "app.errors", "app.store.base", "models.registry"} <= set(imports)
    assert violations(imports) == []


def test_each_rule_catches_an_import_that_breaks_it():
    broken = project_imports()
    broken["app.config"] = broken["app.config"] | {"app.wiring"}  # wiring imports config: a cycle
    broken["app.media.image"] = broken["app.media.image"] | {"app.store.base"}
    broken["app.observability.tracing"] = broken["app.observability.tracing"] | {"app.api.sse"}  # dialogue uses it
    broken["app.dialogue.policy"] = broken["app.dialogue.policy"] | {"app.api.errors"}
    broken["app.errors"] = broken["app.errors"] | {"app.config"}
    broken["app.pipeline"] = broken["app.pipeline"] | {"fastapi"}
    broken["app.wiring"] = broken["app.wiring"] | {"app.api.deps"}
    broken["app.observability.logs"] = broken["app.observability.logs"] | {"starlette.types"}
    broken["models.decoder"] = broken["models.decoder"] | {"app.config"}
    found = violations(broken)
    assert any(line.startswith("import cycle:") and "app.config" in line and "app.wiring" in line for line in found)
    for culprit in ("app.media.image -> app.store.base", "app.dialogue.policy -> app.api.errors",
                    "app.dialogue.actions -> app.api.sse",
                    "app.errors -> app.config", "app.pipeline -> fastapi", "app.wiring -> app.api.deps",
                    "app.observability.logs -> starlette.types", "models.decoder -> app.config"):
        assert any(line.startswith(culprit) for line in found), culprit


def test_relative_and_from_imports_resolve_to_modules(tmp_path):
    source = tmp_path / "app" / "store" / "memory.py"
    source.parent.mkdir(parents=True)
    source.write_text("from . import base\nfrom ..api import errors\nimport app.config\n")
    names = imported_names(source, "app.store.memory", {"app.store.base", "app.api.errors", "app.config"})
    assert names == {"app.store.base", "app.api.errors", "app.config"}
