"""serving/: the TF Serving configs parse with TF Serving's messages, and the compose file,
the Kubernetes manifests and the configs agree on paths, ports, flags and image."""

from __future__ import annotations

import argparse
import os
import re

import pytest
import yaml

from kvid.serving import configs, metrics
from kvid.serving.server import configure_serve_parser

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "serving")


def path(name):
    return os.path.join(ROOT, name)


@pytest.fixture(scope="module")
def compose():
    with open(path("docker-compose.yml")) as f:
        return yaml.safe_load(f)["services"]["tfserving"]


@pytest.fixture(scope="module")
def k8s():
    with open(path("k8s/kvid-serving.yaml")) as f:
        docs = {d["kind"]: d for d in yaml.safe_load_all(f)}
    return docs["Deployment"], docs["Service"]


def flags(argv) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in argv)


def test_models_config_parses_as_model_server_config():
    config = configs.read_model_server_config(path("models.config"))
    (model,) = config.model_config_list.config
    assert model.name == "kvid" and model.model_platform == "tensorflow"
    assert model.base_path == "/models/kvid"
    assert model.model_version_policy.latest.num_versions == 2
    assert dict(model.version_labels) == {"stable": 1, "canary": 2}


def test_batching_parameters_are_valid_for_tf_serving():
    params = configs.read_batching_parameters(path("batching_parameters.txt"))
    sizes = list(params.allowed_batch_sizes)
    assert sizes == sorted(sizes) and sizes[-1] == params.max_batch_size.value  # TF's rule
    assert 0 < params.batch_timeout_micros.value <= 20_000  # clips: short waits


def test_monitoring_config_enables_prometheus(k8s):
    monitoring = configs.read_monitoring_config(path("monitoring.config"))
    assert monitoring.prometheus_config.enable
    annotations = k8s[0]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == monitoring.prometheus_config.path
    assert metrics.metrics_path(monitoring) == monitoring.prometheus_config.path  # kvid serve
    assert annotations["prometheus.io/port"] == "8501"


def test_compose_runs_a_pinned_gpu_image_with_reserved_gpu_and_ports(compose):
    assert re.fullmatch(r"tensorflow/serving:\d+\.\d+\.\d+-gpu", compose["image"])
    device = compose["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert compose["ports"] == ["8500:8500", "8501:8501"]
    f = flags(compose["command"])
    assert (f["port"], f["rest_api_port"]) == ("8500", "8501")
    assert f["enable_batching"] == f["enable_model_warmup"] == "true"


def test_every_config_flag_points_at_a_mounted_file_and_base_paths_are_mounted(compose):
    mounts = {}
    for volume in compose["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = os.path.normpath(os.path.join(ROOT, source))
    f = flags(compose["command"])
    for flag, local in (("model_config_file", "models.config"),
                        ("batching_parameters_file", "batching_parameters.txt"),
                        ("monitoring_config_file", "monitoring.config")):
        assert mounts[f[flag]] == os.path.normpath(path(local)), flag
    model = configs.read_model_server_config(path("models.config")).model_config_list.config[0]
    mounted = [t for t in mounts if model.base_path.startswith(t.rstrip("/") + "/")]
    assert mounted == ["/models"] and mounts["/models"] == os.path.normpath(path("models"))


def test_kubernetes_matches_compose(compose, k8s):
    deployment, service = k8s
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == compose["image"]
    assert container["command"] == compose["entrypoint"]
    assert container["args"] == compose["command"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == \
        {"grpc": (8500, "grpc"), "http": (8501, "http")}
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert {os.path.dirname(v) for v in flags(container["args"]).values()
            if v.startswith("/")} == {mounts["config"]}
    model = configs.read_model_server_config(path("models.config")).model_config_list.config[0]
    assert model.base_path.startswith(mounts["models"] + "/")
    assert container["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{model.name}"


def test_kvid_serve_takes_the_tf_serving_command_line_as_is(compose):
    args = configure_serve_parser(argparse.ArgumentParser()).parse_args(compose["command"])
    assert (args.port, args.rest_api_port) == (8500, 8501)
    assert args.enable_batching is True and args.enable_model_warmup is True
    assert args.model_config_file == "/config/models.config"
    assert args.model_config_file_poll_wait_seconds == 60
    assert args.monitoring_config_file == "/config/monitoring.config"
