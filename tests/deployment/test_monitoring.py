"""Monitoring as code: the compose profile "monitoring", Prometheus's configuration and alert
rules, and Grafana's provisioning and dashboard (deploy/monitoring/).

promtool (Debian's `prometheus` package) checks the configuration and the rules and runs the
key alerts against made-up series; the compose services, the scrape targets, the token, the
datasource and the dashboard are checked against each other. That every metric they name
really exists is tests/deployment/test_monitoring_metrics.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client

from tests.deployment.test_deployment import (
    COMPOSE_FILE,
    FILLED_IN,
    SCHEMA_FILE,
    _compose_command,
    deployment_env,
    interpolate_tree,
    resolved_services,
    schema_errors,
)

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
GRAFANA_DIR = MONITORING / "grafana"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "playground.yml"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
PORTS_OVERRIDE = MONITORING / "compose.ports.yml"

PROFILE = "monitoring"
MONITORING_SERVICES = {"prometheus", "grafana", "redis-exporter", "postgres-exporter"}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboards() -> list[dict[str, Any]]:
    paths = sorted(DASHBOARDS_DIR.glob("*.json"))
    assert paths, "no dashboard to provision"
    return [json.loads(path.read_text()) for path in paths]


def dashboard_panels() -> Iterator[dict[str, Any]]:
    for dashboard in dashboards():
        for panel in dashboard["panels"]:
            yield panel
            yield from panel.get("panels", [])


def expressions() -> dict[str, str]:
    """{where: PromQL} for every alert rule and every dashboard query."""
    found = {f"alert {rule['alert']}": rule["expr"] for rule in alert_rules()}
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    return found


def job(name: str) -> dict[str, Any]:
    jobs = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    return next(scrape for scrape in jobs if scrape["job_name"] == name)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed here (Debian: apt-get install prometheus)")
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


# --- promtool: the configuration, the rules, and the alerts at work ---------------------------


@pytest.fixture
def prometheus_copy(tmp_path: Path) -> Path:
    """deploy/monitoring/prometheus/ with the token file it names where promtool can read it
    (in the container, compose puts it there as a secret)."""
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, copy)
    token = tmp_path / "metrics_token"
    token.write_text("a-test-token\n")
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    for scrape in config["scrape_configs"]:
        if "authorization" in scrape:
            scrape["authorization"]["credentials_file"] = str(token)
    (copy / "prometheus.yml").write_text(yaml.safe_dump(config))
    return copy


def test_promtool_accepts_the_prometheus_configuration(prometheus_copy: Path) -> None:
    result = promtool("check", "config", "prometheus.yml", cwd=prometheus_copy)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", str(ALERTS), cwd=ROOT)

    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_waits_has_a_severity_and_says_what_it_means() -> None:
    rules = alert_rules()
    assert len(rules) >= 10
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert len(rule["annotations"]["summary"]) > 20, rule["alert"]
        assert len(rule["annotations"]["description"]) > 60, rule["alert"]
    assert len({rule["alert"] for rule in rules}) == len(rules)


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    selector = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{selector}}}", "values": values}


def firing(alert: str, labels: dict[str, str]) -> dict[str, Any]:
    """What promtool must find for `alert` firing on a series with `labels`: the rule's own
    labels added, its annotations with those labels filled in."""
    rule = next(rule for rule in alert_rules() if rule["alert"] == alert)
    annotations = {
        key: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
        for key, text in rule["annotations"].items()
    }
    assert not any("{{" in text for text in annotations.values()), "fill in every template"
    return {"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": annotations}


PLAYGROUND = {"job": "playground", "instance": "web:8000"}
BACKEND = {**PLAYGROUND, "backend": "http://tgi:80"}
REDIS = {"job": "redis", "instance": "redis-exporter:9121"}
GPU = {"job": "gpus", "instance": "dcgm-exporter:9400", "gpu": "0", "Hostname": "gpu-box"}


def wait_buckets(per_minute: dict[str, int]) -> list[dict[str, str]]:
    """playground_queue_wait_seconds buckets, each growing by its count every minute."""
    return [
        series("playground_queue_wait_seconds_bucket", {**PLAYGROUND, "le": le}, f"0+{n}x40")
        for le, n in per_minute.items()
    ]


ALERT_CASES = [
    # A backend that stopped answering, and one an operator took out on purpose.
    (
        [
            series("playground_backend_up", BACKEND, "0x15"),
            series("playground_backend_disabled", BACKEND, "0x15"),
        ],
        [(5, "PlaygroundBackendDown", [BACKEND])],
    ),
    (
        [
            series("playground_backend_up", BACKEND, "0x15"),
            series("playground_backend_disabled", BACKEND, "1x15"),
        ],
        [(5, "PlaygroundBackendDown", [])],
    ),
    # A pause is an operator's choice: it only alerts once it has lasted.
    (
        [series("playground_intake_paused", PLAYGROUND, "1x50")],
        [(20, "PlaygroundIntakePaused", []), (40, "PlaygroundIntakePaused", [PLAYGROUND])],
    ),
    # Every answer waited between two and five minutes; then everyone within a minute.
    (
        wait_buckets({"60": 0, "120": 0, "300": 10, "+Inf": 10}),
        [(25, "PlaygroundQueueWaitHigh", [{}])],
    ),
    (
        wait_buckets({"60": 10, "120": 10, "300": 10, "+Inf": 10}),
        [(25, "PlaygroundQueueWaitHigh", [])],
    ),
    (
        [
            series(
                "playground_generations_finished_total",
                {**PLAYGROUND, "status": "error", "code": "overloaded"},
                "0 0 1x20",
            )
        ],
        [(5, "PlaygroundOverloadErrors", [{}])],
    ),
    # 85 % of maxmemory warns without being critical; no maxmemory at all never alerts.
    (
        [
            series("redis_memory_used_bytes", REDIS, "1700000000x20"),
            series("redis_memory_max_bytes", REDIS, "2000000000x20"),
        ],
        [(15, "RedisMemoryNearMax", [REDIS]), (15, "RedisMemoryFull", [])],
    ),
    (
        [
            series("redis_memory_used_bytes", REDIS, "1700000000x20"),
            series("redis_memory_max_bytes", REDIS, "0x20"),
        ],
        [(15, "RedisMemoryNearMax", [])],
    ),
    (
        [
            series("DCGM_FI_DEV_FB_USED", GPU, "79000x30"),
            series("DCGM_FI_DEV_FB_FREE", GPU, "1000x30"),
        ],
        [(20, "GPUMemoryNearlyFull", [GPU])],
    ),
]


def test_the_key_alerts_fire_on_trouble_and_stay_quiet_otherwise(tmp_path: Path) -> None:
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    tests = [
        {
            "interval": "1m",
            "input_series": inputs,
            "alert_rule_test": [
                {
                    "eval_time": f"{minutes}m",
                    "alertname": alert,
                    "exp_alerts": [firing(alert, labels) for labels in expected],
                }
                for minutes, alert, expected in checks
            ],
        }
        for inputs, checks in ALERT_CASES
    ]
    suite = {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(suite, sort_keys=False))

    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr


# --- Prometheus scrapes what compose runs ------------------------------------------------------


def test_prometheus_scrapes_compose_services_on_the_ports_they_expose() -> None:
    services = compose()["services"]
    targets = [
        target
        for scrape in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
        for group in scrape["static_configs"]
        for target in group["targets"]
    ]
    assert set(targets) >= {"web:8000", "tgi:80", "dcgm-exporter:9400"}
    for target in targets:
        host, _, port = target.partition(":")
        assert host in services, target
        assert port in services[host]["expose"], target
    assert job("playground")["metrics_path"] == "/metrics"


def test_the_playground_is_scraped_with_the_metrics_token_secret() -> None:
    document = compose()
    prometheus = document["services"]["prometheus"]
    [secret] = prometheus["secrets"]
    assert document["secrets"][secret] == {"environment": "METRICS_TOKEN"}
    authorization = job("playground")["authorization"]
    assert authorization["type"] == "Bearer"
    assert authorization["credentials_file"] == f"/run/secrets/{secret}"
    assert all("secrets" not in document["services"][name] for name in ("web", "worker"))


@pytest.mark.django_db
def test_a_scrape_as_prometheus_sends_it_is_answered_once_web_is_an_allowed_host(
    client: Client, settings: Any, backend: str
) -> None:
    """Prometheus asks `web:8000` from another container's address with the bearer token, and
    cannot send another Host header: production settings accept it once ALLOWED_HOSTS names
    `web` as well (README.md, "Monitoring")."""
    host = job("playground")["static_configs"][0]["targets"][0]
    settings.METRICS_TOKEN = "a-test-token"
    settings.NUM_PROXIES = 1
    settings.SECURE_SSL_REDIRECT = True

    def scrape() -> int:
        return client.get(
            "/metrics",
            HTTP_HOST=host,
            REMOTE_ADDR="172.18.0.9",
            HTTP_AUTHORIZATION="Bearer a-test-token",
        ).status_code

    settings.ALLOWED_HOSTS = [FILLED_IN["SITE_DOMAIN"]]
    assert scrape() == 400
    settings.ALLOWED_HOSTS = [FILLED_IN["SITE_DOMAIN"], host.partition(":")[0]]
    assert scrape() == 200


# --- Grafana -----------------------------------------------------------------------------------


def datasource() -> dict[str, Any]:
    [source] = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return source


def test_grafana_reads_prometheus_under_a_fixed_uid() -> None:
    source = datasource()
    prometheus = compose()["services"]["prometheus"]

    assert source["type"] == "prometheus" and source["uid"]
    host, _, port = source["url"].removeprefix("http://").partition(":")
    assert host == "prometheus" and port in prometheus["expose"]


def test_every_dashboard_panel_names_the_provisioned_datasource() -> None:
    uid = datasource()["uid"]
    panels = [panel for panel in dashboard_panels() if panel["type"] != "row"]
    assert len(panels) >= 12
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
    ids = [panel["id"] for panel in dashboard_panels()]
    assert len(ids) == len(set(ids))
    titles = {panel["title"] for panel in dashboard_panels() if panel["type"] == "row"}
    assert {"Visitors", "Queue and speed", "Backends", "GPUs"} <= titles


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """{container path: host source} of a service's volumes (read-only flags dropped)."""
    found = {}
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        found[target] = source
    return found


def test_grafana_finds_its_provisioning_and_dashboards_where_compose_mounts_them() -> None:
    grafana = mounts(compose()["services"]["grafana"])
    [provider] = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]

    assert (ROOT / grafana["/etc/grafana/provisioning"]).resolve() == DATASOURCES.parents[1]
    assert provider["type"] == "file"
    assert (ROOT / grafana[provider["options"]["path"]]).resolve() == DASHBOARDS_DIR
    assert not grafana["/var/lib/grafana"].startswith((".", "/")), "a named volume"
    prometheus = mounts(compose()["services"]["prometheus"])
    assert (ROOT / prometheus["/etc/prometheus"]).resolve() == PROMETHEUS_DIR
    assert not prometheus["/prometheus"].startswith((".", "/")), "a named volume"


def test_grafana_refuses_to_start_without_an_admin_password(tmp_path: Path) -> None:
    grafana = resolved_services(deployment_env())["grafana"]
    entrypoint = grafana["entrypoint"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "", ".env.example leaves it"

    def start(password: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            entrypoint,
            env={"PATH": "/usr/bin:/bin", "GF_SECURITY_ADMIN_PASSWORD": password},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )

    refused = start("")
    assert refused.returncode == 1 and "GRAFANA_ADMIN_PASSWORD" in refused.stderr
    # With a password it goes on to Grafana's own entrypoint (absent here).
    started = start("s3cret")
    assert started.returncode == 127 and "run.sh" in started.stderr


# --- The compose profile ------------------------------------------------------------------------


def test_monitoring_services_start_only_with_their_profile() -> None:
    services = compose()["services"]
    in_profile = {name for name, s in services.items() if PROFILE in s.get("profiles", [])}

    assert in_profile == MONITORING_SERVICES
    assert all(services[name]["profiles"] == [PROFILE] for name in MONITORING_SERVICES)
    declared = set(compose()["volumes"])
    assert {"prometheus-data", "grafana-data"} <= declared


def test_the_ports_override_publishes_monitoring_on_loopback_only() -> None:
    override = yaml.safe_load(PORTS_OVERRIDE.read_text())["services"]
    merged = interpolate_tree(compose(), deployment_env())
    for name, service in override.items():
        assert name in MONITORING_SERVICES, name
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), name
        merged["services"][name]["ports"] = service["ports"]

    assert schema_errors(merged, json.loads(SCHEMA_FILE.read_text())) == []


def test_docker_compose_lists_the_monitoring_services_only_with_the_profile(
    tmp_path: Path,
) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed here")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in deployment_env().items()))

    def services(*options: str) -> set[str]:
        files = ["-f", str(COMPOSE_FILE), "-f", str(PORTS_OVERRIDE)]
        result = subprocess.run(
            [*command, *files, "--env-file", str(env_file), *options, "config", "--services"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return set(result.stdout.split())

    default = services()
    assert default and not default & MONITORING_SERVICES
    assert services("--profile", PROFILE) == default | MONITORING_SERVICES
