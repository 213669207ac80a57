#!/usr/bin/env python3
"""Prints the import cycles between the top-level modules of a crate, or "no cycles".

    scripts/module-cycles.py host/controller host/node

A module of `src/` (a file `x.rs` or a folder `x/`) uses another when its code names
`crate::other` (in a `use` or in a path). Tests (`#[cfg(test)]` modules and `tests.rs` files)
are left out: they may reach anything. Exits 1 when a crate has a cycle.
"""
import re
import sys
from pathlib import Path

USE = re.compile(r"\bcrate::(\w+)")
USE_GROUP = re.compile(r"\bcrate::\{([^}]*)\}")


def module_of(src: Path, file: Path) -> str:
    rel = file.relative_to(src)
    first = rel.parts[0]
    return first[:-3] if first.endswith(".rs") else first


def production_text(text: str) -> str:
    # Cut everything from a `#[cfg(test)]` on (by convention tests sit at the end of a file),
    # and comments: a doc link to another module is not a use of it.
    cut = text.find("#[cfg(test)]")
    text = text if cut < 0 else text[:cut]
    return re.sub(r"//.*", "", text)


def graph(crate: Path) -> dict:
    src = crate / "src"
    edges = {}
    for file in src.rglob("*.rs"):
        if file.name == "tests.rs" or "tests" in file.relative_to(src).parts[:-1]:
            continue
        module = module_of(src, file)
        if module in ("lib", "main"):
            continue
        text = production_text(file.read_text())
        used = set(USE.findall(text))
        for group in USE_GROUP.findall(text):
            used.update(re.findall(r"^\s*(\w+)", part)[0] for part in group.split(",") if part.strip())
        used.discard(module)
        used.discard("self")
        edges.setdefault(module, set()).update(used)
    return edges


def cycles(edges: dict) -> list:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
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

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    status = 0
    for crate in map(Path, sys.argv[1:] or ["."]):
        found = cycles(graph(crate))
        if found:
            status = 1
            for component in found:
                print(f"{crate}: cycle among {', '.join(component)}")
        else:
            print(f"{crate}: no cycles")
    return status


if __name__ == "__main__":
    sys.exit(main())
