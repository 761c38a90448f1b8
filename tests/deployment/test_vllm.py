"""vLLM in docker-compose.yml: the `vllm` service, started only with the `vllm` profile.

The same static checks as tests/deployment/test_deployment.py makes for TGI (whose helpers this
module uses): the image is a pinned release, the flags follow the playground's settings, the
service is health-checked and keeps its weights, and the switch README.md documents (a few lines
of .env) leaves the default `docker compose up` as it was and points the playground at vLLM
with a backend URL the project's own parser takes as an OpenAI-compatible server.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from inference.backends import http_url, protocol_of
from inference.chat import fit_answer, fit_chat
from inference.client import SamplingParams
from inference.openai_client import info_from_models
from inference.prompt import Turn
from playground.env import env_backend_urls
from tests.deployment.test_deployment import (
    APP_SERVICES,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    REFLECTION_MODEL,
    ROOT,
    SCHEMA_FILE,
    command_argv,
    deployment_env,
    interpolate_tree,
    resolved_services,
    schema_errors,
)

# What a plain `docker compose up` starts: every service without a profile.
DEFAULT_SERVICES = {
    "migrate",
    "web",
    "worker",
    "beat",
    "proxy",
    "redis",
    "postgres",
    "tgi",
    "dcgm-exporter",
}
SWITCH_SECTION = "### vLLM instead of TGI"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


def _flag(service: dict[str, Any], flag: str) -> str:
    argv = command_argv(service)
    return argv[argv.index(flag) + 1]


def _port(service: dict[str, Any]) -> int:
    return int(_flag(service, "--port"))


def documented_switch() -> dict[str, str]:
    """The `NAME=value` lines of README.md's vLLM section: the .env that switches to vLLM."""
    text = (ROOT / "README.md").read_text()
    section = re.split(r"\n#{2,3} ", text.split(f"\n{SWITCH_SECTION}\n", 1)[1], maxsplit=1)[0]
    lines = re.findall(r"^([A-Z][A-Z0-9_]*)=(\S+)$", section, re.MULTILINE)
    return dict(lines)


def env_example_switch() -> dict[str, str]:
    """The switch as .env.example's vLLM group states it, in its opening comment."""
    text = ENV_EXAMPLE.read_text()
    group = text.split("# === vLLM", 1)[1].split("\n\n", 1)[0]
    return dict(re.findall(r"\b([A-Z][A-Z0-9_]*)=([^\s,]+)", group))


def switched_env(**overrides: str) -> dict[str, str]:
    return deployment_env(**documented_switch(), **overrides)


def test_the_switch_is_documented_alike_in_the_readme_and_env_example() -> None:
    switch = documented_switch()
    assert set(switch) == {"COMPOSE_PROFILES", "TGI_REPLICAS", "TGI_URL"}
    assert env_example_switch() == switch


def test_vllm_starts_only_with_its_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["vllm"]["profiles"] == ["vllm"]
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == DEFAULT_SERVICES
    # A plain `docker compose up` still starts one TGI, exactly as before vLLM was added.
    assert resolved_services()["tgi"]["deploy"]["replicas"] == "1"


def test_vllm_image_is_a_pinned_release(compose: dict[str, Any]) -> None:
    image, _, tag = compose["services"]["vllm"]["image"].rpartition(":")
    assert image == "vllm/vllm-openai"
    assert re.fullmatch(r"v\d+\.\d+\.\d+(\.post\d+)?", tag), "pin an exact vLLM release"


@pytest.mark.parametrize(
    "overrides",
    [{}, {"GENERATION_CONCURRENCY": "48"}, {"GENERATION_CONCURRENCY": "8"}],
    ids=["defaults", "more-slots", "fewer-slots"],
)
def test_vllm_runs_every_answer_the_playground_sends_at_once(overrides: dict[str, str]) -> None:
    """--max-num-seqs is the slot count: fewer would queue answers inside vLLM, where the
    playground's line and ETAs cannot see them."""
    services = resolved_services(switched_env(**overrides))
    slots = services["web"]["environment"]["GENERATION_CONCURRENCY"]
    assert int(_flag(services["vllm"], "--max-num-seqs")) == int(slots)
    if overrides:
        assert slots == overrides["GENERATION_CONCURRENCY"]
    for name in APP_SERVICES:
        assert services[name]["environment"]["GENERATION_CONCURRENCY"] == slots


@pytest.mark.parametrize(
    ("overrides", "model"),
    [({}, REFLECTION_MODEL), ({"MODEL_ID": "org/another-model"}, "org/another-model")],
    ids=["default-model", "chosen-model"],
)
def test_vllm_serves_the_tgi_model_under_its_name(overrides: dict[str, str], model: str) -> None:
    services = resolved_services(switched_env(**overrides))
    assert command_argv(services["vllm"])[0] == model, "`vllm serve` takes the model first"
    assert _flag(services["vllm"], "--served-model-name") == model
    assert _flag(services["tgi"], "--model-id") == model


def test_vllm_splits_the_model_over_the_gpus_tgi_would_use() -> None:
    def sizes(**overrides: str) -> tuple[int, int]:
        services = resolved_services(switched_env(**overrides))
        tgi, vllm = services["tgi"], services["vllm"]
        return int(_flag(tgi, "--num-shard")), int(_flag(vllm, "--tensor-parallel-size"))

    shards, tensor_parallel = sizes()
    assert tensor_parallel == shards
    assert sizes(TGI_NUM_SHARD="8") == (8, 8)
    assert sizes(VLLM_TENSOR_PARALLEL_SIZE="2")[1] == 2


def test_vllm_context_length_follows_its_variable() -> None:
    default = int(_flag(resolved_services(switched_env())["vllm"], "--max-model-len"))
    longer = resolved_services(switched_env(VLLM_MAX_MODEL_LEN="16384"))["vllm"]
    assert int(_flag(longer, "--max-model-len")) == 16384 != default


@pytest.mark.parametrize("character", ["x", "中", "😀"], ids=["ascii", "cjk", "emoji"])
def test_vllm_context_window_leaves_room_for_a_full_answer(character: str) -> None:
    """The longest question, after a long conversation, still gets all of MAX_NEW_TOKENS, as
    the playground fits prompts to the `max_model_len` vLLM reports in /v1/models."""
    from django.conf import settings

    vllm = resolved_services(switched_env())["vllm"]
    served = _flag(vllm, "--served-model-name")
    models = {"data": [{"id": served, "max_model_len": int(_flag(vllm, "--max-model-len"))}]}
    info = info_from_models(models)
    question = character * settings.PROMPT_MAX_CHARS
    history = [Turn(user="an earlier question " * 50, assistant="an answer " * 200)] * 20
    prompt, dropped = fit_chat(
        question,
        history,
        max_input_tokens=info["max_input_tokens"],
        max_total_tokens=info["max_total_tokens"],
        max_new_tokens=settings.MAX_NEW_TOKENS,
        model=info["model_id"],
    )
    assert dropped > 0, "the conversation should not have fitted whole"
    assert prompt.messages[-1]["content"] == question and prompt.model == served
    params = fit_answer(
        prompt, info["max_total_tokens"], SamplingParams(max_new_tokens=settings.MAX_NEW_TOKENS)
    )
    assert params.max_new_tokens == settings.MAX_NEW_TOKENS


def test_vllm_is_health_checked_on_its_port_and_reserves_the_gpus(
    compose: dict[str, Any],
) -> None:
    vllm = resolved_services(switched_env())["vllm"]
    port = _port(vllm)
    check = vllm["healthcheck"]
    assert not check.get("disable") and check["test"][0] in ("CMD", "CMD-SHELL")
    assert f"http://127.0.0.1:{port}/health" in check["test"]
    assert str(port) in vllm["expose"]
    devices = compose["services"]["vllm"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "vllm" not in {name for name, s in compose["services"].items() if s.get("ports")}


def test_vllm_keeps_its_weights_and_gets_the_token_and_shared_memory(
    compose: dict[str, Any],
) -> None:
    raw = compose["services"]["vllm"]
    vllm = resolved_services(switched_env(HF_TOKEN="hf_test"))["vllm"]
    source, target = vllm["volumes"][0].split(":")
    assert target == "/root/.cache/huggingface"  # the image's Hugging Face cache
    assert source in compose["volumes"], "a named volume outlives the container"
    assert vllm["environment"]["HF_TOKEN"] == "hf_test"
    # PyTorch shares tensors between the tensor-parallel workers through /dev/shm.
    assert raw.get("ipc") == "host" or re.fullmatch(r"\d+[gG]", vllm["shm_size"])


def test_the_documented_backend_url_is_the_vllm_service(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = documented_switch()["TGI_URL"]
    monkeypatch.setenv("TGI_URL", url)
    assert env_backend_urls("TGI_URL") == [url]
    assert protocol_of(url) == "openai"
    address = urlsplit(http_url(url))
    assert address.hostname == "vllm" and address.hostname in compose["services"]
    assert address.port == _port(resolved_services(switched_env())["vllm"])


def test_the_switch_stops_tgi_and_points_every_app_service_at_vllm(
    schema: dict[str, Any],
) -> None:
    env = switched_env()
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    assert schema_errors(interpolate_tree(raw, env), schema) == []
    services = resolved_services(env)
    # Both engines would claim every GPU: the switch leaves none of TGI's containers running.
    assert services["tgi"]["deploy"]["replicas"] == "0"
    assert env["COMPOSE_PROFILES"].split(",") == services["vllm"]["profiles"]
    for name in APP_SERVICES:
        assert services[name]["environment"]["TGI_URL"] == env["TGI_URL"], name
    # Nothing waits for TGI, so no start-up order breaks when it is not there.
    for name, service in raw["services"].items():
        assert "tgi" not in service.get("depends_on", {}), name
