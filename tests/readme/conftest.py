"""The README test lists the blocks it did not run, and why, at the end of the run."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    reasons: set[str] = set()
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", []):
                if name == "readme_not_run":
                    reasons.update(value)
    if reasons:
        terminalreporter.section("README blocks not run")
        for reason in sorted(reasons, key=lambda r: int(r.split()[2])):
            terminalreporter.write_line(reason)
