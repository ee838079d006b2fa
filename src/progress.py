"""Progress of long commands on stderr: one live line, rewritten in place with a carriage return
when stderr is a terminal; plain lines, one per update, when it is a file or a pipe (logs, CI)."""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

CLEAR_LINE = "\r\033[K"


class LiveLine:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.live = self.stream.isatty()
        self.current = ""

    def show(self, text: str) -> None:
        """Replace the live line with `text` (cut to the terminal's width)."""
        if not self.live:
            print(text, file=self.stream, flush=True)
            return
        self.current = text[: shutil.get_terminal_size().columns - 1]
        self.stream.write(CLEAR_LINE + self.current)
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line that stays (a failure, a warning), printed above the live line."""
        if not self.live:
            print(text, file=self.stream, flush=True)
            return
        self.stream.write(f"{CLEAR_LINE}{text}\n{self.current}")
        self.stream.flush()

    def close(self) -> None:
        """End the live line, so that what is printed next starts on a line of its own."""
        if self.live and self.current:
            self.stream.write("\n")
            self.stream.flush()
        self.current = ""
