"""The ``streamrec`` command line. Global options become the process's one Settings object."""

from __future__ import annotations

import os
import sys

# One BLAS/OpenMP thread unless told otherwise, set before numpy loads: the worker's small matrix products
# are faster single-threaded, and idle BLAS threads spinning on the second core slow faiss and Kafka I/O.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import typer  # noqa: E402

from streamrec import (  # noqa: E402
    bench,
    cmd_broker,
    cmd_catalog,
    cmd_data,
    cmd_evaluate,
    cmd_items,
    cmd_model,
    cmd_serve,
    cmd_worker,
    report,
)
from streamrec.models.errors import StreamrecError  # noqa: E402
from streamrec.stream.logs import configure  # noqa: E402
from streamrec.stream.settings import Settings  # noqa: E402

app = typer.Typer(help="streamrec: a streaming real-time recommender on Kafka.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def root(
    ctx: typer.Context,
    bootstrap_servers: str = typer.Option(None, "--bootstrap-servers", "-b",
                                          help="Kafka cluster to use (STREAMREC_BOOTSTRAP_SERVERS); "
                                               "unset: the embedded broker."),
    log_level: str = typer.Option(None, help="debug | info | warning (STREAMREC_LOG_LEVEL)."),
    log_format: str = typer.Option(None, help="auto | json | console (STREAMREC_LOG_FORMAT)."),
) -> None:
    settings = Settings.from_env(bootstrap_servers=bootstrap_servers, log_level=log_level, log_format=log_format)
    configure(settings.log_level, settings.log_format)
    ctx.obj = settings


cmd_broker.register(app)
cmd_broker.register_config(app)
cmd_data.register(app)
cmd_data.register_replay(app)
cmd_data.register_demo(app)
cmd_catalog.register(app)
cmd_model.register(app)
cmd_worker.register(app)
cmd_items.register(app)
cmd_serve.register(app)
cmd_evaluate.register(app)
report.register(app)
bench.register(app)


def main() -> None:
    try:
        app()
    except StreamrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
