"""Where the test suite's time goes: tracing, lowering and XLA compilation, by
program and by test.

Run the suite with the opt-in compile log of ``tests/conftest.py`` and a cold
compilation cache, then summarise it:

    rm -rf /tmp/log /tmp/cache
    JAXEM_COMPILE_LOG=/tmp/log JAX_COMPILATION_CACHE_DIR=/tmp/cache pytest -p no:cacheprovider
    python experiments/suite_compile_report.py /tmp/log [--out results/suite_compile_profile.md]

The durations are the events' wall-clock seconds in each test process (the
suite runs three processes on two cores, so they include waiting for a core;
XLA's code generation itself runs on several threads). Programs that the
tests' subprocesses (experiment scripts, fresh-process checks) compile are not
recorded.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

EVENTS = {
    "jaxpr_trace_duration": "trace",
    "jaxpr_to_mlir_module_duration": "lower",
    "backend_compile_duration": "compile",
}


def load(directory: Path) -> list[tuple[str, str, float, str]]:
    """(event, program, seconds, test) of every record in ``directory``."""
    records = []
    for path in sorted(directory.glob("*.tsv")):
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 4 and parts[0] in EVENTS:
                event, name, seconds, test = parts
                name = name.removeprefix("jit(").removesuffix(")")
                records.append((EVENTS[event], name, float(seconds), test or "(collection)"))
    return records


def table(records, key, top: int) -> list[str]:
    """Markdown rows: seconds of tracing, lowering, compilation and programs
    compiled, per ``key(record)``, the largest total first."""
    seconds: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    programs: collections.Counter = collections.Counter()
    for record in records:
        kind, _, duration, _ = record
        seconds[key(record)][kind] += duration
        programs[key(record)] += kind == "compile"
    rows = sorted(seconds.items(), key=lambda item: -sum(item[1].values()))
    lines = ["| | programs | trace s | lower s | compile s | total s |", "|---" * 6 + "|"]
    for name, s in rows[:top]:
        total = s["trace"] + s["lower"] + s["compile"]
        lines.append(
            f"| `{name}` | {programs[name]} | {s['trace']:.1f} | {s['lower']:.1f} "
            f"| {s['compile']:.1f} | {total:.1f} |"
        )
    return lines


def report(records, top: int) -> str:
    totals = collections.Counter()
    counts = collections.Counter()
    for kind, _, duration, _ in records:
        totals[kind] += duration
        counts[kind] += 1
    lines = [
        "# Where the test suite's time goes",
        "",
        "Produced by `python experiments/suite_compile_report.py LOG` (module docstring).",
        "",
        "| | events | seconds |",
        "|---|---|---|",
        *(f"| {kind} | {counts[kind]} | {totals[kind]:.1f} |" for kind in EVENTS.values()),
        "",
        f"## By program (top {top})",
        "",
        *table(records, lambda r: r[1], top),
        "",
        f"## By test file (top {top})",
        "",
        *table(records, lambda r: r[3].split("::")[0], top),
        "",
        f"## By test (top {top})",
        "",
        *table(records, lambda r: r[3], top),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path, help="the JAXEM_COMPILE_LOG directory")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=None, help="write the report here too")
    args = parser.parse_args(argv)
    records = load(args.log)
    if not records:
        sys.exit(f"no records in {args.log}")
    text = report(records, args.top)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
