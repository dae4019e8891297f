"""Architecture rules that must not rot: attacks never import bench, never see ground truth, never
import each other (only the shared modules and the composer), and no module imports itself back
through others (no import circles, function-level imports included)."""
import ast
import dataclasses
from pathlib import Path

from attacks.base import Observation

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("attacks", "bench", "datasets", "hydra_plugins")
# modules of attacks/ that every attack may import: the contract, what gradients reveal (labels,
# batch size), layer lookup, image priors, and the optimisation loops' progress/deadline/threads
SHARED_ATTACK_MODULES = frozenset({"base", "labels", "layers", "priors", "progress"})
# composes attacks out of other attacks (CNN pipelines, Geiping's prior for SPEAR's guided finder)
COMPOSERS = frozenset({"pipelines"})
# top-level modules of attacks/ that are one attack's own parts: module -> the attack it belongs to
ATTACK_PARTS = {"ci_net_generator": "ci_net"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, modules) -> set[str]:
    """Project modules that ``name`` imports anywhere in its file (module level or inside
    functions): ``import a.b`` and ``from a import b`` name module ``a.b`` when it exists, else
    the longest existing prefix."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def add(target: str) -> None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)

    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level-1 parents
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                add(full if full in modules else base)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def sideways(graph: dict[str, set[str]]) -> list[str]:
    """Imports from one attack's module (attacks/<x>.py or attacks/<x>/) into another's."""
    def attack_of(mod: str) -> str | None:
        parts = mod.split(".")
        return ATTACK_PARTS.get(parts[1], parts[1]) if parts[0] == "attacks" and len(parts) > 1 else None

    out = []
    for mod, targets in graph.items():
        x = attack_of(mod)
        if x is None or x in SHARED_ATTACK_MODULES or x in COMPOSERS:
            continue
        for t in sorted(targets):
            y = attack_of(t)
            if y is not None and y != x and y not in SHARED_ATTACK_MODULES:
                out.append(f"{mod} imports {t}")
    return out


def test_attacks_never_import_bench():
    offenders = [f"{mod}: {t}" for mod, targets in import_graph().items() if mod.startswith("attacks")
                 for t in targets if t == "bench" or t.startswith("bench.")]
    assert not offenders, offenders


def test_observation_carries_no_ground_truth():
    fields = {f.name for f in dataclasses.fields(Observation)}
    assert fields == {"model", "gradients", "loss_fn", "data_spec", "batch_size", "labels",
                      "client_steps", "update_meta"}


def test_no_import_circles():
    graph = import_graph()
    assert "attacks.spear.engine" in graph and "bench.run.runner" in graph  # the walk found the packages
    found = cycles(graph)
    assert not found, "import circles (break each by moving what both sides need into a module " \
                      f"both can import): {found}"


def test_no_attack_imports_another_attacks_module():
    found = sideways(import_graph())
    assert not found, (f"attacks import each other: {found}; share code through "
                       f"attacks/{{{','.join(sorted(SHARED_ATTACK_MODULES))}}}.py or compose in "
                       "attacks/pipelines.py")


def test_the_checks_find_what_they_look_for():
    """The cycle and sideways checks on a made-up graph: a circle hidden two modules deep, and an
    attack importing another attack's internals, a shared module and the composer's imports."""
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}
    assert cycles(graph) == [["a.x", "a.y", "a.z"]]
    graph = {"attacks.spear.finders.guided": {"attacks.geiping", "attacks.base", "attacks.spear.config"},
             "attacks.pipelines": {"attacks.geiping", "attacks.spear.precision"},
             "attacks.cpa": {"attacks.labels", "attacks.progress"}}
    assert sideways(graph) == ["attacks.spear.finders.guided imports attacks.geiping"]


def test_function_level_imports_are_edges(tmp_path):
    modules = {"pkg": tmp_path / "pkg" / "__init__.py", "pkg.a": tmp_path / "pkg" / "a.py",
               "pkg.b": tmp_path / "pkg" / "b.py"}
    src = "def f():\n    from pkg.b import g\n    from . import b\n    return g\n"
    path = tmp_path / "pkg" / "a.py"
    path.parent.mkdir()
    path.write_text(src)
    assert imports_of("pkg.a", path, modules) == {"pkg.b"}
