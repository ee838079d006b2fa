"""Passwords in URIs (`postgresql://user:PASSWORD@host/db`, `...?password=...`) never reach MLflow,
config.yaml, logs or the console: every place that writes settings or messages out masks them.

`mask_secrets` is the one masking rule; `MaskSecrets` is a Hydra callback (conf/config.yaml) that
masks the config files Hydra saved and every log line of the job.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode

MASK = "***"
_PASSWORD_IN_AUTHORITY = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
_PASSWORD_IN_QUERY = re.compile(r"(?P<head>[?&](?:password|pwd)=)[^&\s]+", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """`text` with the password of every URI in it replaced by ***."""
    text = _PASSWORD_IN_AUTHORITY.sub(rf"\g<head>{MASK}@", text)
    return _PASSWORD_IN_QUERY.sub(rf"\g<head>{MASK}", text)


class _MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = mask_secrets(logging.Formatter().formatException(record.exc_info))
        return True


def mask_log_records() -> None:
    """Mask every record that reaches the root logger's handlers (console and the job's log)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _MaskingFilter) for f in handler.filters):
            handler.addFilter(_MaskingFilter())


class MaskSecrets(Callback):
    """Hydra callback: Hydra saves the composed config (with any password typed in a
    tracking.uri or sweep.storage override) before the job starts; this rewrites those files
    masked and masks the job's log records."""

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        mask_log_records()
        folder = Path(config.hydra.runtime.output_dir)
        saved: list[Path] = []
        if config.hydra.mode == RunMode.MULTIRUN:  # `-m`: Hydra's multirun.yaml in the sweep dir
            saved.append(folder / "multirun.yaml")
        if config.hydra.output_subdir is not None:
            saved.extend((folder / str(config.hydra.output_subdir)).glob("*.yaml"))
        for path in saved:
            if path.is_file():
                text = path.read_text()
                if mask_secrets(text) != text:
                    path.write_text(mask_secrets(text))
