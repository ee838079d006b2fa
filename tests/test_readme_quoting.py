"""The README's quoting of values with commas works in bash: Hydra reads a bare comma as a list
of values to sweep over, so the value needs Hydra's own quotes inside the shell's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROMOTE = """python -m src.promote version=candidate 'reason="Q1 sweep, silhouette 0.43"'"""


def as_hydra_reads_it(command: str) -> subprocess.CompletedProcess:
    """`command` run by bash with `--cfg job`: Hydra parses the overrides and prints the
    composed config, without running the command."""
    line = command.replace("python", f"'{sys.executable}'", 1) + " --cfg job"
    return subprocess.run(
        ["bash", "-c", line], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_readme_promote_line_passes_the_reason_whole():
    assert PROMOTE in (ROOT / "README.md").read_text(encoding="utf-8")
    done = as_hydra_reads_it(PROMOTE)
    assert done.returncode == 0, done.stderr
    assert "reason: Q1 sweep, silhouette 0.43" in done.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_shell_quotes_alone_are_not_enough():
    done = as_hydra_reads_it('python -m src.promote reason="Q1 sweep, silhouette 0.43"')
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
