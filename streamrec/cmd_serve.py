"""``streamrec serve``: the HTTP read API, event ingest and live dashboard (``consumers/serve/``)."""

from __future__ import annotations

import typer

from streamrec.stream.settings import Settings


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        ctx: typer.Context,
        port: int = typer.Option(None, "--port", help="Port to listen on (STREAMREC_SERVE_PORT, default 8080; "
                                                      "0: a free one)."),
        host: str = typer.Option(None, "--host", help="Address to bind (STREAMREC_SERVE_HOST, default 127.0.0.1; "
                                                      "0.0.0.0 for every interface)."),
        group: str = typer.Option(None, "--group", help="The worker group whose lag the dashboard shows "
                                                        "(STREAMREC_GROUP)."),
    ) -> None:
        """Serve the latest list per user (GET /v1/users/{user}/recommendations), take events
        (POST /v1/events), and show a live dashboard at /dashboard/. Ctrl-C or SIGTERM stops it."""
        from streamrec.consumers.serve.server import run

        s: Settings = ctx.obj.replace(serve_port=port, serve_host=host, group=group)
        run(s, echo=typer.echo)
