"""One line and exit 2 for a user's mistakes, Hydra's included; tracebacks for programming errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf.errors import ConfigKeyError

from src.cli import one_line

ROOT = Path(__file__).resolve().parents[1]


def test_hydra_messages_become_one_line():
    missing = MissingConfigException(
        "In 'config': Could not find 'reducer/tsnee'\n\nAvailable options in 'reducer':\n"
        "\tnone\n\tpca\n\ttsne\nConfig search path:\n\tprovider=hydra, path=pkg://hydra.conf"
    )
    assert one_line(missing) == (
        "In 'config': Could not find 'reducer/tsnee'; Available options in 'reducer': none, pca, tsne"
    )
    try:
        raise ConfigCompositionException(
            "Could not override 'foo'.\nTo append to your config use +foo=1"
        ) from ConfigKeyError("Key 'foo' is not in struct\n    full_key: foo\n    object_type=dict")
    except ConfigCompositionException as err:
        assert one_line(err) == (
            "Could not override 'foo'; To append to your config use +foo=1; "
            "Key 'foo' is not in struct"
        )


@pytest.mark.slow
@pytest.mark.parametrize("module", ["src.predict", "src.promote", "src.sweep"])
def test_every_command_reports_an_unknown_key_in_one_line(tmp_path, module):
    done = subprocess.run(
        [sys.executable, "-m", module, "no_such_key=1"],
        cwd=tmp_path,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "error: Could not override 'no_such_key'; To append to your config use +no_such_key=1; "
        "Key 'no_such_key' is not in struct\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_programming_error_in_the_command_keeps_its_traceback(tmp_path, monkeypatch):
    """Only Hydra's refusals of the command line become one line; the command's bugs do not."""
    import hydra

    from src.cli import run_command

    (tmp_path / "app.yaml").write_text("x: 1\n")

    @hydra.main(version_base="1.3", config_path=str(tmp_path), config_name="app")
    def buggy(cfg) -> None:
        raise ValueError("a bug")

    monkeypatch.chdir(tmp_path)
    quiet = ["hydra/job_logging=none", "hydra/hydra_logging=none"]  # this process's logging
    monkeypatch.setattr(
        sys, "argv", ["buggy", "hydra.run.dir=.", "hydra.output_subdir=null", *quiet]
    )
    with pytest.raises(ValueError, match="a bug"):
        run_command(buggy)
    monkeypatch.setattr(sys, "argv", ["buggy", "no_such_key=1", *quiet])
    with pytest.raises(SystemExit) as stopped:
        run_command(buggy)
    assert stopped.value.code == 2
    assert "HYDRA_FULL_ERROR" not in os.environ


def test_library_info_lines_are_off_unless_verbose(monkeypatch):
    import logging

    from src.cli import LIBRARY_LOGGERS, quiet_libraries

    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL", raising=False)
    try:
        quiet_libraries(verbose=False)
        assert os.environ["MLFLOW_LOGGING_LEVEL"] == "WARNING"  # reaches started processes too
        assert {logging.getLogger(n).level for n in LIBRARY_LOGGERS} == {logging.WARNING}
        quiet_libraries(verbose=True)
        assert os.environ["MLFLOW_LOGGING_LEVEL"] == "INFO"
        assert {logging.getLogger(n).level for n in LIBRARY_LOGGERS} == {logging.INFO}
    finally:
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
