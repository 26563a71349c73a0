"""Pairs of LAPACK custom calls that XLA:CPU may run at the same time.

Parses optimized HLO text (``compiled.as_text()``). Within each computation, an
instruction "holds LAPACK" if it is a custom call whose target starts with
``lapack_`` or calls (while body/condition, conditional branches, call, fusion)
a computation that holds LAPACK. Two such instructions with no dependency path
between them (operands or control-predecessors) may be run concurrently by the
thunk executor. With jaxlib 0.10, two LAPACK calls that can each block a pool
thread (see ``can_block``) running at once deadlock a 2-thread pool
(experiments/xla_deadlock_repro.py).
"""

import itertools
import re
import sys

from jaxem._src.programs import lapack_call_can_block as can_block

_COMP = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.*)$")
_CALLS = re.compile(
    r"\b(?:calls|to_apply|body|condition|true_computation|false_computation)=%?([\w.\-]+)"
)
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_METADATA = re.compile(r"metadata=\{.*?\}(?=,|$)")
_REF = re.compile(r"%([\w.\-]+)")


def parse(text: str) -> dict:
    """{computation: {instruction: {"called", "lapack", "blocks", "deps"}}}."""
    comps: dict = {}
    current = None
    for line in text.splitlines():
        if current is None:
            match = _COMP.match(line)
            if match and "=" not in line.split("(")[0]:
                current = match.group(1)
                comps[current] = {}
            continue
        if line.strip() == "}":
            current = None
            continue
        match = _INSTR.match(line)
        if not match:
            continue
        name, rest = match.groups()
        rest = _METADATA.sub("", rest)
        called = set(_CALLS.findall(rest))
        for branches in _BRANCHES.findall(rest):
            called |= set(_REF.findall(branches))
        lapack = 'custom_call_target="lapack_' in rest
        comps[current][name] = dict(
            rest=rest, called=called, lapack=lapack, blocks=lapack and can_block(rest)
        )
    for comp in comps.values():
        for name, ins in comp.items():
            refs = set(_REF.findall(ins["rest"])) - ins["called"]
            ins["deps"] = {r for r in refs if r in comp and r != name}
    return comps


def unordered_lapack_pairs(text: str, blocking_only: bool = False) -> list[tuple[str, str, str]]:
    """(computation, a, b) for every pair of LAPACK-holding instructions that no
    dependency orders; with ``blocking_only``, only pairs whose calls can both
    block a pool thread (the deadlock condition on a 2-thread pool)."""
    comps = parse(text)
    flag = "blocks" if blocking_only else "lapack"
    holds: dict[str, bool] = {}

    def holds_lapack(c):
        if c not in holds:
            holds[c] = False  # recursion guard
            holds[c] = any(_holds(i) for i in comps[c].values())
        return holds[c]

    def _holds(ins):
        return ins[flag] or any(holds_lapack(k) for k in ins["called"] if k in comps)

    pairs = []
    for cname, comp in comps.items():
        nodes = [n for n, ins in comp.items() if _holds(ins)]
        ancestors = {n: _ancestors(comp, n) for n in nodes}
        for a, b in itertools.combinations(nodes, 2):
            if a not in ancestors[b] and b not in ancestors[a]:
                pairs.append((cname, a, b))
    return pairs


def _ancestors(comp: dict, name: str) -> set[str]:
    seen: set[str] = set()
    stack = list(comp[name]["deps"])
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            stack.extend(comp[p]["deps"])
    return seen


if __name__ == "__main__":
    hlo = open(sys.argv[1]).read()
    for pair in unordered_lapack_pairs(hlo):
        print(*pair)
    print("both can block:", unordered_lapack_pairs(hlo, blocking_only=True))
