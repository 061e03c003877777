"""Fail when any import cycle exists among the project's modules, imports inside functions included.

Also keeps `stream/__init__.py` import-free and `stream/client.py` a shim over stream.clients only.

import-linter's contracts (pyproject.toml) check direction between layers; this check covers what
they cannot: a cycle between two modules of the same package (e.g. engines.a <-> engines.b). It uses
grimp, the graph library import-linter itself uses, which records function-level imports too.

usage: python scripts/import_cycles.py        (exit 1 and one line per cycle when there are any)
"""
from __future__ import annotations

import sys
from pathlib import Path

import grimp

PACKAGES = ("stream", "engines", "train")


def module_cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (each is at least one cycle), sorted."""
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in modules:  # iterative Tarjan: the graph has a few hundred nodes, recursion would also do
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)  # internal modules only; function-level imports included
    cycles = module_cycles(graph)
    for component in cycles:
        print("import cycle: " + " <-> ".join(component))
    print(f"{len(cycles)} import cycle(s) among {len(graph.modules)} modules of {', '.join(PACKAGES)}")
    problems = [f"stream/__init__.py imports {m} (it must stay import-free)"
                for m in sorted(graph.find_modules_directly_imported_by("stream"))]
    problems += [f"stream/client.py imports {m} (a shim re-exports stream.clients only)"
                 for m in sorted(graph.find_modules_directly_imported_by("stream.client"))
                 if not m.startswith("stream.clients.")]
    for line in problems:
        print(line)
    return 1 if cycles or problems else 0


if __name__ == "__main__":
    sys.exit(main())
