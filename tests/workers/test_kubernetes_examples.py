"""examples/kubernetes: the StatefulSet's shares, the pipeline it runs, the Triton it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from panoptes.config.loader import parse_config
from panoptes.workers import Share

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "kubernetes"


def documents(name: str) -> dict[str, dict[str, Any]]:
    """The manifests of a file, by kind."""
    with (EXAMPLES / name).open() as file:
        return {doc["kind"]: doc for doc in yaml.safe_load_all(file)}


def test_every_camera_runs_on_exactly_one_pod() -> None:
    config = documents("configmap.yaml")["ConfigMap"]["data"]["pipeline.yaml"]
    pipeline = parse_config(yaml.safe_load(config), origin="configmap.yaml")
    statefulset = documents("panoptes.yaml")["StatefulSet"]
    replicas = statefulset["spec"]["replicas"]
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[:2] == ["run", "/etc/panoptes/pipeline.yaml"]
    assert args[args.index("--share") + 1] == "$(POD_INDEX)/$(SHARES)"
    assert args[args.index("--gpus") + 1] == "all"
    env = {item["name"]: item for item in container["env"]}
    assert int(env["SHARES"]["value"]) == replicas
    index_field = env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index_field == "metadata.labels['apps.kubernetes.io/pod-index']"

    cameras = len(pipeline.sources)
    shares = [Share(ordinal, replicas).indices(cameras) for ordinal in range(replicas)]
    assert sorted(i for share in shares for i in share) == list(range(cameras))
    assert all(share for share in shares)  # no pod idles


def test_the_pipeline_sends_inference_to_the_triton_service_and_events_to_kafka() -> None:
    config = documents("configmap.yaml")["ConfigMap"]["data"]["pipeline.yaml"]
    pipeline = parse_config(yaml.safe_load(config), origin="configmap.yaml")
    service = documents("triton.yaml")["Service"]
    ports = {port["name"]: port["port"] for port in service["spec"]["ports"]}
    detector = pipeline.infer[0]
    assert detector.backend == "triton"
    assert detector.url == f"{service['metadata']['name']}:{ports['grpc']}"
    kafka = next(sink for sink in pipeline.sinks if sink.type == "kafka")
    # The outbox lives on the pod's volume, so that events wait there across restarts.
    statefulset = documents("panoptes.yaml")["StatefulSet"]
    mounts = statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    state = next(mount for mount in mounts if mount["name"] == "state")
    assert kafka.outbox is not None and kafka.outbox.startswith(state["mountPath"] + "/")
    assert pipeline.http is not None and pipeline.http.port == 8080
    probe = statefulset["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"]["path"] == "/api/v1/health"
