"""The closing lines of a run made of several pytest runs (tests/run-all.sh): the slowest
tests of all of them, then one line `all: N passed, N failed, N skipped`.
Exits 1 when a run failed, erred or is missing, or when no test ran at all."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ElementTree

SLOWEST = 30


def main(paths: list[str]) -> int:
    counts = {"passed": 0, "failed": 0, "skipped": 0}  # an error (in a fixture) counts as failed
    times: list[tuple[float, str]] = []
    missing = []
    for path in paths:
        try:
            root = ElementTree.parse(path).getroot()
        except (OSError, ElementTree.ParseError):
            missing.append(path)
            continue
        for case in root.iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}".split("@")[0]  # less xdist's group
            times.append((float(case.get("time") or 0), name))
            outcomes = {child.tag for child in case}
            if outcomes & {"failure", "error"}:
                counts["failed"] += 1
            elif "skipped" in outcomes:
                counts["skipped"] += 1
            else:
                counts["passed"] += 1
    print(f"\nslowest {SLOWEST} of all runs (setup, call and teardown):")
    for seconds, name in sorted(times, reverse=True)[:SLOWEST]:
        print(f"{seconds:8.2f}s {name}")
    for path in missing:
        print(f"no results in {path}: that run did not finish")
    print(f"all: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    bad = counts["failed"] or missing or not counts["passed"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
