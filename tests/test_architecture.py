"""Rules that keep the package's layers as drawn (checked on the source, with every import,
lazy ones inside functions included; ``if TYPE_CHECKING:`` imports aside)."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "flinks_async"


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
    """The package modules ``name`` imports, anywhere in it but under TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in ast.walk(node)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join([*base, node.module] if node.module else base)
            if not node.level:
                module = node.module or ""
            for alias in node.names:
                target = f"{module}.{alias.name}"
                out.add(target if target in modules else module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str], done: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in trail:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in done:
                visit(nxt, [*trail, nxt], done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start], done)
    assert not cycles, cycles


def test_only_the_client_and_the_queue_import_redis_code() -> None:
    """The core (transport, polling, coordination's protocols) never imports the Redis
    implementations: the client attaches them, the queue layer uses its error types."""
    allowed = ("flinks_async._client", "flinks_async._distributed")
    offenders = {
        name: sorted(t for t in targets if t.startswith("flinks_async._redis"))
        for name, targets in _graph().items()
        if not name.startswith(("flinks_async._redis", *allowed))
    }
    assert not {k: v for k, v in offenders.items() if v}


#: The layers of docs/architecture.md, lowest first: a module imports only from its own
#: layer or a lower one (and the Redis implementations only from ``base`` and the
#: coordination protocols). Every module is in exactly one layer.
LAYERS: dict[str, tuple[str, ...]] = {
    "base": (
        "_version",
        "_redact",
        "_errors",
        "_events",
        "_options",
        "_endpoints",
        "_retry",
        "_ratelimit",
        "_budget",
        "_money",
        "_fields",
        "_models",
        "_config",
        "_otel",
        "_logs",
    ),
    "core": (
        "_coordination",
        "_singleflight",
        "_guards",
        "_answers",
        "_transport",
        "_schema",
        "_slices",
        "_decoding",
        "_webhooks",
        "_receiver",
        "_polling",
        "_authorize",
        "_call",
        "_bulk",
        "_idsource",
        "_jsonl",
        "_progress",
    ),
    "redis": ("_redis",),
    "client": ("_client",),
    "apps": ("_cmdline", "testing", "_cli", "_distributed", "queue", "__main__", ""),
}


def _layer(module: str) -> str:
    rest = module.removeprefix("flinks_async").removeprefix(".")
    top = rest.split(".")[0]
    found = [name for name, tops in LAYERS.items() if top in tops]
    assert len(found) == 1, f"{module}: put it in one layer of LAYERS (and the docs)"
    return found[0]


def test_every_module_imports_only_its_layer_or_below() -> None:
    order = list(LAYERS)
    bad = []
    for name, targets in _graph().items():
        mine = order.index(_layer(name))
        for target in targets:
            theirs = _layer(target)
            if order.index(theirs) > mine:
                bad.append(f"{name} -> {target} ({theirs} is above {order[mine]})")
            elif (
                _layer(name) == "redis"
                and theirs == "core"
                and target != ("flinks_async._coordination")
            ):
                bad.append(f"{name} -> {target} (Redis code sees the protocols only)")
    assert not bad, "\n".join(bad)


def test_the_test_double_does_not_import_the_command_line() -> None:
    graph = _graph()
    bad = {
        name: sorted(t for t in targets if t.split(".")[:2] == ["flinks_async", "_cli"])
        for name, targets in graph.items()
        if name.startswith("flinks_async.testing")
    }
    assert not {k: v for k, v in bad.items() if v}


def test_no_module_is_over_500_lines_but_the_emulator() -> None:
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text().splitlines())) > 500
        and name != "flinks_async.testing._emulator"
    }
    assert not long, long


def test_the_rules_see_a_cycle_when_there_is_one(tmp_path: pathlib.Path) -> None:
    """The checker itself: two modules importing each other inside functions."""
    (tmp_path / "a.py").write_text("def f():\n    from . import b\n")
    (tmp_path / "b.py").write_text("from .a import f\n")
    modules = {"p.a": tmp_path / "a.py", "p.b": tmp_path / "b.py"}
    assert _imports("p.a", tmp_path / "a.py", modules) == {"p.b"}
    assert _imports("p.b", tmp_path / "b.py", modules) == {"p.a"}
