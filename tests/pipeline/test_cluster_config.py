"""cluster.yaml against Ray's own cluster-launcher schema, offline (no cloud calls)."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "cluster.yaml"


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CLUSTER_YAML.read_text())
    return data


def validate(config: dict[str, Any]) -> dict[str, Any]:
    # prepare_config fills the defaults the launcher would; raw validate_config rejects a
    # correct file without them.
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared: dict[str, Any] = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_schema() -> None:
    prepared = validate(load())
    assert prepared["provider"]["type"] == "aws"


def test_the_schema_check_really_rejects_mistakes() -> None:
    import jsonschema

    bad = load()
    bad["available_node_types"]["gpu_worker"]["min_worker"] = 0  # typo'd key
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    bad = load()
    bad["head_node_type"] = "nonexistent"
    with pytest.raises(ValueError, match="head_node_type"):
        validate(bad)


def test_head_is_cpu_only_and_gpu_workers_scale_from_zero() -> None:
    config = load()
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"]["GPU"] == 0
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    gpu = [t for t in workers.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu, "no GPU worker type"
    for node in gpu:
        assert node["min_workers"] == 0
        assert node["node_config"]["InstanceType"].split(".")[0] in {"g5", "g6"}


def test_image_is_the_plain_ray_gpu_image_of_the_pinned_version() -> None:
    config = load()
    docker = config["docker"]
    assert docker["image"] == "rayproject/ray:2.60.0-py311-gpu"
    images = [docker["image"], docker.get("head_image", docker["image"])]
    assert all("ray-ml" not in image and ":2.60.0-py311" in image for image in images)
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    assert "ray==2.60.0" in lock  # the image and the lock must agree


def test_setup_installs_this_package_and_pulls_weights() -> None:
    config = load()
    mounts = config["file_mounts"]
    checkout = next(remote for remote, local in mounts.items() if local == ".")
    commands = [shlex.split(c) for c in config["setup_commands"]]
    assert any(
        c[:2] == ["pip", "install"] and f"{checkout}/requirements.lock" in c for c in commands
    )
    assert any(c[:2] == ["pip", "install"] and c[-1] == checkout for c in commands)
    assert ["reframe", "models", "pull"] in commands
    from reframe.cli import build_parser

    args = build_parser().parse_args(["models", "pull"])  # the command really exists
    assert callable(args.handler)


def test_every_ray_start_chooses_its_auth_mode_explicitly() -> None:
    config = load()
    starts = [
        c
        for key in ("head_start_ray_commands", "worker_start_ray_commands")
        for c in config[key]
        if "ray start" in c
    ]
    assert len(starts) == 2
    assert all("RAY_AUTH_MODE=token" in c for c in starts)
    assert "--num-gpus=0" in starts[0]


def test_head_starts_the_api_with_a_real_command() -> None:
    from reframe.cli import build_parser

    config = load()
    serve = [c for c in config["head_start_ray_commands"] if "reframe serve" in c]
    assert len(serve) == 1
    words = shlex.split(serve[0].split("reframe serve", 1)[1].split(">", 1)[0])
    args = build_parser().parse_args(["serve", *words])
    assert (args.host, args.port) == ("0.0.0.0", 8000)  # noqa: S104 - the head serves the VPC
