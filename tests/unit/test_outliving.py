"""The suite's last check (tests/conftest.py ``pytest_sessionfinish``) finds a process the tests left running in
their temporary directory, names it, and stops it; a process that ends within the grace period is not one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..conftest import outliving


def test_a_process_left_in_the_runs_directory_is_named_and_stopped(tmp_path: Path) -> None:
    left = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], cwd=tmp_path)
    quick = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"], cwd=tmp_path)
    try:
        described = outliving(tmp_path, grace=3.0)
        quick.wait(10)
        assert len(described) == 1 and f"pid {left.pid}:" in described[0], described
        assert left.wait(10) is not None  # stopped
    finally:
        for p in (left, quick):
            if p.poll() is None:
                p.kill()
            p.wait(10)


def test_nothing_is_found_where_nothing_runs(tmp_path: Path) -> None:
    assert outliving(tmp_path, grace=0.0) == []
