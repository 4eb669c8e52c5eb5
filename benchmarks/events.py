"""Event throughput: the message converter alone, the outbox alone, and each broker end to end.

Measured in one run, on the same synthetic batches (``--streams`` frames per batch, each with
``--objects`` tracked people):
- converter: events per second through ``EventConverter.convert`` for each payload schema, in
  ``objects`` mode (one event per object) and, where the schema has it, ``frames`` mode;
- outbox: events per second stored by ``Outbox.put`` (one SQLite transaction per batch), the
  converter's output given;
- end to end, per broker: events per second from the first ``process`` of a broker sink until
  its outbox is empty again (conversion, outbox, sender, the broker's acknowledgements), with
  real local servers: mosquitto (QoS 1, PUBACK), redis-server (XADD replies) and, as no Kafka
  broker is installed here, librdkafka's mock cluster (a Kafka protocol server inside the
  client library, reached over TCP, acknowledging like a one-broker cluster); also the rate of
  ``process`` alone, the time the pipeline thread spends in the sink;
- ratios in the same run: end to end over converter alone, for the same payload.

Each figure is the median of ``--runs`` runs (default 5) after one warm-up run.

Run: ``.venv/bin/python benchmarks/events.py``; writes ``benchmarks/results/events.json``.
Needs mosquitto and redis-server (``make system-deps``) and the ``events`` extra.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from panoptes import Bus
from panoptes.config.schema import SinkConfig
from panoptes.core.element import BuildContext
from panoptes.core.frame import Batch, Frame
from panoptes.core.registry import load_kind
from panoptes.events import EventConverter, Outbox, OutgoingEvent

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "events.json"


def make_batches(count: int, streams: int, objects: int) -> list[Batch]:
    """``count`` batches of one frame per stream, ``objects`` tracked people in each frame."""
    out = []
    for n in range(count):
        frames = []
        for source_id in range(streams):
            frame = Frame(
                source_id=source_id,
                source_name=f"cam{source_id}",
                frame_num=n,
                pts_s=n / 30,
                capture_time_s=time.time(),
                size_wh=(1920, 1080),
                image=np.zeros((4, 4, 3), np.uint8),
            )
            x = np.arange(objects, dtype=np.float32) * 100 + n % 50
            xyxy = np.stack([x, x + 20.5, x + 80.25, x + 260.75], axis=1)
            frame.meta.objects.add(
                xyxy,
                np.linspace(0.5, 0.95, objects),
                np.zeros(objects, np.int32),
                ["person"] * objects,
                track_id=np.arange(objects) + 1,
            )
            frames.append(frame)
        out.append(Batch(frames, batch_num=n))
    return out


def median_rate(measure: Callable[[], tuple[int, float]], runs: int) -> dict[str, Any]:
    """Events per second of ``measure`` (which returns events and seconds): one warm-up run,
    then ``runs`` timed ones."""
    measure()
    rates = []
    for _ in range(runs):
        events, seconds = measure()
        rates.append(events / seconds)
    return {"events_per_s": round(statistics.median(rates)), "runs": [round(r) for r in rates]}


def converter_rate(batches: list[Batch], payload: str, mode: str, runs: int) -> dict[str, Any]:
    def measure() -> tuple[int, float]:
        converter = EventConverter(payload, mode)
        began = time.perf_counter()
        events = sum(len(converter.convert(batch)) for batch in batches)
        return events, time.perf_counter() - began

    return median_rate(measure, runs)


def outbox_rate(batches: list[Batch], folder: Path, runs: int) -> dict[str, Any]:
    converter = EventConverter()
    rows = [
        [
            OutgoingEvent("events", m.source_name, m.event_id, m.payload)
            for m in converter.convert(b)
        ]
        for b in batches
    ]
    counter = iter(range(10**6))

    def measure() -> tuple[int, float]:
        outbox = Outbox(folder / f"outbox-{next(counter)}.sqlite")
        try:
            began = time.perf_counter()
            for events in rows:
                outbox.put(events)
            return sum(len(events) for events in rows), time.perf_counter() - began
        finally:
            outbox.close()

    return median_rate(measure, runs)


def broker_rate(
    kind: str, props: dict[str, Any], batches: list[Batch], folder: Path, runs: int
) -> dict[str, Any]:
    """End to end and ``process``-only rates of a broker sink."""
    counter = iter(range(10**6))
    process_rates: list[float] = []

    def measure() -> tuple[int, float]:
        bus = Bus()
        properties = TypeAdapter(SinkConfig).validate_python(
            {"type": kind, "outbox": str(folder / f"{kind}-{next(counter)}.sqlite"), **props}
        )
        sink = load_kind(kind)(properties, name=kind, context=BuildContext(bus, folder))
        sink.build()
        try:
            began = time.perf_counter()
            for batch in batches:
                sink.process(batch)
            processed = time.perf_counter()
            if not sink.sender.wait_empty(120):
                raise RuntimeError(f"{kind}: the outbox did not empty: {list(bus.history)}")
            ended = time.perf_counter()
            events = sink.sender.delivered
            if bus.errors() or events == 0:
                raise RuntimeError(f"{kind}: {[str(m) for m in bus.history]}")
            process_rates.append(events / (processed - began))
            return events, ended - began
        finally:
            sink.close()

    result = median_rate(measure, runs)
    result["process_events_per_s"] = round(statistics.median(process_rates[1:]))
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def server(command: list[str], port: int) -> Iterator[None]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    batches = make_batches(args.batches, args.streams, args.objects)
    events = args.batches * args.streams * args.objects
    print(f"{args.batches} batches of {args.streams} frames x {args.objects} objects", flush=True)

    converter = {
        f"{payload}/{mode}": converter_rate(batches, payload, mode, args.runs)
        for payload, mode in [
            ("panoptes", "objects"),
            ("deepstream-full", "objects"),
            ("deepstream-minimal", "objects"),
            ("panoptes", "frames"),
            ("deepstream-minimal", "frames"),
        ]
    }
    for name, figures in converter.items():
        print(f"converter {name:<28} {figures['events_per_s']:>9} events/s", flush=True)

    brokers: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        outbox = outbox_rate(batches, folder, args.runs)
        print(f"outbox put {outbox['events_per_s']:>30} events/s", flush=True)

        mosquitto = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
        redis_server = shutil.which("redis-server")
        if mosquitto is None or redis_server is None:
            sys.exit("mosquitto and redis-server are needed: make system-deps")
        mqtt_port, redis_port = free_port(), free_port()
        (folder / "mosquitto.conf").write_text(
            f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        from confluent_kafka import Producer

        holder = Producer({"test.mock.num.brokers": 1, "logger": logging.getLogger("mock")})
        kafka = ",".join(
            f"{b.host}:{b.port}" for b in holder.list_topics(timeout=10).brokers.values()
        )
        redis_command = [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1"]
        redis_command += ["--save", "", "--appendonly", "no", "--dir", tmp]
        with (
            server([mosquitto, "-c", str(folder / "mosquitto.conf")], mqtt_port),
            server(redis_command, redis_port),
        ):
            settings: dict[str, dict[str, Any]] = {
                "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
                "redis": {"url": f"redis://127.0.0.1:{redis_port}/0", "maxlen": 100_000},
                "kafka": {"brokers": kafka},
            }
            for kind, props in settings.items():
                brokers[kind] = broker_rate(kind, props, batches, folder, args.runs)
                brokers[kind]["end_to_end_over_converter"] = round(
                    brokers[kind]["events_per_s"] / converter["panoptes/objects"]["events_per_s"],
                    3,
                )
                print(
                    f"{kind:<6} end to end {brokers[kind]['events_per_s']:>8} events/s, "
                    f"process alone {brokers[kind]['process_events_per_s']:>8} events/s",
                    flush=True,
                )
        del holder

    result = {
        "benchmark": "events",
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
        },
        "libraries": {name: version(name) for name in ("paho-mqtt", "confluent-kafka", "redis")},
        "brokers": {
            "mqtt": subprocess.run(
                [mosquitto, "-h"], capture_output=True, text=True, check=False
            ).stdout.splitlines()[0],
            "redis": subprocess.run(
                [redis_server, "--version"], capture_output=True, text=True, check=False
            ).stdout.strip(),
            "kafka": "librdkafka mock cluster (one broker), librdkafka "
            + __import__("confluent_kafka").libversion()[0],
        },
        "inputs": {
            "batches": args.batches,
            "frames_per_batch": args.streams,
            "objects_per_frame": args.objects,
            "events_per_run_objects_mode": events,
            "runs": args.runs,
            "warm_up_runs": 1,
        },
        "converter": {
            "note": "events per second of EventConverter.convert; an event is one message: "
            "one object in objects mode, one frame with its objects in frames mode",
            **converter,
        },
        "outbox_put": outbox,
        "end_to_end": {
            "payload": "panoptes",
            "mode": "objects",
            "note": "first process() to outbox empty: conversion, outbox, sender, broker "
            "acknowledgements (MQTT QoS 1 PUBACK, Redis XADD reply, Kafka delivery report)",
            **brokers,
        },
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
