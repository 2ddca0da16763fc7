"""Settings refuse bad values with one-line errors; security settings: validation, masking, client options;
the embedded broker's secured listener; kafka-python's log lines rendered like streamrec's own."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.errors import KafkaTimeoutError, SaslAuthenticationFailedError
from typer.testing import CliRunner

from streamrec.consumers.health import WorkerMetrics
from streamrec.models.errors import ConfigError
from streamrec.stream import clients, logs
from streamrec.stream import settings as settings_module
from streamrec.stream.broker.process import broker_command, server_properties
from streamrec.stream.settings import MASK, Settings

ROOT = Path(__file__).resolve().parents[2]


def refused(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("env", "says"), [
    ({"STREAMREC_LOG_LEVEL": "verbose"}, "STREAMREC_LOG_LEVEL='verbose' is not one of debug, info"),
    ({"STREAMREC_LOG_FORMAT": "xml"}, "STREAMREC_LOG_FORMAT='xml'"),
    ({"STREAMREC_METRICS_PORT": "99999"}, "STREAMREC_METRICS_PORT=99999 is not a port"),
    ({"STREAMREC_METRICS_PORT": "-1"}, "STREAMREC_METRICS_PORT=-1 is not a port"),
    ({"STREAMREC_USER_TTL_S": "nan"}, "STREAMREC_USER_TTL_S=nan: a finite number is needed"),
    ({"STREAMREC_USER_TTL_S": "-5"}, "STREAMREC_USER_TTL_S=-5.0 must not be negative"),
    ({"STREAMREC_BROKER_PORT": "-1"}, "STREAMREC_BROKER_PORT=-1 is not a port"),
    ({"STREAMREC_CONTROLLER_PORT": "70000"}, "STREAMREC_CONTROLLER_PORT=70000 is not a port"),
    ({"STREAMREC_BROKER_PORT": "9300", "STREAMREC_CONTROLLER_PORT": "9300"}, "both 9300"),
    ({"STREAMREC_MAX_USERS": "-1"}, "STREAMREC_MAX_USERS=-1 must be at least 1"),
    ({"STREAMREC_MAX_USERS": "0"}, "STREAMREC_MAX_USERS=0 must be at least 1"),
    ({"STREAMREC_COMPRESSION": "brotli"}, "STREAMREC_COMPRESSION='brotli' is not one of none, gzip, lz4"),
    ({"STREAMREC_RERANKER_MODEL": "xgboost"}, "STREAMREC_RERANKER_MODEL='xgboost' is not one of logreg, fm"),
    ({"STREAMREC_DRIFT_DETECTOR": "ddm"}, "STREAMREC_DRIFT_DETECTOR='ddm' is not one of none, adwin"),
    ({"STREAMREC_MF": "svd"}, "STREAMREC_MF='svd' is not one of none, rating, ranking"),
    ({"STREAMREC_GUARANTEE": "at-most-once"}, "STREAMREC_GUARANTEE='at-most-once'"),
    ({"STREAMREC_STATS_INTERVAL_S": "0"}, "STREAMREC_STATS_INTERVAL_S=0.0 must be positive"),
    ({"STREAMREC_EVENTS_RETENTION_MS": "0"}, "STREAMREC_EVENTS_RETENTION_MS=0: milliseconds, or -1"),
    ({"STREAMREC_METRICS_HOST": ""}, "STREAMREC_METRICS_HOST is empty"),
    ({"STREAMREC_TOP_N": "ten"}, "STREAMREC_TOP_N='ten' is not a valid int"),
    ({"STREAMREC_BROKER_JVM_OPTS": "-Dx='unclosed"}, "cannot be split into options (No closing quotation)"),
])
def test_bad_values_are_one_line_config_errors(env: dict[str, str], says: str) -> None:
    assert says in refused(env)


FLOATS = [f.name for f in dataclasses.fields(Settings) if f.type in (float, "float")]


@pytest.mark.parametrize("name", FLOATS)
@pytest.mark.parametrize("raw", ["nan", "inf", "-inf"])
def test_no_float_setting_takes_a_non_finite_number(name: str, raw: str) -> None:
    assert "finite" in refused({f"STREAMREC_{name.upper()}": raw})
    with pytest.raises(ConfigError, match="finite"):
        Settings().replace(**{name: float(raw)})


def test_the_defaults_and_edge_values_pass() -> None:
    assert len(FLOATS) >= 6
    s = Settings.from_env({"STREAMREC_LOG_LEVEL": "WARNING", "STREAMREC_METRICS_PORT": "65535",
                           "STREAMREC_USER_TTL_S": "0", "STREAMREC_COMPRESSION": "none",
                           "STREAMREC_EVENTS_RETENTION_MS": "-1", "STREAMREC_MF": "ranking"})
    assert s.metrics_port == 65535 and s.metrics_host == "127.0.0.1"


def test_the_settings_choices_are_the_engines() -> None:
    from streamrec.models.online.drift import DETECTORS
    from streamrec.models.online.layer import MF_PRESETS
    from streamrec.models.online.reranker import MODELS

    assert settings_module.RERANKER_MODELS == MODELS
    assert ("none", *DETECTORS) == settings_module.DRIFT_DETECTORS
    assert settings_module.MF_PRESETS == MF_PRESETS


def test_the_cli_prints_one_line_and_exits_2_for_a_bad_setting() -> None:
    env = {"PATH": "/usr/bin:/bin", "STREAMREC_LOG_LEVEL": "verbose", "HOME": str(Path.home())}
    done = subprocess.run([sys.executable, "-m", "streamrec.cli", "config"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: STREAMREC_LOG_LEVEL='verbose' is not one of debug, info, warning, error, critical"]


# --- security --------------------------------------------------------------------------------------------
@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def sasl_env(**extra: str) -> dict[str, str]:
    return {"STREAMREC_SECURITY_PROTOCOL": "SASL_SSL", "STREAMREC_SASL_MECHANISM": "SCRAM-SHA-512",
            "STREAMREC_SASL_USERNAME": "alice", "STREAMREC_SASL_PASSWORD": "s3cret-pw", **extra}


@pytest.mark.parametrize(("env", "says"), [
    ({"STREAMREC_SECURITY_PROTOCOL": "TLS"}, "STREAMREC_SECURITY_PROTOCOL='TLS' is not one of PLAINTEXT, SSL"),
    ({"STREAMREC_SECURITY_PROTOCOL": "SASL_SSL"}, "SASL_SSL needs STREAMREC_SASL_MECHANISM"),
    (sasl_env(STREAMREC_SASL_MECHANISM="GSSAPI"), "needs STREAMREC_SASL_MECHANISM, one of PLAIN, SCRAM-SHA-256"),
    (sasl_env(STREAMREC_SASL_USERNAME=""), "SASL_SSL needs STREAMREC_SASL_USERNAME"),
    (sasl_env(STREAMREC_SASL_PASSWORD=""), "needs STREAMREC_SASL_PASSWORD or STREAMREC_SASL_PASSWORD_FILE"),
    (sasl_env(STREAMREC_SASL_PASSWORD_FILE="/no/such/file"), "set one of STREAMREC_SASL_PASSWORD and"),  # noqa: S106
    (sasl_env(STREAMREC_SASL_PASSWORD="", STREAMREC_SASL_PASSWORD_FILE="/no/such/file"),  # noqa: S106
     "STREAMREC_SASL_PASSWORD_FILE=/no/such/file: no such file"),
    (sasl_env(STREAMREC_SSL_CAFILE="/no/ca.pem"), "STREAMREC_SSL_CAFILE=/no/ca.pem: no such file"),
    ({"STREAMREC_SASL_USERNAME": "alice"}, "STREAMREC_SASL_USERNAME is set but STREAMREC_SECURITY_PROTOCOL=PLAINTEXT"),
    ({"STREAMREC_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "STREAMREC_SASL_MECHANISM": "PLAIN",
      "STREAMREC_SASL_USERNAME": "a", "STREAMREC_SASL_PASSWORD": "p", "STREAMREC_SSL_CAFILE": "/x"},
     "STREAMREC_SSL_CAFILE is set but STREAMREC_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS"),
    (sasl_env(STREAMREC_BROKER_SASL_USERS="alice:ok,bob"), "STREAMREC_BROKER_SASL_USERS: each entry is"),
    (sasl_env(STREAMREC_BROKER_SASL_USERS='alice:a"b'), "STREAMREC_BROKER_SASL_USERS: each entry is"),
])
def test_security_combinations_are_checked(env: dict[str, str], says: str) -> None:
    message = refused(env)
    assert says in message
    assert "s3cret-pw" not in message


def test_ssl_key_without_certificate_is_refused(pem: Path) -> None:
    env = {"STREAMREC_SECURITY_PROTOCOL": "SSL", "STREAMREC_SSL_KEYFILE": str(pem)}
    assert "STREAMREC_SSL_KEYFILE is set without STREAMREC_SSL_CERTFILE" in refused(env)


def test_secrets_are_masked_in_repr_and_in_streamrec_config(pem: Path) -> None:
    env = sasl_env(STREAMREC_SSL_CAFILE=str(pem), STREAMREC_SSL_CERTFILE=str(pem), STREAMREC_SSL_KEYFILE=str(pem),
                   STREAMREC_SSL_KEY_PASSWORD="key-pw-42", STREAMREC_BROKER_SASL_USERS="alice:s3cret-pw")  # noqa: S106
    s = Settings.from_env(env)
    assert "s3cret-pw" not in repr(s) and "key-pw-42" not in repr(s) and "s3cret-pw" not in str(s)
    assert f"sasl_password='{MASK}'" in repr(s) and "sasl_username='alice'" in repr(s)
    assert s.redacted()["ssl_key_password"] == MASK and s.redacted()["sasl_password_file"] == ""
    from streamrec.cli import app

    for fmt in ("json", "env", "text"):
        result = CliRunner().invoke(app, ["config", "--format", fmt], env=env)
        assert result.exit_code == 0, result.output
        assert "s3cret-pw" not in result.output and "key-pw-42" not in result.output
        assert "SCRAM-SHA-512" in result.output
    shown = json.loads(CliRunner().invoke(app, ["config", "--format", "json"], env=env).output)
    assert shown["STREAMREC_SASL_PASSWORD"] == MASK and shown["STREAMREC_BROKER_SASL_USERS"] == MASK


def test_the_password_file_is_read_without_its_newline(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    s = Settings.from_env(sasl_env(STREAMREC_SASL_PASSWORD="", STREAMREC_SASL_PASSWORD_FILE=str(secret)))
    assert s.sasl_secret() == "from-a-file"
    config = clients.security_config(s)
    assert config == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                      "sasl_plain_username": "alice", "sasl_plain_password": "from-a-file",
                      "ssl_cafile": None, "ssl_certfile": None, "ssl_keyfile": None, "ssl_password": None}
    assert "from-a-file" not in repr(s)


def test_plaintext_clients_get_no_security_options() -> None:
    assert clients.security_config(Settings()) == {"security_protocol": "PLAINTEXT"}


def test_ssl_clients_get_their_files(pem: Path) -> None:
    s = Settings.from_env({"STREAMREC_SECURITY_PROTOCOL": "SSL", "STREAMREC_SSL_CAFILE": str(pem)})
    assert clients.security_config(s)["ssl_cafile"] == str(pem)
    assert "sasl_mechanism" not in clients.security_config(s)


def test_a_failed_login_becomes_one_line_naming_the_user() -> None:
    s = Settings.from_env(sasl_env(STREAMREC_BOOTSTRAP_SERVERS="k1:9093"))
    inner = SaslAuthenticationFailedError("SaslAuthenticationFailedError: Authentication failed: invalid credentials")
    try:
        try:
            raise inner
        except SaslAuthenticationFailedError as exc:
            raise KafkaTimeoutError("Unable to bootstrap") from exc
    except KafkaTimeoutError as outer:
        error = clients.auth_failure(s, outer)
    assert error is not None
    assert str(error) == ("authentication failed for user 'alice' on k1:9093 (SASL_SSL, SCRAM-SHA-512): "
                          "Authentication failed: invalid credentials")
    assert clients.auth_failure(s, KafkaTimeoutError("Unable to bootstrap")) is None


def test_a_failed_login_logged_by_kafka_python_is_remembered() -> None:
    s = Settings.from_env(sasl_env())
    before = clients.time.monotonic()
    logging.getLogger("kafka.net.manager").warning("Bootstrap connection to %s failed: %s (backoff %.2f secs)",
                                                   "bootstrap-0", SaslAuthenticationFailedError("bad proof"), 0.1)
    error = clients.auth_failure(s, KafkaTimeoutError("Unable to bootstrap"), since=before)
    assert error is not None and str(error).endswith(": bad proof")
    assert clients.auth_failure(s, KafkaTimeoutError("x"), since=clients.time.monotonic() + 1) is None


# --- the embedded broker's secured listener -----------------------------------------------------------------
def test_a_plaintext_broker_keeps_its_listeners(tmp_path: Path) -> None:
    props = server_properties(Settings(broker_dir=str(tmp_path)))
    assert "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n" in props
    assert "sasl" not in props and "ssl" not in props


def test_a_sasl_ssl_broker_has_a_pem_keystore_scram_and_a_loopback_internal_listener(pem: Path) -> None:
    s = Settings.from_env(sasl_env(STREAMREC_BROKER_SSL_KEYSTORE=str(pem),
                                   STREAMREC_BROKER_SASL_USERS="alice:s3cret-pw"))
    props = dict(line.split("=", 1) for line in server_properties(s).splitlines())
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9092,INTERNAL://127.0.0.1:0,CONTROLLER://127.0.0.1:9093"
    assert props["inter.broker.listener.name"] == "INTERNAL"
    assert props["ssl.keystore.type"] == "PEM" and props["ssl.keystore.location"] == str(pem)
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert "ScramLoginModule" in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert "s3cret-pw" not in server_properties(s)   # SCRAM users live in the metadata log, made at format time


def test_a_plain_broker_lists_its_users_and_a_tls_one_needs_a_keystore(pem: Path) -> None:
    s = Settings.from_env(sasl_env(STREAMREC_SASL_MECHANISM="PLAIN", STREAMREC_BROKER_SSL_KEYSTORE=str(pem),
                                   STREAMREC_BROKER_SASL_USERS="alice:s3cret-pw,bob:pw2"))
    assert 'user_alice="s3cret-pw" user_bob="pw2";' in server_properties(s)
    with pytest.raises(ConfigError, match="needs STREAMREC_BROKER_SSL_KEYSTORE"):
        server_properties(s.replace(broker_ssl_keystore=""))
    with pytest.raises(ConfigError, match="needs STREAMREC_BROKER_SASL_USERS"):
        server_properties(s.replace(broker_sasl_users=""))


# --- the metrics endpoint ---------------------------------------------------------------------------------
def test_a_metrics_port_in_use_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            WorkerMetrics().serve(port, "127.0.0.1")
    assert str(info.value) == (f"metrics endpoint 127.0.0.1:{port} is in use by another process; choose another "
                               "STREAMREC_METRICS_PORT (--metrics-port) or STREAMREC_METRICS_HOST")


def test_the_images_bind_the_metrics_endpoint_on_every_interface() -> None:
    from tests.unit.test_docker_static import dockerfile, env_of, services

    assert "STREAMREC_METRICS_HOST=0.0.0.0" in " ".join(i.args for i in dockerfile().stage("worker").all("ENV"))
    assert env_of(services()["worker"])["STREAMREC_METRICS_HOST"] == "0.0.0.0"  # noqa: S104


# --- kafka-python's log lines -------------------------------------------------------------------------------
@pytest.fixture
def json_logs() -> Iterator[None]:
    logs.configure("info", "json")
    try:
        yield
    finally:
        if logs._handler is not None:
            logging.getLogger().removeHandler(logs._handler)
            logs._handler = None


def test_kafka_python_log_lines_are_json_when_logs_are(json_logs: None, capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("kafka.net.manager").warning("Bootstrap connection to %s failed: %s", "bootstrap-0", "refused")
    logging.getLogger("kafka.conn").info("an info line that stays out")
    lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    assert len(lines) == 1
    assert lines[0]["event"] == "Bootstrap connection to bootstrap-0 failed: refused"
    assert lines[0]["level"] == "warning" and lines[0]["logger"] == "kafka.net.manager" and "timestamp" in lines[0]


def test_a_higher_log_level_also_quiets_kafka_python(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("error", "json")
    try:
        logging.getLogger("kafka.net.manager").warning("a warning below the level")
        logging.getLogger("kafka.net.manager").error("an error")
        lines = [json.loads(line)["event"] for line in capsys.readouterr().err.strip().splitlines()]
        assert lines == ["an error"]
    finally:
        logging.getLogger().removeHandler(logs._handler)  # type: ignore[arg-type]
        logs._handler = None


def test_the_broker_command_carries_the_jvm_options_setting() -> None:
    def options(s: Settings) -> list[str]:
        cmd = broker_command(s, "java", "cp", Path("p"), Path("d"))
        return cmd[cmd.index("-Xms128m") + 1:cmd.index("-Djava.awt.headless=true")]

    assert options(Settings()) == ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:TieredStopAtLevel=1"]
    s = Settings.from_env({"STREAMREC_BROKER_JVM_OPTS": "-XX:+UseSerialGC '-Dname=a b'"})
    assert options(s) == ["-XX:+UseSerialGC", "-Dname=a b"]
    assert options(s.replace(broker_jvm_opts="")) == []
