"""The embedded default: a single-node Apache Kafka broker (KRaft combined mode) on 127.0.0.1."""

from streamrec.stream.broker.process import BrokerStatus, start, status, stop

__all__ = ["BrokerStatus", "start", "status", "stop"]
