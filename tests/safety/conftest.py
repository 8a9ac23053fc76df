"""Reports how many generated cases the property-based tests ran (counted in PROPERTY_CASES)."""
from __future__ import annotations

from .property_counts import PROPERTY_CASES


def pytest_terminal_summary(terminalreporter):
    if PROPERTY_CASES:
        terminalreporter.section("safety property-based tests: generated cases run")
        for name, (cases, steps, *extra) in sorted(PROPERTY_CASES.items()):
            more = "".join(f", {n} {k}" for k, n in extra[0].items()) if extra else ""
            terminalreporter.write_line(f"{name}: {cases} generated input sequences, {steps} supervisor steps "
                                        f"checked{more}")
