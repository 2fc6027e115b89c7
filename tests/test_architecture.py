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
        "_routes",
        "_endpoints",
        "_retry",
        "_ratelimit",
        "_budget",
        "_money",
        "_fields",
        "_models",
        "_management_models",
        "_enrich_models",
        "_enrich_errors",
        "_enrich_calls",
        "_config",
        "_otel",
        "_logs",
    ),
    # in order, lowest first: a core module imports only the core modules before it
    "core": (
        "_deadlines",  # calls' deadlines: one timer for many
        "_handover",  # a call handed to a loop another thread runs; that thread woken
        "_portal",  # one event loop shared by threads (the blocking client's)
        "_coordination",  # the protocols: Limiter, SharedFlights, WebhookHub
        "_singleflight",
        "_guards",  # what stops every request: the 429 pause, the breakers
        "_slices",  # a big 200, decoded in slices
        "_answers",  # reading answers: error answers, body caps
        "_decoding",  # the 200's value: one go or slices, one error context
        "_schema",  # drift: check and repair (wraps a decoder)
        "_webhooks",  # deliveries, the in-memory hub
        "_receiver",  # the webhook URL
        "_wsgi",  # the webhook URL for sync apps (WSGI, a Django view)
        "_transport",  # one HTTP request, with retries
        "_authorize",  # sessions
        "_polling",  # the 202 rule
        "_call",  # one data call: key, events, shared run
        "_bulk",  # fan-out
        "_management",  # account management: plain calls, their table
    ),
    "redis": ("_redis",),
    "client": ("_client", "_blocking"),
    # drawn in this order on the page too (lowest first), though only core's is enforced
    "apps": ("_cmdline", "_files", "testing", "_distributed", "queue", "_cli", "__main__", ""),
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


def _core_order_breaches(graph: dict[str, set[str]]) -> list[str]:
    order = LAYERS["core"]
    top = {name: name.split(".")[1] for name in graph if name.count(".") >= 1}
    bad = []
    for name, targets in graph.items():
        if _layer(name) != "core":
            continue
        for target in targets:
            if _layer(target) == "core" and order.index(top[target]) >= order.index(top[name]):
                bad.append(f"{name} -> {target} (not below it in LAYERS['core'])")
    return sorted(bad)


def test_core_modules_import_only_the_core_modules_below_them() -> None:
    """Core's modules are in one order (``LAYERS["core"]``, lowest first, as the
    architecture page lists them): each may import only those before it."""
    bad = _core_order_breaches(_graph())
    assert not bad, "\n".join(bad)


def test_the_core_order_rule_sees_an_import_upwards() -> None:
    """The checker itself: the transport importing the polling rule breaks the order."""
    graph = _graph()
    graph["flinks_async._transport"] = {*graph["flinks_async._transport"], "flinks_async._polling"}
    assert _core_order_breaches(graph) == [
        "flinks_async._transport -> flinks_async._polling (not below it in LAYERS['core'])"
    ]


def test_what_only_the_apps_use_lives_with_them() -> None:
    """A module of the library (base, core) that only the apps import belongs to them:
    under ``_cli/`` when only the command line uses it (``_idsource``, ``_progress``),
    in ``_files/`` when the queue does too (``_jsonl``). The package's ``__init__``
    re-exports; it does not count."""
    importers: dict[str, set[str]] = {}
    for name, targets in _graph().items():
        for target in targets:
            importers.setdefault(target, set()).add(name)
    apps_only = sorted(
        name
        for name in _graph()
        if _layer(name) in ("base", "core")
        and all(_layer(i) == "apps" for i in importers.get(name, set()) - {"flinks_async"})
    )
    assert not apps_only, f"used by the apps only, move under them: {apps_only}"
    for name in (m for m in _graph() if m.startswith("flinks_async._files.")):
        tops = {i.split(".")[1] for i in importers.get(name, ())}
        assert {"_cli", "_distributed"} <= tops, f"{name}: one user ({tops}), move it there"


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


#: ``(module, attribute)``: a module that may touch another module's private attribute,
#: and why. Empty: every object offers what other modules need under a plain name.
PRIVATE_REACH_ALLOWED: dict[tuple[str, str], str] = {}


def _owned(tree: ast.AST) -> set[str]:
    """The underscore names a module defines: ``self._x``/``cls._x`` it uses, and the
    functions, classes and variables it names (``__slots__`` entries included)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) in ("self", "cls"):
            out.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.add(node.value)  # __slots__ = ("_x", ...)
    return {name for name in out if name.startswith("_") and not name.startswith("__")}


def _reach_ins(sources: dict[str, str]) -> list[tuple[str, int, str]]:
    """``(module, line, "obj._name")`` wherever a module touches, through an object other
    than ``self``/``cls``, an underscore attribute that another module of the package
    defines and it does not (so ``os._exit`` or a named tuple's ``_replace`` pass)."""
    trees = {name: ast.parse(text) for name, text in sources.items()}
    owned = {name: _owned(tree) for name, tree in trees.items()}
    found = []
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            attr, base = node.attr, ast.unparse(node.value)
            if not attr.startswith("_") or attr.startswith("__") or base in ("self", "cls"):
                continue
            if attr in owned[name] or (name, attr) in PRIVATE_REACH_ALLOWED:
                continue
            if any(attr in names for other, names in owned.items() if other != name):
                found.append((name, node.lineno, f"{base}.{attr}"))
    return sorted(found)


def test_no_module_reaches_into_another_modules_private_attributes() -> None:
    """A private name is private to the module that defines it: the queue worker asks
    ``_client.setup_in_doubt(client, exc)``, never ``client._transport``; the Redis
    limiter reads ``RateLimiter.answered``, never its ``_finished``."""
    sources = {name: path.read_text() for name, path in _modules().items()}
    found = _reach_ins(sources)
    assert not found, "\n".join(f"{name}:{line}: {what}" for name, line, what in found)


def test_the_reach_in_rule_sees_one() -> None:
    """The checker itself: another module's private attribute is seen, one's own and
    the standard library's are not."""
    sources = {
        "p.low": "class T:\n    def __init__(self):\n        self._guards = 1\n",
        "p.high": "import os\ndef f(t, c):\n    os._exit(0)\n    return t._guards\n",
        "p.same": "class C:\n    def g(self, o):\n        return o._mine\n    _mine = 1\n",
    }
    assert _reach_ins(sources) == [("p.high", 4, "t._guards")]


PAGE = ROOT.parent / "docs" / "architecture.md"
#: the layer captions of the page's import graph
CAPTIONS = {
    "apps": "the command lines, the queue, the emulator",
    "client": "FlinksClient",
    "redis": "behind core's protocols: sees only base and _coordination",
    "core": "highest first: each imports only the core modules under it",
    "base": "imported by every layer (those arrows left out)",
}


def _short(module: str) -> str:
    return module.removeprefix("flinks_async.") if module != "flinks_async" else module


def _drawn(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """What the page draws: every import, but those of base modules by other layers."""
    return {
        _short(name): {_short(t) for t in targets if _layer(t) != "base" or _layer(name) == "base"}
        for name, targets in graph.items()
    }


def _page_order(graph: dict[str, set[str]]) -> list[str]:
    """The modules top-down: by layer, then by ``LAYERS`` (highest first), then, inside a
    package or the unordered base, those importing the others first."""

    def depth(name: str, seen: tuple[str, ...] = ()) -> int:
        peers = [t for t in graph[name] if _group(t) == _group(name) and t not in seen]
        return 1 + max((depth(t, (*seen, name)) for t in peers), default=0)

    def _group(name: str) -> str:
        top = _short(name).split(".")[0]
        return "base" if _layer(name) == "base" else top

    def key(name: str) -> tuple[int, int, int, int, str]:
        layer = _layer(name)
        top = _short(name).split(".")[0] if name != "flinks_async" else ""
        rank = 0 if layer == "base" else LAYERS[layer].index(top)
        package = _short(name) == top or name == "flinks_async"  # a package's __init__
        return (-list(LAYERS).index(layer), -rank, -package, -depth(name), _short(name))

    return sorted(graph, key=key)


def _render(graph: dict[str, set[str]]) -> str:
    """The page's import graph, as the test wants it (printed when they disagree)."""
    drawn, lines, layer = _drawn(graph), [], ""
    for name in _page_order(graph):
        if _layer(name) != layer:
            layer = _layer(name)
            lines.append(f"{layer:<8} {CAPTIONS[layer]}")
        targets = sorted(
            drawn[_short(name)],
            key=lambda t: _page_order(graph).index(
                "flinks_async" if t == "flinks_async" else f"flinks_async.{t}"
            ),
        )
        line = f"  {_short(name):<22}"
        if targets:
            line += " ──►"
        for target in targets:
            if len(line) + len(target) + 1 > 92:
                lines.append(line)
                line = " " * 28
            line += f" {target}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def _page_graph(text: str) -> tuple[dict[str, set[str]], dict[str, str], list[str]]:
    """The page's import graph: ``{module: drawn imports}``, each module's layer, and
    the order drawn."""
    assert "## The import graph" in text, "the page has no import graph"
    block = text.split("## The import graph", 1)[1].split("```text\n", 1)[1].split("```")[0]
    edges: dict[str, set[str]] = {}
    layers: dict[str, str] = {}
    order: list[str] = []
    layer = module = ""
    for line in block.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            layer = line.split()[0]
            continue
        if not line.startswith("   "):
            module, _, rest = line.strip().partition("──►")
            module = module.strip()
            assert module not in edges, f"{module} drawn twice"
            edges[module], layers[module] = set(), layer
            order.append(module)
        else:
            rest = line
        edges[module].update(rest.split())
    return edges, layers, order


def test_the_page_draws_the_import_graph() -> None:
    """docs/architecture.md draws every module under its layer, with an arrow to each
    package module it imports (lazy ones included, ``TYPE_CHECKING`` aside), no more and
    no fewer: when they disagree, the message holds the graph to paste."""
    graph = _graph()
    edges, layers, order = _page_graph(PAGE.read_text())
    want = _drawn(graph)
    hint = f"\nthe graph today (paste it into the page):\n{_render(graph)}"
    assert set(edges) == set(want), f"modules: {set(edges) ^ set(want)}{hint}"
    wrong = {m: (sorted(edges[m] - want[m]), sorted(want[m] - edges[m])) for m in want}
    assert not {m: d for m, d in wrong.items() if d != ([], [])}, f"(extra, missing): {wrong}{hint}"
    by_layer = {
        m: _layer("flinks_async" if m == "flinks_async" else f"flinks_async.{m}") for m in edges
    }
    assert layers == by_layer, hint
    core = [m for m in order if layers[m] == "core"]
    assert core == list(reversed(LAYERS["core"])), f"core, highest first: {core}"


def _page_table(text: str) -> dict[str, list[str]]:
    """The layer table: ``{layer: its top-level modules and packages, in order}``."""
    table = text.split("## The layers", 1)[1].split("\n## ", 1)[0]
    out = {}
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in LAYERS:
            out[cells[0]] = [m.strip("`/") for m in cells[1].split(", ")]
    return out


def test_the_page_lists_the_layers_of_the_test() -> None:
    """The layer table holds what ``LAYERS`` holds, core in its order (highest first,
    like the graph; the package's own ``__init__`` is the apps' ``__init__``)."""
    table = _page_table(PAGE.read_text())
    assert list(table) == list(reversed(LAYERS))
    for layer, tops in LAYERS.items():
        drawn = ["" if m == "__init__" else m for m in table[layer]]
        assert sorted(drawn) == sorted(tops), layer
    assert table["core"] == list(reversed(LAYERS["core"]))


def test_the_page_checker_sees_a_missing_arrow() -> None:
    """The checker itself: a drawn graph without one arrow, or with one too many."""
    graph = _graph()
    text = "## The import graph\n\n```text\n" + _render(graph) + "\n```\n"
    edges, _, _ = _page_graph(text)
    assert edges == _drawn(graph)
    call = next(line for line in text.splitlines() if line.startswith("  _call "))
    less = text.replace(call, call.replace(" _polling", ""))
    assert _page_graph(less)[0]["_call"] == _drawn(graph)["_call"] - {"_polling"}
    more = text.replace(call, f"{call} _bulk")
    assert _page_graph(more)[0]["_call"] == _drawn(graph)["_call"] | {"_bulk"}


#: The longest a function of the package may be (lines from its ``def`` to its end).
LONGEST_FUNCTION = 60
#: Functions over it, each being split by another part of #36 right now: empty this list
#: once they are merged (the test fails for an entry no longer over the limit).
LONG_FUNCTIONS_ALLOWED = {
    # the emulator's request dispatcher may stay long (the issue says so)
    "flinks_async.testing._emulator:Emulator._respond",
}


def _function_lengths(name: str, tree: ast.AST) -> dict[str, int]:
    """``{"module:Class.method": lines}`` for every function, nested ones included."""
    out: dict[str, int] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = f"{prefix}{child.name}"
                out[f"{name}:{qualname}"] = (child.end_lineno or child.lineno) - child.lineno + 1
                walk(child, f"{qualname}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(tree, "")
    return out


def test_no_function_is_over_60_lines() -> None:
    """A function reads on one screen: none is over :data:`LONGEST_FUNCTION` lines but
    those of :data:`LONG_FUNCTIONS_ALLOWED`, and each of those still is."""
    lengths: dict[str, int] = {}
    for name, path in _modules().items():
        lengths.update(_function_lengths(name, ast.parse(path.read_text())))
    long = {f: n for f, n in lengths.items() if n > LONGEST_FUNCTION}
    over = {f: n for f, n in long.items() if f not in LONG_FUNCTIONS_ALLOWED}
    assert not over, f"over {LONGEST_FUNCTION} lines: {over}"
    split = LONG_FUNCTIONS_ALLOWED - set(long)
    assert not split, f"split now: take them off LONG_FUNCTIONS_ALLOWED: {split}"


def test_the_length_rule_counts_methods_and_nested_functions() -> None:
    """The checker itself: a method, and a function nested in it, each counted whole."""
    source = (
        "class C:\n    def m(self):\n        def inner():\n            return 1\n\n"
        "        return inner\n"
    )
    assert _function_lengths("p.m", ast.parse(source)) == {"p.m:C.m": 5, "p.m:C.m.inner": 2}
