"""The live progress line: rewritten in place on a terminal, plain lines in a log."""

from __future__ import annotations

import io

from src.progress import CLEAR_LINE, LiveLine


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_line_is_rewritten_and_notes_stay_above_it():
    screen = Terminal()
    line = LiveLine(screen)
    line.show("trial 1/3 a")
    line.note("trial 1 failed: boom")
    line.show("trial 2/3 b")
    line.close()
    assert screen.getvalue() == (
        f"{CLEAR_LINE}trial 1/3 a{CLEAR_LINE}trial 1 failed: boom\ntrial 1/3 a"
        f"{CLEAR_LINE}trial 2/3 b\n"
    )


def test_in_a_log_every_update_is_a_line_of_its_own():
    log = io.StringIO()
    line = LiveLine(log)
    line.show("trial 1/3 a")
    line.note("trial 1 failed: boom")
    line.show("trial 2/3 b")
    line.close()
    assert log.getvalue() == "trial 1/3 a\ntrial 1 failed: boom\ntrial 2/3 b\n"
