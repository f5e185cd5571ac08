"""The deployment files agree with the code they deploy.

docker-compose.yml must name the whole stack, run only `atelier` subcommands that exist, set only settings that
exist (with values `Settings` accepts) and hold no secret; the Dockerfile's targets must run `atelier` as a
non-root user, pin torch, and carry a HEALTHCHECK that really tells a healthy /healthz from an unhealthy one.
No Docker engine is needed: the files are read, and what they would run is run here.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from atelier.cli import build_parser
from atelier.observability import start_http
from atelier.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"

TORCH_PINS = ("torch==2.14.1", "torchvision==0.29.1")
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD")
PLACEHOLDER = "value-from-dot-env"


# ----- reading the files ----------------------------------------------------------------------------------------


@dataclass
class Stage:
    """One `FROM … AS name` stage of the Dockerfile: its parent stage (if built on one) and its instructions."""

    name: str
    parent: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, Stage]:
    """The stages of a Dockerfile by name, with line continuations joined and comment lines dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and pending):
            continue  # comments (also inside a continued instruction) and blank lines are not instructions
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        if pending + line:
            logical.append(pending + line)
        pending = ""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else f"stage{len(stages)}"
            current = stages[name] = Stage(name, words[0] if words[0] in stages else None)
        elif current is not None:
            current.instructions.append((keyword, rest.strip()))
    return stages


def stage_chain(stages: Mapping[str, Stage], target: str) -> list[tuple[str, str]]:
    """Every instruction that builds `target`, its ancestors' first: what the image inherits."""
    chain: list[Stage] = []
    name: str | None = target
    while name is not None:
        chain.insert(0, stages[name])
        name = stages[name].parent
    return [instruction for stage in chain for instruction in stage.instructions]


def last(instructions: list[tuple[str, str]], keyword: str) -> str | None:
    values = [rest for kw, rest in instructions if kw == keyword]
    return values[-1] if values else None


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def atelier_services(compose: Mapping) -> dict[str, dict]:
    """Services whose image is built from this repository (the Atelier processes)."""
    found = {}
    for name, service in compose["services"].items():
        build = service.get("build")
        context = build if isinstance(build, str) else (build or {}).get("context")
        if context is not None and (COMPOSE_FILE.parent / context).resolve() == ROOT:
            found[name] = service
    return found


def environment(service: Mapping) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def argv_of(service: Mapping, stages: Mapping[str, Stage]) -> list[str]:
    """What the container runs: the service's entrypoint (or its image's ENTRYPOINT) followed by its command."""
    entrypoint = service.get("entrypoint")
    if entrypoint is None:
        entrypoint = json.loads(last(stage_chain(stages, service["build"]["target"]), "ENTRYPOINT") or "[]")
    command = service.get("command", [])
    as_list = lambda value: shlex.split(value) if isinstance(value, str) else list(value)  # noqa: E731
    return as_list(entrypoint) + as_list(command)


def env_example() -> dict[str, str]:
    """The assignments in .env.example, commented-out ones included (they document optional settings)."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            found[match[1]] = match[2].strip()
    return found


def operator_env() -> dict[str, str]:
    """What an operator's .env holds: the active lines of .env.example, every empty value filled in."""
    active = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            active[match[1]] = match[2].strip() or PLACEHOLDER
    return active


_REFERENCE = re.compile(r"\$\{(\w+)(?:(:[-?])((?:[^{}$]|\$\{[^{}]*\})*))?\}")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` (default itself interpolated) and `${NAME:?error}`; `$$` is `$`."""

    def replace(match: re.Match) -> str:
        name, operator, argument = match[1], match[2], match[3] or ""
        if env.get(name):
            return env[name]
        if operator == ":?":
            raise ValueError(f"compose would refuse to start: {name} is unset ({argument})")
        return interpolate(argument, env) if operator == ":-" else ""

    parts = [_REFERENCE.sub(replace, part) for part in value.split("$$")]
    if any("$" in part for part in parts):
        raise ValueError(f"an interpolation this test does not understand: {value!r}")
    return "$".join(parts)


COMPOSE = load_compose()
STAGES = dockerfile_stages()
ATELIER = atelier_services(COMPOSE)
SUBCOMMANDS = next(
    action.choices for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)
)


def services_running(subcommand: str) -> list[str]:
    return [name for name, service in ATELIER.items() if argv_of(service, STAGES)[1:2] == [subcommand]]


def setting_keys() -> list[str]:
    """Every ATELIER_* name the deployment sets: in any compose service, and in .env.example."""
    keys = {key for service in COMPOSE["services"].values() for key in environment(service)}
    keys |= set(env_example())
    return sorted(key for key in keys if key.startswith("ATELIER_"))


# ----- the stack -----------------------------------------------------------------------------------------------


def test_stack_has_redis_with_aof_postgres_and_s3_store():
    services = COMPOSE["services"]
    redis = next(s for s in services.values() if s.get("image", "").startswith("redis"))
    command = redis["command"] if isinstance(redis["command"], list) else shlex.split(redis["command"])
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.split(":")[1] == "/data" for volume in redis["volumes"]), (
        "the AOF must live on a volume"
    )

    postgres = next(s for s in services.values() if s.get("image", "").startswith("postgres"))
    assert "healthcheck" in postgres
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])

    assert any(s.get("image", "").startswith("minio/minio") for s in services.values()), (
        "an S3-compatible store"
    )


def test_gpu_worker_reserves_an_nvidia_gpu():
    workers = services_running("worker")
    assert workers, "no service runs `atelier worker`"
    for name in workers:
        devices = ATELIER[name]["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), name
        assert ATELIER[name]["build"]["target"] == "worker", f"{name} must run the CUDA image"


@pytest.mark.parametrize("subcommand", ["discord", "slack", "migrate"])
def test_bots_and_migration_are_services(subcommand):
    assert services_running(subcommand), f"no service runs `atelier {subcommand}`"


def test_every_reference_resolves():
    """depends_on names real services, named volumes are declared."""
    services, volumes = COMPOSE["services"], COMPOSE.get("volumes") or {}
    for name, service in services.items():
        depends = service.get("depends_on") or []
        for dependency in depends:
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name} mounts undeclared volume {source}"


# ----- what each Atelier service runs --------------------------------------------------------------------------


@pytest.mark.parametrize("service", sorted(ATELIER))
def test_service_runs_an_existing_atelier_subcommand(service):
    argv = argv_of(ATELIER[service], STAGES)
    assert argv[0] == "atelier", f"{service} runs {argv}, not the atelier command"
    subcommand = argv[1]
    if subcommand not in SUBCOMMANDS:
        pytest.fail(
            f"{service} runs `atelier {subcommand}`, which does not exist (known: {sorted(SUBCOMMANDS)})"
        )
    done = subprocess.run(
        [sys.executable, "-m", "atelier", *argv[1:], "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"usage: atelier {subcommand}" in done.stdout


def test_entrypoint_is_the_console_script():
    """The images' ENTRYPOINT `atelier` is the console script that pip installs from pyproject."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["atelier"] == "atelier.cli:main"


# ----- settings and secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", setting_keys())
def test_setting_exists(key, tmp_path, monkeypatch):
    """Every ATELIER_* variable is a Settings field; a `_FILE` variant really fills its field from the file."""
    if key.endswith("_FILE"):
        field_name = key.removeprefix("ATELIER_").removesuffix("_FILE").lower()
        if field_name not in Settings.model_fields:
            pytest.fail(f"{key}: Settings has no field {field_name}")
        secret = tmp_path / "secret"
        secret.write_text("from-the-file\n")
        monkeypatch.delenv(key.removesuffix("_FILE"), raising=False)
        monkeypatch.setenv(key, str(secret))
        assert Settings(_env_file=None).secret(field_name) == "from-the-file"
    else:
        field_name = key.removeprefix("ATELIER_").lower()
        if field_name not in Settings.model_fields:
            pytest.fail(f"{key} is set by the deployment, but Settings has no field {field_name}")


@pytest.mark.parametrize("service", sorted(ATELIER))
def test_environment_is_valid_settings_pointing_at_the_stack(service, monkeypatch):
    """The service's environment, interpolated as compose would with a filled-in .env, is accepted by Settings,
    and its Redis, database and S3 endpoint are services of this file, the bucket the one minio-init creates."""
    dot_env = operator_env()
    for key in [key for key in os.environ if key.startswith("ATELIER_")]:
        monkeypatch.delenv(key)
    env = {key: value for key, value in dot_env.items() if key.startswith("ATELIER_")}  # env_file
    env |= {key: interpolate(value, dot_env) for key, value in environment(ATELIER[service]).items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)

    services = COMPOSE["services"]
    for url in (settings.redis_url, settings.database_url, settings.s3_endpoint_url):
        assert urlsplit(url).hostname in services, f"{url} is not a service of docker-compose.yml"
    assert urlsplit(settings.database_url).password == PLACEHOLDER, "the password comes from .env"
    assert settings.metrics_host == "0.0.0.0" and settings.metrics_port > 0
    bucket = urlsplit(settings.blob_url).hostname
    init_script = "\n".join(argv_of(services["minio-init"], STAGES))
    assert re.search(rf"mc mb\b.*\s\w+/{re.escape(bucket)}\s", init_script), (
        f"nothing creates bucket {bucket}"
    )


def test_compose_holds_no_secret():
    for name, service in COMPOSE["services"].items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert value.startswith("${") and value.endswith("}"), f"{name}: {key} must come from .env"
            for password in re.findall(r"[a-z][a-z0-9+.-]*://[^:/@\s]+:([^@\s]+)@", value):
                assert password.startswith("${"), f"{name}: {key} embeds a literal password"


def test_env_example_holds_no_secret_and_stays_out_of_images():
    for key, value in env_example().items():
        if SECRET_NAME.search(key) and not key.endswith("_FILE"):
            assert value == "", f".env.example: {key} must be left empty for the operator"
    assert all(".env" in service["env_file"] for service in ATELIER.values())
    patterns = [
        p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    included = True
    for pattern in patterns:  # the last matching pattern wins, as in Docker
        if fnmatch.fnmatch(".env", pattern.removeprefix("!").removeprefix("**/")):
            included = pattern.startswith("!")
    assert not included, ".env would be sent to the Docker build"


# ----- the Dockerfile ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", sorted({service["build"]["target"] for service in ATELIER.values()}))
def test_image_runs_atelier_as_non_root_with_a_healthcheck(target):
    assert target in STAGES, f"compose builds target {target}, which the Dockerfile does not define"
    instructions = stage_chain(STAGES, target)
    assert json.loads(last(instructions, "ENTRYPOINT")) == ["atelier"]
    user = last(instructions, "USER")
    assert user not in (None, "root", "0") and not user.startswith(("root:", "0:"))
    assert "/healthz" in last(instructions, "HEALTHCHECK")


@pytest.mark.parametrize("target", ["worker", "bot"])
def test_image_pins_torch_before_installing_the_project(target):
    runs = [rest for keyword, rest in stage_chain(STAGES, target) if keyword == "RUN"]
    torch_run = next((i for i, run in enumerate(runs) if all(pin in run.split() for pin in TORCH_PINS)), None)
    project_run = next(
        (i for i, run in enumerate(runs) if re.search(r"pip install (\S+ )*/src\b", run)), None
    )
    assert torch_run is not None, f"{target} does not install {' '.join(TORCH_PINS)}"
    assert project_run is not None and torch_run < project_run, (
        "torch must be pinned before `pip install` of the project"
    )


def _healthcheck_command() -> str:
    check = last(STAGES["base"].instructions, "HEALTHCHECK")
    command = re.sub(r"^(--\S+\s+)*CMD\s+", "", check)
    assert not command.startswith("["), "the test runs the shell form of HEALTHCHECK"
    return command


async def _run_healthcheck(port: int | None) -> int:
    env = {key: value for key, value in os.environ.items() if key != "ATELIER_METRICS_PORT"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` is the venv's
    if port is not None:
        env["ATELIER_METRICS_PORT"] = str(port)
    process = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", _healthcheck_command(), env=env, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(process.wait(), timeout=30)


async def test_healthcheck_tells_healthy_from_unhealthy():
    """The image's HEALTHCHECK, run against the real /healthz server: 0 when healthy, non-zero when not."""
    state = {"healthy": True}

    async def healthy() -> bool:
        return state["healthy"]

    runner = await start_http("127.0.0.1", 0, healthy)
    try:
        port = runner.addresses[0][1]
        assert await _run_healthcheck(port) == 0
        state["healthy"] = False
        assert await _run_healthcheck(port) != 0
    finally:
        await runner.cleanup()
    assert await _run_healthcheck(port) != 0, "nothing listens any more"
    assert await _run_healthcheck(None) == 0, "without a metrics port there is nothing to check"
