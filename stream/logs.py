"""structlog set-up, done once at each entry point: JSON lines when not on a terminal, console otherwise."""

from __future__ import annotations

import logging
import sys

import structlog

_configured = False


class _StderrLogger:
    """Writes each line to whatever ``sys.stderr`` is at that moment (not the stream current when logging
    was configured), so a replaced or closed stream never breaks logging."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _logger_factory(*_args: object) -> _StderrLogger:
    return _StderrLogger()


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog (and route kafka-python's stdlib logging at WARNING through it)."""
    global _configured
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_logger_factory,
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    _configured = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
