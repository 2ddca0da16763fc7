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


class _StderrHandler(logging.Handler):
    """A stdlib handler that writes to the ``sys.stderr`` of the moment (see :class:`_StderrLogger`)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - a log line must never break the caller
            self.handleError(record)


_handler: _StderrHandler | None = None


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog, and route stdlib ``logging`` records (kafka-python's ``kafka`` logger above all)
    through the same renderer, from WARNING (or ``level`` when that is higher): one JSON object per line
    when logs are JSON."""
    global _configured, _handler
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_logger_factory,
        cache_logger_on_first_use=True,
    )
    handler = _StderrHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer]))
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)               # every stdlib logger (kafka-python's above all) at WARNING
    root.setLevel(logging.WARNING)
    # kafka-python's warnings reach its loggers' handlers (stream/clients.py watches them for failed SASL
    # logins); what is printed is cut at ``level`` when that is higher
    logging.getLogger("kafka").setLevel(logging.WARNING)
    handler.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    _handler = handler
    _configured = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
