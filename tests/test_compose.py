"""docker-compose.yml, the production shape: it must validate and keep the properties operators rely on
(no Docker engine here, so the file is checked, not run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"


def test_services_volumes_and_scaling():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert set(services) >= {"redis", "postgres", "api", "worker"}
    worker, api = services["worker"], services["api"]
    # `--scale worker=N` needs workers without fixed names or host ports.
    assert "container_name" not in worker and "ports" not in worker
    # API and workers share one data volume at the same path (blobs, FAISS segments).
    assert "data:/data" in worker["volumes"] and "data:/data" in api["volumes"]
    assert worker["environment"]["AUTOGLM_DATA_DIR"] == api["environment"]["AUTOGLM_DATA_DIR"] == "/data"
    # Production uses PostgreSQL and Redis, not the embedded defaults.
    assert api["environment"]["AUTOGLM_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert api["environment"]["AUTOGLM_REDIS_URL"].startswith("redis://redis:")
    assert "--no-worker" in api["command"] and worker["command"][:2] == ["autoglm", "worker"]
    gpu = api["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]


def test_compose_config_validates():
    docker = shutil.which("docker")
    v2 = docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    cmd = (
        [docker, "compose"]
        if v2
        else [shutil.which("docker-compose")]
        if shutil.which("docker-compose")
        else None
    )
    if cmd is None:
        pytest.skip(
            "neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)"
        )
    r = subprocess.run([*cmd, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_gpu_workers_are_a_profile_not_a_requirement():
    """`--profile gpu` adds workers that embed on a GPU; without it the stack needs no GPU for ingestion."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    worker, gpu_worker = services["worker"], services["worker-gpu"]
    assert "profiles" not in worker and "deploy" not in worker  # plain workers: no GPU, started by default
    assert gpu_worker["profiles"] == ["gpu"]
    assert gpu_worker["command"] == worker["command"] and gpu_worker["volumes"] == worker["volumes"]
    assert gpu_worker["environment"]["AUTOGLM_EMBED_DEVICE"] == "${AUTOGLM_EMBED_DEVICE:-auto}"
    (device,) = gpu_worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
