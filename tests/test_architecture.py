"""The layering rules of docs/ARCHITECTURE.md, checked on the source with `ast`:
no import cycles (imports inside functions count), the core does not reach up into
its doors (only the app factory wires them), and the pages do not import the API."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("renkei", "models", "api", "web", "realtime")
DOORS = ("api", "web", "realtime")
APP_FACTORY = "renkei.app"


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    found["wsgi"] = ROOT / "wsgi.py"
    return found


def imports_of(path: Path, name: str, modules) -> list[tuple[str, int, bool]]:
    """(imported project module, line, inside a function) for every import in a file.
    `from a import b` counts as importing a.b when a.b is a module, else a."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - child.level + 1] + ([base] if base else [])
                    )
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in child.names]
            else:
                visit(child, nested)
                continue
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a name inside a.b
                    target = target.rpartition(".")[0]
                if target and target != name:
                    out.append((target, child.lineno, in_function))

    visit(tree, False)
    return out


def import_graph():
    modules = project_modules()
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in {t for t, _, _ in graph[v]}:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_core_does_not_import_its_doors():
    graph = import_graph()
    wrong = [
        (m, t, line)
        for m, edges in graph.items()
        if m.split(".")[0] == "renkei" and m != APP_FACTORY
        for t, line, _ in edges
        if t.split(".")[0] in DOORS
    ]
    assert wrong == []


def test_models_import_nothing_above_them():
    graph = import_graph()
    wrong = [
        (m, t)
        for m, edges in graph.items()
        if m.split(".")[0] == "models"
        for t, _, _ in edges
        if t.split(".")[0] != "models"
    ]
    assert wrong == []


def test_pages_do_not_import_the_api():
    graph = import_graph()
    wrong = [
        (m, t, line)
        for m, edges in graph.items()
        if m.split(".")[0] == "web"
        for t, line, _ in edges
        if t.split(".")[0] == "api"
    ]
    assert wrong == []


def test_few_function_level_imports_each_with_a_reason():
    """Imports belong at the top; the few that cannot be (a heavy library needed by one
    command, a door wired by the app factory) say why on the line above."""
    late = set()
    for name, path in project_modules().items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        late.add((name, inner.lineno, lines[inner.lineno - 2].strip()))
    late = sorted(late)
    outside_factory = [entry for entry in late if entry[0] != APP_FACTORY]
    assert len(outside_factory) < 10, outside_factory
    assert [e for e in late if not e[2].startswith("#")] == []


# A date written into a test ages: readings fall out of a week's sheet, a consent out of
# a window (issue 29: the suite failed on a fresh clone a week after it landed). Tests take
# dates from tests.helpers.days_ago; far past (birth dates) and far future stay literal.
LITERAL_DATE = re.compile(
    r"\b(20[0-8]\d)[-/](?:0?[1-9]|1[0-2])[-/](?:0?[1-9]|[12]\d|3[01])\b"
    r"|\bdate(?:time)?\((20[0-8]\d),"
)


def test_no_test_depends_on_the_calendar():
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if LITERAL_DATE.search(line)
    ]
    assert found == []


# --- the core's folders (issue 30) ---------------------------------------------------
# renkei/ is a few top-level modules (the app factory, settings, the CLI, the demo
# loader, migrations, erasure) and one folder per domain. The folders' imports point one
# way, from the domains down to the common layer, so each can be read without the ones
# above it; no folder grows past what a newcomer can scan; no module past one screenful
# of screenfuls.
CORE = ROOT / "renkei"
COMMON = "renkei.common"
MOST_MODULES = 12
MOST_LINES = 500


def core_packages() -> list[str]:
    return sorted(p.name for p in CORE.iterdir() if (p / "__init__.py").exists())


def package_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "renkei" or not (CORE / parts[1] / "__init__.py").exists():
        return None
    return ".".join(parts[:2])


def package_graph() -> dict[str, set[str]]:
    graph = {f"renkei.{p}": set() for p in core_packages()}
    for module, edges in import_graph().items():
        here = package_of(module)
        if here:
            graph[here] |= {package_of(t) for t, _, _ in edges if package_of(t) not in (None, here)}
    return graph


def test_the_core_is_folders_not_a_flat_heap():
    flat = [p.name for p in CORE.glob("*.py") if p.name != "__init__.py"]
    assert len(flat) <= 8, flat
    assert len(core_packages()) >= 8


def test_no_cycle_between_the_cores_folders():
    graph = package_graph()
    as_modules = {p: [(t, 0, False) for t in targets] for p, targets in graph.items()}
    assert cycles(as_modules) == []


def test_the_common_layer_imports_no_domain():
    assert package_graph()[COMMON] == set()


def test_every_folder_says_what_it_owns():
    silent = [
        p
        for p in core_packages()
        if len(ast.get_docstring(ast.parse((CORE / p / "__init__.py").read_text())) or "") < 80
    ]
    assert silent == []


def test_no_folder_of_more_than_a_dozen_modules():
    crowded = {
        p: n
        for p in core_packages()
        if (n := len([f for f in (CORE / p).glob("*.py") if f.name != "__init__.py"])) > MOST_MODULES
    }
    assert crowded == {}


def test_no_core_module_over_500_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for path in CORE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MOST_LINES
    }
    assert long == {}
