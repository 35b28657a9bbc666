"""The import graph of the product: no cycles between modules of `terminal`, `drivers` and the sandbox
package, arrows that point one way (user interfaces -> service -> payment modules -> journal,
backend, drivers -> core), and no production module that imports the simulation rigs, the tests or
the scripts.

Every import counts, wherever it is written: at the top, inside a function, or under
`if TYPE_CHECKING:` (a type-only import is still a dependency a reader has to follow). The graph is
read from the source with `ast`, so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("terminal", "drivers", "sandbox")

# Layers, lowest first: a module may import its own layer or lower ones, never a higher one. The first
# matching prefix (longest first) decides. A new module must be placed here on purpose.
LAYERS: dict[str, int] = {
    # 0: pure and leaf modules
    "terminal.errors": 0, "terminal.core": 0, "terminal.wire": 0,
    "terminal.journal.record": 0, "terminal.journal.ids": 0,
    # 1: storage, config, texts, keys, devices
    "terminal.security": 1, "terminal.config": 1, "terminal.i18n": 1, "terminal.logs": 1,
    "terminal.journal": 1, "drivers": 1, "terminal.messages": 1,
    # 2: what the payment path shares, the backend client, operators, receipts
    "terminal.payment": 2, "terminal.backend": 3, "terminal.operators": 2, "terminal.receipts": 2,
    # what a technician sees of a tap: the recording, the kept failed taps, their replay as a card
    "terminal.tapstore": 2, "terminal.tapreplay": 2,
    "terminal.catalogue": 2,
    # 4: the one payment path
    "terminal.payments": 4,
    # 5: payment modules over it
    "terminal.cardpay": 5, "terminal.codepay": 5, "terminal.backoffice": 5, "terminal.dayclose": 5, "terminal.sync": 5,
    "terminal.farepay": 5,  # fares at a transit gate, journaled with the card's journey state
    "terminal.transit": 5,  # taps at a transit gate (cards and codes to FarePayments.charge_fare)
    "terminal.checkout": 6,
    "terminal.watchers": 2,  # one thread per device (reader, camera), used by the checkout and a gate lane
    # what reports on the terminal's parts, below the service that offers it: the doctor's checks and
    # the support bundle (which reads the terminal through a protocol)
    "terminal.doctor": 6, "terminal.support": 6,
    "terminal.gate": 6,  # the gate lane: reader, camera and gate hardware of one gate (beside the checkout)
    "terminal.gate.display": 9,  # the passenger display (Textual)
    # 7: the service, 8: its bootstrap and what reports on a built service
    "terminal.service": 7, "terminal.bootstrap": 8,
    # 9: user interfaces and entry points
    "terminal.tui": 9, "terminal.commands": 9, "terminal.cli": 10, "terminal.demo": 9,
    # the sandbox backend: a program of its own beside the terminal, using its pure record module
    "sandbox": 9,
}

# Production modules that may load the simulation rigs (virtual cards, phone scenes) of `drivers.sim`:
# the demo (its whole point), `walletpos tap --sim-card` (a virtual card on the simulated reader) and
# the replay of a recorded tap as a card (`walletpos tap --replay`, the diagnostics screen).
SIM_RIG_USERS = {"terminal.demo", "terminal.commands.tap", "terminal.tapreplay"}
# The demo is the only product module that starts the sandbox backend.
SANDBOX_USERS = {"terminal.demo"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules[module_name(path)] = path
    return modules


def imports_of(name: str, path: Path, modules: Collection[str] = ()) -> Iterator[str]:
    """Every module name this file imports (absolute, relative imports resolved). `from X import Y`
    imports the module X.Y when there is one (`from terminal import codepay`), else a name of X."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" for alias in node.names]
            submodules = [n for n in names if n in modules]
            yield from submodules
            if len(submodules) < len(names) or not modules:
                yield target


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target in imports_of(name, path, modules):
            if target in modules and target != name:
                edges[name].add(target)
    return edges


def external_imports(prefixes: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    for name, path in project_modules().items():
        for target in imports_of(name, path):
            if target.split(".")[0] in prefixes or any(target.startswith(p + ".") or target == p for p in prefixes):
                yield name, target


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each in a readable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def layer(name: str) -> int | None:
    if name in ("terminal", "drivers"):  # the packages themselves: a version string, nothing else
        return 0
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "."):
            return LAYERS[prefix]
    return None


def production(name: str) -> bool:
    return name.split(".")[0] in ("terminal", "drivers") and not name.startswith("drivers.sim")


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    found = cycles(graph())
    assert not found, "import cycles (every import counts, also in functions and TYPE_CHECKING):\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_every_module_has_a_layer_and_imports_point_down():
    edges = graph()
    unplaced = sorted(name for name in edges if production(name) and layer(name) is None)
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"
    upward = sorted(f"{a} ({layer(a)}) -> {b} ({layer(b)})" for a, targets in edges.items() if production(a)
                    for b in targets if production(b) and layer(b) > layer(a))  # type: ignore[operator]
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


@pytest.mark.parametrize("forbidden", ["tests", "scripts"])
def test_product_code_never_imports_tests_or_scripts(forbidden):
    bad = sorted(f"{a} -> {b}" for a, b in external_imports((forbidden,)) if a.split(".")[0] in PACKAGES)
    assert not bad, f"product code imports {forbidden}: {bad}"


def test_only_the_demo_and_tap_sim_card_load_the_simulation_rigs():
    bad = sorted(f"{a} -> {b}" for a, b in external_imports(("drivers.sim",))
                 if production(a) and a not in SIM_RIG_USERS)
    assert not bad, f"production modules importing drivers.sim: {bad}"


def test_only_the_demo_starts_the_sandbox():
    bad = sorted(f"{a} -> {b}" for a, b in external_imports(("sandbox",))
                 if production(a) and a not in SANDBOX_USERS)
    assert not bad, f"production modules importing the sandbox backend: {bad}"


MAX_MODULE_LINES = 500  # a module a reader takes in at one sitting; split along its parts past this


def test_no_module_outside_the_tests_is_over_500_lines():
    paths = [*(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")), *(ROOT / "scripts").glob("*.py")]
    long = sorted(f"{p.relative_to(ROOT)}: {n}" for p in paths
                  if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES)
    assert len(paths) > 100 and not long, f"modules over {MAX_MODULE_LINES} lines: {long}"
