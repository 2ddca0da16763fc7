"""``streamrec broker start|stop|status`` and ``streamrec topics create|list``."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from streamrec.stream import broker
from streamrec.stream.broker.provision import classpath, java_binary
from streamrec.stream.settings import Settings
from streamrec.stream.topics import admin_client, ensure_topics

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    broker_app = typer.Typer(help="The embedded single-node Apache Kafka broker (KRaft) on 127.0.0.1.",
                             no_args_is_help=True)
    topics_app = typer.Typer(help="Create and list streamrec's topics.", no_args_is_help=True)
    app.add_typer(broker_app, name="broker")
    app.add_typer(topics_app, name="topics")

    @broker_app.command("start")
    def start(ctx: typer.Context,
              port: int = typer.Option(None, help="Broker port (STREAMREC_BROKER_PORT, default 9092)."),
              controller_port: int = typer.Option(None, help="Controller port (STREAMREC_CONTROLLER_PORT)."),
              kafka_version: str = typer.Option(None, help="Apache Kafka version (STREAMREC_KAFKA_VERSION)."),
              jvm_opts: str = typer.Option(None, help="The broker's JVM options (STREAMREC_BROKER_JVM_OPTS; "
                                                      "default G1 and the C1 compiler only)."),
              ) -> None:
        """Provision (once) and start the broker; prints the bootstrap address when it is ready."""
        s: Settings = ctx.obj.replace(broker_port=port, controller_port=controller_port,
                                      kafka_version=kafka_version, broker_jvm_opts=jvm_opts)
        if not s.embedded:
            console.print(f"STREAMREC_BOOTSTRAP_SERVERS={s.bootstrap}: using that cluster, nothing to start.")
            return
        with console.status(f"starting Kafka {s.kafka_version} on {s.bootstrap}..."):
            st = broker.start(s)
        console.print(f"broker {st.note} (pid {st.pid}, data in {st.data_dir})")
        print(st.bootstrap)

    @broker_app.command("provision")
    def provision_cmd(ctx: typer.Context) -> None:
        """Resolve the broker's jars from Maven Central into the cache (offline afterwards); no start."""
        s: Settings = ctx.obj
        if not s.embedded:
            console.print("STREAMREC_BOOTSTRAP_SERVERS is set: nothing to provision.")
            return
        java_binary()
        console.print(f"Kafka {s.kafka_version} jars: {classpath(s)}")

    @broker_app.command("stop")
    def stop(ctx: typer.Context, port: int = typer.Option(None, help="Broker port.")) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 30 s)."""
        st = broker.stop(ctx.obj.replace(broker_port=port))
        console.print(f"broker {st.note or 'not running'}")

    @broker_app.command("status")
    def status(ctx: typer.Context, port: int = typer.Option(None, help="Broker port.")) -> None:
        """Is the broker running? Exit code 0 when it is, 1 when not."""
        st = broker.status(ctx.obj.replace(broker_port=port))
        print(f"{'running' if st.running else 'stopped'} {st.bootstrap} pid={st.pid} {st.note}".strip())
        raise typer.Exit(0 if st.running else 1)

    @topics_app.command("create")
    def create(ctx: typer.Context,
               events_partitions: int = typer.Option(None, help="STREAMREC_EVENTS_PARTITIONS (default 6)."),
               group: str = typer.Option(None, help="Worker group whose topics to create: <group>.state and the "
                                                    "item plane's <group>.item-deltas, <group>.items.state and "
                                                    "<group>.item-results."),
               ) -> None:
        """Create events, recommendations, events.dlq, model-updates, <group>.state, items and the item plane's
        <group>.item-deltas, <group>.items.state, <group>.item-results (STREAMREC_ITEM_DELTAS_TOPIC /
        STREAMREC_ITEM_RESULTS_TOPIC win when set). Idempotent."""
        s: Settings = ctx.obj.replace(events_partitions=events_partitions, group=group)
        for name, what in ensure_topics(s).items():
            console.print(f"{name}: {what}")

    @topics_app.command("list")
    def list_topics(ctx: typer.Context) -> None:
        """List topics with their partition counts."""
        admin = admin_client(ctx.obj)
        try:
            names = sorted(t for t in admin.list_topics() if not t.startswith("__"))
            table = Table("topic", "partitions")
            for d in admin.describe_topics(names):
                table.add_row(d["name"], str(len(d["partitions"])))
        finally:
            admin.close()
        Console().print(table)


def register_config(app: typer.Typer) -> None:
    @app.command("config")
    def config_cmd(ctx: typer.Context, fmt: str = typer.Option("text", "--format", help="text | json | env")) -> None:
        """Show the effective settings and the STREAMREC_* variable behind each (secrets masked)."""
        import json

        s: Settings = ctx.obj
        values = {f"STREAMREC_{name.upper()}": value for name, value in s.redacted().items()}
        if fmt == "json":
            print(json.dumps(values, indent=2))
        elif fmt == "env":
            for k, v in values.items():
                print(f"{k}={v}")
        else:
            table = Table("variable", "value")
            for k, v in values.items():
                table.add_row(k, str(v))
            Console().print(table)
