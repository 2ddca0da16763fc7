"""The container tests: images built with podman (no registry, no network in a build), the compose stack up."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "containers: builds the images and runs the compose stack with podman")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/containers" in str(item.fspath):
            item.add_marker(pytest.mark.containers)
