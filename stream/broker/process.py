"""Start, stop and inspect the embedded single-node Kafka broker (KRaft, broker + controller in one JVM)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shlex
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from streamrec.stream import clients
from streamrec.stream.broker.provision import HERE, classpath, java_binary
from streamrec.stream.errors import BrokerError, ConfigError
from streamrec.stream.settings import Settings

READY_LINE = "Kafka Server started"


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    bootstrap: str
    pid: int | None
    data_dir: str
    note: str = ""


def _listener_properties(settings: Settings) -> dict[str, str]:
    """The client listener: PLAINTEXT, or ``security_protocol`` with TLS (``broker_ssl_keystore``, a PEM key +
    certificate chain) and/or SASL (``sasl_mechanism``; users from ``broker_sasl_users``). A secured broker
    talks to itself (inter-broker traffic) over a PLAINTEXT listener on an ephemeral loopback port."""
    host, port, cport = settings.broker_host, settings.broker_port, settings.controller_port
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return {"listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
                "advertised.listeners": f"PLAINTEXT://{host}:{port}",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"}
    props = {"listeners": f"{protocol}://{host}:{port},INTERNAL://127.0.0.1:0,CONTROLLER://{host}:{cport}",
             "advertised.listeners": f"{protocol}://{host}:{port},INTERNAL://127.0.0.1:0",
             "inter.broker.listener.name": "INTERNAL",
             "listener.security.protocol.map": f"{protocol}:{protocol},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"}
    if settings.tls:
        if not settings.broker_ssl_keystore:
            raise ConfigError(f"the embedded broker with STREAMREC_SECURITY_PROTOCOL={protocol} needs "
                              "STREAMREC_BROKER_SSL_KEYSTORE: a PEM file with its private key and certificate chain")
        props.update({"ssl.keystore.type": "PEM", "ssl.keystore.location": settings.broker_ssl_keystore,
                      "ssl.client.auth": "none"})
    if settings.sasl:
        users = settings.broker_users()
        if not users:
            raise ConfigError(f"the embedded broker with STREAMREC_SECURITY_PROTOCOL={protocol} needs "
                              "STREAMREC_BROKER_SASL_USERS (name:password,...)")
        mechanism = settings.sasl_mechanism
        prefix = f"listener.name.{protocol.lower()}.{mechanism.lower()}"
        if mechanism == "PLAIN":
            module = "org.apache.kafka.common.security.plain.PlainLoginModule required " + " ".join(
                f'user_{name}="{password}"' for name, password in users) + ";"
        else:
            module = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        # a failed login is answered and closed at once (the default waits 100 ms): the answer and the close
        # then reach the client together, the case stream/client_fixes.py makes kafka-python read correctly
        props.update({"sasl.enabled.mechanisms": mechanism, f"{prefix}.sasl.jaas.config": module,
                      "connection.failed.authentication.delay.ms": "0"})
    return props


def server_properties(settings: Settings) -> str:
    host, path = settings.broker_host, settings.broker_path
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{host}:{settings.controller_port}",
        **_listener_properties(settings),
        "controller.listener.names": "CONTROLLER",
        "log.dirs": str(path / "data"),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        # single node: every internal topic has one replica
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "6",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        # a small machine: few threads, no rebalance delay for a fresh group
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    return not cmdline.exists() or b"kafka.Kafka" in cmdline.read_bytes()


def _read_pid(path: Path) -> int | None:
    pidfile = path / "broker.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _log_tail(path: Path, lines: int = 25) -> str:
    chunks = []
    for name in ("server.log", "broker.out"):
        f = path / name
        if f.exists():
            chunks.extend(f.read_text(errors="replace").splitlines()[-lines:])
    return "\n".join(chunks[-lines:]) or "(the broker wrote no log)"


def status(settings: Settings) -> BrokerStatus:
    if not settings.embedded:
        return BrokerStatus(True, settings.bootstrap, None, "", "external cluster (STREAMREC_BOOTSTRAP_SERVERS)")
    path = settings.broker_path
    pid = _read_pid(path)
    return BrokerStatus(pid is not None, settings.bootstrap, pid, str(path))


def _cluster_id() -> str:
    while True:  # Kafka rejects ids that start with '-'
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _users_digest(settings: Settings) -> str:
    """What the SCRAM users given at format time were (a digest: no password is written in clear)."""
    if not (settings.sasl and settings.sasl_mechanism.startswith("SCRAM-")):
        return ""
    return hashlib.sha256(settings.broker_sasl_users.encode()).hexdigest()


def _format(settings: Settings, java: str, cp: str, props: Path) -> None:
    """Format the storage once. SCRAM users are created here (``--add-scram``), so they are fixed from then
    on: a later start with other users is refused rather than silently keeping the old ones."""
    marker = settings.broker_path / "scram-users.sha256"
    if (settings.broker_path / "data" / "meta.properties").exists():
        before = marker.read_text().strip() if marker.exists() else ""
        if before != _users_digest(settings):
            raise BrokerError(f"the embedded broker in {settings.broker_path} was formatted with other SCRAM users "
                              "(STREAMREC_BROKER_SASL_USERS); they are set at format time. Use the same users, or "
                              "stop the broker and delete that folder to start afresh.")
        return
    cmd = [java, "-cp", cp, "kafka.tools.StorageTool", "format", "--standalone", "-t", _cluster_id(),
           "-c", str(props)]
    if digest := _users_digest(settings):
        for name, password in settings.broker_users():
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                cmd += ["--add-scram", f'{mechanism}=[name={name},password="{password}"]']
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BrokerError(f"formatting the broker's storage failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
    if digest:
        marker.write_text(digest + "\n")
    else:
        marker.unlink(missing_ok=True)


def start(settings: Settings, quiet: bool = False) -> BrokerStatus:
    """Start the broker (provisioning it on first use) and wait until it answers admin requests."""
    if not settings.embedded:
        return status(settings)
    path = settings.broker_path
    if (pid := _read_pid(path)) is not None:
        return BrokerStatus(True, settings.bootstrap, pid, str(path), "already running")
    for port in (settings.broker_port, settings.controller_port):
        if not _port_free(settings.broker_host, port):
            raise BrokerError(f"port {settings.broker_host}:{port} is in use by another process. Stop it, or "
                              "choose other ports with STREAMREC_BROKER_PORT / STREAMREC_CONTROLLER_PORT "
                              "(or --port), or use that cluster with STREAMREC_BOOTSTRAP_SERVERS.")
    java, cp = java_binary(), classpath(settings, quiet=quiet)
    path.mkdir(parents=True, exist_ok=True)
    props = path / "server.properties"
    props.write_text(server_properties(settings))
    _format(settings, java, cp, props)
    log = path / "server.log"
    if log.exists():
        log.rename(path / "server.log.1")
    cmd = broker_command(settings, java, cp, props, path)
    with open(path / "broker.out", "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    (path / "broker.pid").write_text(str(proc.pid))
    _wait_ready(settings, proc, log)
    return BrokerStatus(True, settings.bootstrap, proc.pid, str(path), "started")


def broker_command(settings: Settings, java: str, cp: str, props: Path, path: Path) -> list[str]:
    """The broker's command line: heap, the JVM options of ``STREAMREC_BROKER_JVM_OPTS``, logging, main class."""
    return [java, f"-Xmx{settings.broker_heap}", "-Xms128m", *shlex.split(settings.broker_jvm_opts),
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={path}", "-cp", cp, "kafka.Kafka", str(props)]


def _wait_ready(settings: Settings, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + settings.broker_start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(f"the Kafka broker exited with code {proc.returncode} while starting. Log tail:\n"
                              + _log_tail(settings.broker_path))
        if log.exists() and READY_LINE in log.read_text(errors="replace") and _admin_ok(settings):
            return
        time.sleep(0.2)
    _kill(proc.pid, wait_s=5)
    raise BrokerError(f"the Kafka broker did not become ready within {settings.broker_start_timeout_s:.0f}s. "
                      "Log tail:\n" + _log_tail(settings.broker_path))


def _admin_ok(settings: Settings) -> bool:
    try:
        admin = clients.admin(settings, request_timeout_ms=3000)
    except Exception:  # noqa: BLE001 - readiness probe: any failure means not ready yet
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except Exception:  # noqa: BLE001 - readiness probe: any failure means not ready yet
        return False
    finally:
        admin.close()


def _kill(pid: int, wait_s: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and _pid_alive(pid):
        with contextlib.suppress(ChildProcessError):  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if _pid_alive(pid):
        os.killpg(pid, signal.SIGKILL)


def stop(settings: Settings, wait_s: float = 30.0) -> BrokerStatus:
    """Stop the broker (SIGTERM, then SIGKILL after ``wait_s``) and leave no process behind."""
    if not settings.embedded:
        return status(settings)
    path = settings.broker_path
    pid = _read_pid(path)
    if pid is None:
        return BrokerStatus(False, settings.bootstrap, None, str(path), "not running")
    _kill(pid, wait_s)
    (path / "broker.pid").unlink(missing_ok=True)
    return BrokerStatus(False, settings.bootstrap, pid, str(path), "stopped")
