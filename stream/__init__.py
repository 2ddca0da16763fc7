"""Kafka plumbing shared by every process: settings, schemas and serde, topics, clients, broker, logging."""

__all__ = ["broker", "clients", "errors", "logs", "modelbus", "records", "serde", "settings", "tail", "topics"]
