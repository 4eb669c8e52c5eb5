"""Broker fixtures for the event tests: real servers on free local ports, stopped at teardown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from event_brokers import Server, kafka_mock_cluster, mosquitto_server, redis_server


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Server]:
    server = mosquitto_server(tmp_path / "mosquitto")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = redis_server(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kafka() -> Iterator[str]:
    """Bootstrap servers of librdkafka's mock cluster (no Kafka broker is installed here)."""
    pytest.importorskip("confluent_kafka")
    holder: Any
    holder, bootstrap = kafka_mock_cluster()
    yield bootstrap
    del holder
