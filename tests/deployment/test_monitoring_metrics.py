"""Every metric the alert rules and the Grafana dashboard of the monitoring profile name
(deploy/monitoring/, tests/deployment/test_monitoring.py) is one that really exists.

The playground's are read from a /metrics page rendered here, TGI's from its router's list
(tests/fixtures/tgi-metrics.txt, from the TGI wire reference), the GPUs' from a recorded
dcgm-exporter page (tests/fixtures/dcgm-exporter.txt), Redis's and PostgreSQL's from lists
taken from the exporters' sources (tests/fixtures/redis-exporter-metrics.txt,
postgres-exporter-metrics.txt). A misspelt name or label would leave a panel empty and an
alert silent forever, so the names are checked, and the label names and code values of
every `metric{label="value"}` matcher too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from playground.ops import metrics
from tests.deployment.test_monitoring import expressions
from tests.ops.test_metrics import finished

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
# Labels Prometheus gives every series it scrapes.
TARGET_LABELS = {"job", "instance"}
# Series Prometheus makes itself for every target.
PROMETHEUS_OWN = {"up": set[str]()}
# Labels of the playground's whose values are codes its source spells out.
CODE_LABELS = {"reason", "status", "code"}


# --- Reading PromQL, pragmatically -------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])[A-Za-z_:][\w:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: identifiers that are not functions,
    aggregations, keywords, label names, strings, durations or Grafana's variables."""
    expr = _STRING.sub('""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = _GROUPING.sub(" ", expr)
    names = set()
    for match in _IDENTIFIER.finditer(expr):
        called = expr[match.end() :].lstrip().startswith("(")
        if not called and match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def label_matchers(expr: str) -> Iterator[tuple[str, str, list[str]]]:
    """(metric, label, the values it may take) for each `metric{label="value"}` matcher."""
    for selector in _SELECTOR.finditer(expr):
        for label, operator, value in _MATCHER.findall(selector.group(2)):
            yield selector.group(1), label, value.split("|") if "~" in operator else [value]


def test_the_promql_reader_finds_metric_names_and_skips_everything_else() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, backend) (rate(a_seconds_bucket{code=~"x|y"}'
        "[$__rate_interval]))) / on (instance) group_left max(b_total offset 5m) > 1e3 "
        "and sum without (gpu) (c:recorded) unless bool d"
    )

    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c:recorded", "d"}
    assert list(label_matchers(expr)) == [("a_seconds_bucket", "code", ["x", "y"])]


# --- What really exists ---------------------------------------------------------------------


def exposed(text: str) -> dict[str, set[str]]:
    """{sample name: its label names} of a page in Prometheus's text format."""
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


_SUFFIXES = {
    "counter": {"": set()},
    "gauge": {"": set()},
    "histogram": {"_bucket": {"le"}, "_sum": set(), "_count": set()},
    "summary": {"": {"quantile"}, "_sum": set(), "_count": set()},
}


def listed(path: Path) -> tuple[dict[str, set[str]], dict[tuple[str, str], set[str]]]:
    """A vendored list of `name type labels` lines: ({sample name: label names}, {(sample
    name, label): the values it takes} where the list gives them as `label=a|b`)."""
    names: dict[str, set[str]] = {}
    values: dict[tuple[str, str], set[str]] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, kind, labels = line.split()
        label_names = set()
        for label in [] if labels == "-" else labels.split(","):
            label_name, _, label_values = label.partition("=")
            label_names.add(label_name)
            for suffix in _SUFFIXES[kind]:
                if label_values:
                    values[(name + suffix, label_name)] = set(label_values.split("|"))
        for suffix, extra in _SUFFIXES[kind].items():
            names[name + suffix] = label_names | extra
    return names, values


@pytest.fixture
def playground_metrics(client: Client, backend: str) -> dict[str, set[str]]:
    """The playground's /metrics once every series has something to show: a backend, a
    refusal and an answer that ended in an error."""
    metrics.record_admitted()
    metrics.record_rejected("queue_full")
    finished("monitoring", wait=2.0, ttft=0.4, tokens=3, code="overloaded")
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    return exposed(response.content.decode())


def known_metrics(playground: dict[str, set[str]]) -> dict[str, dict[str, set[str]]]:
    """{metric name prefix: {sample name: label names}}, one entry per source."""
    return {
        "playground_": playground,
        "tgi_": listed(FIXTURES / "tgi-metrics.txt")[0],
        "DCGM_": exposed((FIXTURES / "dcgm-exporter.txt").read_text()),
        "redis_": listed(FIXTURES / "redis-exporter-metrics.txt")[0],
        "pg_": listed(FIXTURES / "postgres-exporter-metrics.txt")[0],
    }


def lookup(name: str, known: dict[str, dict[str, set[str]]]) -> set[str] | None:
    """The label names of `name` where its source serves it, else None."""
    if name in PROMETHEUS_OWN:
        return PROMETHEUS_OWN[name]
    for prefix, source in known.items():
        if name.startswith(prefix):
            return source.get(name)
    return None


@pytest.mark.django_db(transaction=True)
def test_every_metric_the_alerts_and_the_dashboard_use_really_exists(
    playground_metrics: dict[str, set[str]],
) -> None:
    known = known_metrics(playground_metrics)
    assert {"playground_queue_wait_seconds_bucket", "playground_backend_up"} <= set(
        playground_metrics
    )
    used: dict[str, set[str]] = {}
    for where, expr in expressions().items():
        for name in metric_names(expr):
            used.setdefault(name, set()).add(where)
    assert {"playground_queue_waiting", "tgi_queue_size", "DCGM_FI_DEV_FB_USED"} <= set(used)
    assert {"redis_memory_max_bytes", "pg_up"} <= set(used)
    unknown = {name: sorted(where) for name, where in used.items() if lookup(name, known) is None}
    assert unknown == {}


@pytest.mark.django_db(transaction=True)
def test_label_matchers_name_labels_and_values_that_exist(
    playground_metrics: dict[str, set[str]],
) -> None:
    known = known_metrics(playground_metrics)
    tgi_values = listed(FIXTURES / "tgi-metrics.txt")[1]
    source = "\n".join(
        path.read_text()
        for folder in ("playground", "inference")
        for path in (ROOT / folder).rglob("*.py")
    )
    checked = 0
    for where, expr in expressions().items():
        for name, label, values in label_matchers(expr):
            labels = lookup(name, known)
            assert labels is not None, f"{where}: {name}"
            assert label in labels | TARGET_LABELS, f"{where}: {name} has no label {label}"
            if name.startswith("playground_") and label in CODE_LABELS:
                missing = [value for value in values if f'"{value}"' not in source]
                assert missing == [], f"{where}: no {label} is ever {missing}"
            if (name, label) in tgi_values:
                assert set(values) <= tgi_values[(name, label)], f"{where}: {label}={values}"
            checked += 1
    assert checked >= 4
