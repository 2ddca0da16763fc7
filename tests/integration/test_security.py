"""A secured cluster: a second embedded broker (the project's own broker code) with a SASL_SSL listener,
SCRAM-SHA-256 users created at format time and a certificate signed by a CA this test makes. A worker with
the right credentials serves lists end to end over it; one with a wrong password stops with one clear line.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamrec.e2e import Subscriber, broker_ports, settings_env
from streamrec.producers.replay import replay
from streamrec.stream import broker, clients
from streamrec.stream.errors import BrokerError
from streamrec.stream.settings import Settings
from streamrec.stream.topics import ensure_topics, topic_specs
from tests.integration.workers import ThreadWorker, ev


def make_certificates(folder: Path) -> tuple[Path, Path]:
    """A self-signed CA and a broker certificate for 127.0.0.1 signed by it (openssl); returns the CA file
    and the broker's PEM keystore (private key + certificate chain)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make the test's certificates")

    def run(*args: str) -> None:
        done = subprocess.run([openssl, *args], cwd=folder, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-2000:]

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=streamrec test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
        "-subj", "/CN=127.0.0.1")
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                                    "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "broker.pem", "-days", "2", "-extfile", "ext.cnf")
    keystore = folder / "keystore.pem"
    keystore.write_text((folder / "broker.key").read_text() + (folder / "broker.pem").read_text())
    return folder / "ca.pem", keystore


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a running SASL_SSL broker, with alice's credentials; topics created over SASL_SSL."""
    folder = tmp_path_factory.mktemp("secured")
    cafile, keystore = make_certificates(folder)
    password = secrets.token_urlsafe(12)
    env = {k: v for k, v in os.environ.items()
           if k in ("STREAMREC_HOME", "STREAMREC_KAFKA_HOME", "STREAMREC_KAFKA_VERSION")}
    s = Settings.from_env(env).replace(
        **broker_ports(), broker_dir=str(folder / "broker"),
        broker_start_timeout_s=90.0, security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256",
        sasl_username="alice", sasl_password=password, ssl_cafile=str(cafile), broker_ssl_keystore=str(keystore),
        broker_sasl_users=f"alice:{password},bob:{secrets.token_urlsafe(12)}",
        events_topic="events-sec", recommendations_topic="recs-sec", dlq_topic="dlq-sec",
        model_topic="models-sec", group="g-sec", events_partitions=2, recommendations_partitions=2)
    broker.start(s, quiet=True)
    try:
        props = (folder / "broker" / "server.properties").read_text()
        assert f"SASL_SSL://127.0.0.1:{s.broker_port}" in props and password not in props  # SCRAM: no secret
        ensure_topics(s, topic_specs(s))
        yield s
    finally:
        broker.stop(s)


def test_a_worker_with_the_right_credentials_serves_lists_over_sasl_ssl(secured: Settings) -> None:
    sub = Subscriber(secured)
    sub.start()
    assert sub.ready.wait(20)
    worker = ThreadWorker(secured, model_sync=False)
    try:
        worker.wait_ready()
        clicks = [ev(k, "carol", f"i{k % 7}") for k in range(12)]
        replay(clicks, secured)
        assert sub.wait_for(lambda a: any(x.trigger_event_id == clicks[-1].event_id for x in a), 30)
        lists = [a for a in sub.snapshot() if a.user_id == "carol"]
        assert lists and lists[-1].value["items"], lists[-1:]
    finally:
        worker.stop()
        sub.stop()


def test_a_wrong_password_is_one_clear_error(secured: Settings) -> None:
    wrong = secured.replace(sasl_password="not-" + secured.sasl_password)
    with pytest.raises(BrokerError, match=r"authentication failed for user 'alice' on 127\.0\.0\.1:\d+") as info:
        clients.consumer(wrong, wrong.events_topic, group="g-wrong")
    assert wrong.sasl_password not in str(info.value)
    # the worker command: its last line is that error, exit code 2, no traceback, no password anywhere
    env = settings_env(wrong)
    done = subprocess.run([sys.executable, "-m", "streamrec.cli", "worker", "--no-model-sync"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-3000:]
    assert lines[-1].startswith("error: authentication failed for user 'alice' on "), lines[-3:]
    assert "Traceback" not in done.stderr and wrong.sasl_password not in done.stderr + done.stdout
