"""docker-compose.yml and the Dockerfile agree with the code (no Docker engine needed).

The same topology (PostgreSQL + S3 + API + worker) runs natively in the end-to-end tests;
this module checks the compose wiring: services, images, volumes, every ``LOREG_*``
variable is a real setting and parses, health checks hit real routes, the API migrates
before serving, and the worker reserves a GPU.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from loreg.config import Settings

ROOT = Path(__file__).resolve().parents[1]
_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: str) -> str:
    """What compose makes of a value when the operator sets nothing: ``${X:-d}`` -> ``d``."""
    out = _INTERP.sub(lambda m: m.group(2) or "", value)
    return out.replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


def command_text(service: dict[str, Any]) -> str:
    cmd = service.get("command")
    if isinstance(cmd, list):
        return " ".join(str(c) for c in cmd)
    return str(cmd or "")


def test_services_present(services: dict[str, Any]) -> None:
    assert {"postgres", "minio", "minio-init", "api", "worker"} <= set(services)


def test_images(services: dict[str, Any]) -> None:
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["minio"]["image"].startswith("minio/minio")
    assert services["minio-init"]["image"].startswith("minio/mc")
    for name in ("api", "worker"):
        build = services[name]["build"]
        assert build["context"] == "."
        assert (ROOT / build.get("dockerfile", "Dockerfile")).is_file()
        assert services[name]["image"]


def _pinned(image: str) -> bool:
    """``name:TAG`` with a version in the tag (or a digest): never ``latest`` nor bare."""
    if "@sha256:" in image:
        return True
    name, sep, tag = image.rpartition(":")
    return bool(sep and name and "/" not in tag and tag != "latest" and re.search(r"\d", tag))


def test_every_image_is_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        assert _pinned(service["image"]), f"{name}: {service['image']!r} is not pinned"
        base = ((service.get("build") or {}).get("args") or {}).get("BASE_IMAGE")
        assert base is None or _pinned(base), f"{name}: base image {base!r} is not pinned"
    dockerfile = (ROOT / "Dockerfile").read_text()
    default = re.search(r"^ARG BASE_IMAGE=(\S+)", dockerfile, re.MULTILINE)
    assert default and _pinned(default.group(1))
    # A minor-version tag (python:3.11-slim) moves with every patch release: pin the patch.
    assert re.search(r":\d+\.\d+\.\d+", default.group(1))


def test_built_images_carry_the_package_version(services: dict[str, Any]) -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name in ("api", "worker"):
        assert services[name]["image"].endswith(f":{version}"), name


def test_pinning_rule() -> None:
    assert _pinned("postgres:16.8-alpine") and _pinned("minio/mc:RELEASE.2025-04-16T18-13-26Z")
    assert _pinned("localhost:5000/loreg:0.1.0")
    floating = ("minio/minio:latest", "minio/minio", "localhost:5000/loreg", "postgres:alpine")
    for image in floating:
        assert not _pinned(image), image


def test_dockerfile_one_image_with_cuda_variant(services: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    args = set(re.findall(r"^ARG (\w+)", dockerfile, re.MULTILINE))
    assert {"BASE_IMAGE", "TORCH_INDEX_URL"} <= args
    assert re.search(r"^FROM \$\{BASE_IMAGE\}", dockerfile, re.MULTILINE)
    assert "--index-url" in dockerfile and "torch" in dockerfile
    # every package the wheel ships is copied into the image
    for package in ("loreg",):
        assert re.search(rf"^COPY {package} ", dockerfile, re.MULTILINE), package
    worker_args = services["worker"]["build"]["args"]
    assert "cuda" in worker_args["BASE_IMAGE"]
    assert re.search(r"/whl/cu\d+$", worker_args["TORCH_INDEX_URL"])
    # the API image keeps the CPU default (no CUDA libraries to serve HTTP)
    assert "BASE_IMAGE" not in (services["api"]["build"].get("args") or {})


def test_dockerignore_keeps_secrets_and_venv_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".env", "tests"):
        assert entry in ignored


def test_named_volumes(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})

    def mounts(service: str) -> dict[str, str]:
        result = {}
        for spec in services[service].get("volumes", []):
            source, target = str(spec).split(":")[:2]
            result[target] = source
        return result

    assert mounts("postgres")["/var/lib/postgresql/data"] in declared
    assert mounts("minio")["/data"] in declared
    assert services["minio"]["command"][:2] == ["server", "/data"]


def test_every_loreg_variable_is_a_setting(services: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    prefix = Settings.model_config.get("env_prefix", "")
    assert prefix == "LOREG_"
    seen = 0
    for name, service in services.items():
        for key in env_of(service):
            if key.startswith(prefix):
                seen += 1
                assert key[len(prefix) :].lower() in fields, f"{name}: {key} is not a setting"
    assert seen
    # no LOREG_* variable hides in commands or compose-level interpolation either
    text = (ROOT / "docker-compose.yml").read_text()
    for match in re.findall(r"\bLOREG_[A-Z0-9_]+", text):
        assert match[len(prefix) :].lower() in fields, match


@pytest.mark.parametrize("service", ["api", "worker"])
def test_settings_parse_and_wire_to_the_other_services(
    services: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_of(services[service])
    for key in list(Settings.model_fields):
        monkeypatch.delenv("LOREG_" + key.upper(), raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()

    db = make_url(settings.effective_database_url)
    pg_env = env_of(services["postgres"])
    assert db.drivername == "postgresql+psycopg"
    assert db.host == "postgres"
    assert db.port in (None, 5432)
    assert db.username == pg_env["POSTGRES_USER"]
    assert db.password == pg_env["POSTGRES_PASSWORD"]
    assert db.database == pg_env["POSTGRES_DB"]

    storage = urlsplit(settings.effective_storage_url)
    assert storage.scheme == "s3"
    init = command_text(services["minio-init"])
    assert re.search(rf"mc mb (--ignore-existing |-p )*\w+/{re.escape(storage.netloc)}\b", init)
    assert settings.s3_endpoint_url is not None
    endpoint = urlsplit(settings.s3_endpoint_url)
    assert endpoint.hostname == "minio" and endpoint.port == 9000
    # presigned URLs point at MinIO's port as published on the host
    assert settings.s3_public_endpoint_url == "http://localhost:9000"
    assert "9000:9000" in [str(p) for p in services["minio"].get("ports", [])]

    minio_env = env_of(services["minio"])
    assert env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]


def test_health_checks(services: dict[str, Any]) -> None:
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["minio"]["healthcheck"]["test"]
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", api_check)
    assert match, api_check
    port, path = int(match.group(1)), match.group(2)
    assert path in ("/readyz", "/healthz")
    from loreg.api.routers.health import router

    assert path in {getattr(r, "path", None) for r in router.routes}
    # the check probes the port the server listens on, and that port is published
    assert f"--port {port}" in command_text(services["api"])
    assert any(str(p).endswith(f":{port}") for p in services["api"]["ports"])


def test_worker_health_check_probes_its_health_endpoint(services: dict[str, Any]) -> None:
    worker = services["worker"]
    check = " ".join(worker["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:(\d+)/healthz", check)
    assert match, check
    env = env_of(worker)
    settings = Settings.model_validate(
        {
            "worker_health_port": env["LOREG_WORKER_HEALTH_PORT"],
            "worker_health_host": env.get("LOREG_WORKER_HEALTH_HOST", "127.0.0.1"),
        }
    )
    assert settings.worker_health_port == int(match.group(1))
    assert settings.worker_health_host in ("127.0.0.1", "0.0.0.0")


def test_long_running_services_restart(services: dict[str, Any]) -> None:
    for name in ("postgres", "minio", "api", "worker"):
        assert services[name]["restart"] in ("always", "unless-stopped"), name
    assert services["minio-init"]["restart"] == "no"


def test_start_order(services: dict[str, Any]) -> None:
    api_deps = services["api"]["depends_on"]
    assert api_deps["postgres"]["condition"] == "service_healthy"
    assert api_deps["minio-init"]["condition"] == "service_completed_successfully"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_api_migrates_before_serving(services: dict[str, Any]) -> None:
    text = command_text(services["api"])
    steps = [shlex.split(step) for step in re.split(r"&&", text.split("-c", 1)[-1])]
    assert steps[0][-2:] == ["db", "upgrade"], text
    serve = steps[-1]
    assert "serve" in serve and "--no-worker" in serve
    assert serve[serve.index("--host") + 1] == "0.0.0.0"

    from loreg.cli.main import cli

    assert "upgrade" in cli.commands["db"].commands  # type: ignore[attr-defined]


def test_cli_commands_the_services_run(services: dict[str, Any]) -> None:
    from loreg.cli.main import cli

    serve_opts = {o for p in cli.commands["serve"].params for o in p.opts}
    assert {"--host", "--port", "--no-worker"} <= serve_opts
    worker_opts = {o for p in cli.commands["worker"].params for o in p.opts}
    worker_cmd = services["worker"]["command"]
    assert worker_cmd[:2] == ["loreg", "worker"]
    for opt in worker_cmd[2:]:
        if opt.startswith("--"):
            assert opt in worker_opts


def test_worker_reserves_a_gpu(services: dict[str, Any]) -> None:
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        d["driver"] == "nvidia"
        and "gpu" in d["capabilities"]
        and (d.get("count") or d.get("device_ids"))
        for d in devices
    )
    env = env_of(services["worker"])
    assert env.get("LOREG_WORKER_DEVICE", "auto") in ("auto", "cuda")
