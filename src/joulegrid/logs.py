"""joulegrid's diagnostics: one ``logging`` logger per module (``logging.getLogger(__name__)``, all under
``joulegrid``), shown on stderr as ``joulegrid: <message>``, the form users, job logs and tests know.

``configure()`` is called once by each entry point (the ``joulegrid`` command, the Snakefile's set-up);
a library caller (a notebook, a test) that does not call it sees warnings through Python's last-resort
handler. A command's own output (a table, a plan, a report's path) is printed, not logged.
"""

from __future__ import annotations

import logging
import sys

PREFIX = "joulegrid: "
LOGGER = "joulegrid"


class _Stderr(logging.Handler):
    """Writes to the sys.stderr of the moment it emits (pytest's capture, a redirected stream): a handler
    holding the stream it was created with would write to a closed one."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging.Handler's contract: report, never raise
            self.handleError(record)


def configure(level: int = logging.INFO) -> logging.Logger:
    """Show joulegrid's messages of ``level`` and above on stderr as 'joulegrid: <message>' (once per process)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter(PREFIX + "%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # not twice through a handler the host program (Snakemake) set on the root
    return logger
