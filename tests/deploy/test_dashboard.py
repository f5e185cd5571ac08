"""The monitoring stack agrees with the code: every query of the Grafana dashboard names a metric that Atelier
exports, every metric it exports is documented in docs/metrics.md (and nothing there is stale), and the
Prometheus and Grafana files that docker-compose.yml mounts point at the right services and paths.

What is exported is read from prometheus_client's real registry in a fresh Python process that imports every
module of Atelier's packages (each process's metrics are module-level, defined on import), not from a list kept
by hand. No Docker engine is needed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DASHBOARD_FILE = ROOT / "deploy" / "grafana" / "dashboards" / "atelier.json"
DATASOURCES_FILE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS_FILE = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "atelier.yml"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"
PACKAGES = ("atelier", "bots", "jobs", "engine", "storage", "quotas")

_REGISTRY_SCRIPT = """
import importlib, json, pkgutil, sys, warnings
warnings.simplefilter("ignore")
from prometheus_client import REGISTRY
for package in sys.argv[1:]:
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if not info.name.endswith(".__main__"):
            importlib.import_module(info.name)
labels = {}
for collector, names in REGISTRY._collector_to_names.items():  # label names, known before any series exists
    for name in names:
        labels[name] = list(getattr(collector, "_labelnames", ()))
print(json.dumps({f.name: [f.type, labels.get(f.name, labels.get(f.name + "_total", []))] for f in REGISTRY.collect()}))
"""

# The series names prometheus_client writes for a family of each type.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}


@pytest.fixture(scope="module")
def registry() -> dict[str, tuple[str, list[str]]]:
    """{family name: (type, label names)} of the real registry once every module of Atelier is imported."""
    done = subprocess.run(
        [sys.executable, "-c", _REGISTRY_SCRIPT, *PACKAGES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {name: (kind, labels) for name, (kind, labels) in json.loads(done.stdout.splitlines()[-1]).items()}


@pytest.fixture(scope="module")
def families(registry: dict[str, tuple[str, list[str]]]) -> dict[str, str]:
    """{family name: type}."""
    return {name: kind for name, (kind, _) in registry.items()}


def series_names(families: dict[str, str]) -> set[str]:
    return {name + suffix for name, kind in families.items() for suffix in _SUFFIXES[kind]}


# ----- PromQL ---------------------------------------------------------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset"}
_KEYWORDS |= {"bool", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers left once strings, label matchers, ranges and
    grouping clauses are removed, that are not functions, aggregations, keywords or numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    found = set()
    for match in re.finditer(r"(?<![\w.:$])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        name, call = match[1], match[2]
        if call or name.lower() in _KEYWORDS or re.fullmatch(r"e\d*", name):
            continue
        found.add(name)
    return found


def test_metric_names_reads_promql() -> None:
    """The extractor itself: functions, aggregations, grouping, matchers, ranges and numbers are not metrics."""
    expr = (
        'histogram_quantile(0.95, sum by (le, tier) (rate(atelier_a_bucket{model="x{y}"}[5m]))) '
        "/ on (gpu) group_left sum without (job) (b_total offset 1h) * 1e-9 + max(c) by (queue) > bool 2"
    )
    assert metric_names(expr) == {"atelier_a_bucket", "b_total", "c"}
    assert metric_names("up") == {"up"}


# ----- the dashboard --------------------------------------------------------------------------------------------


def dashboard_panels() -> list[dict]:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return [panel for panel in panels if panel["type"] != "row"]


def test_every_dashboard_query_names_an_exported_metric(families: dict[str, str]) -> None:
    exported = series_names(families)
    queries = [(panel["title"], t["expr"]) for panel in dashboard_panels() for t in panel.get("targets", [])]
    assert len(queries) >= 20, "the dashboard's queries were not found"
    unknown = {
        f"{title}: {name}" for title, expr in queries for name in metric_names(expr) if name not in exported
    }
    assert not unknown, f"dashboard queries name metrics the code does not export: {sorted(unknown)}"
    used = {name for _, expr in queries for name in metric_names(expr)}
    for needed in ("atelier_queue_length", "atelier_gpu_memory_used_bytes", "atelier_bot_ack_seconds_bucket"):
        assert needed in used, f"no panel shows {needed}"


def test_dashboard_covers_queue_gpu_latency_errors_throughput_and_bots() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    rows = {panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"}
    assert rows == {"Queue", "Latency", "Throughput per model", "Errors", "GPU", "Bots"}
    uid = yaml.safe_load(DATASOURCES_FILE.read_text())["datasources"][0]["uid"]
    for panel in dashboard_panels():
        assert panel["targets"], f"{panel['title']} has no query"
        assert panel["datasource"]["uid"] == uid, f"{panel['title']} uses another data source"
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


# ----- the documentation ----------------------------------------------------------------------------------------


def documented() -> set[str]:
    """The metric names in the first column of docs/metrics.md's tables."""
    return set(re.findall(r"^\| `(atelier_\w+)` \|", METRICS_DOC.read_text(), flags=re.MULTILINE))


def exposed_name(name: str, kind: str) -> str:
    """The name an operator types for a family: a counter's with `_total`, others as they are."""
    return name + "_total" if kind == "counter" else name


def test_every_exported_metric_is_documented_and_nothing_documented_is_gone(families: dict[str, str]) -> None:
    ours = {exposed_name(name, kind) for name, kind in families.items() if name.startswith("atelier_")}
    assert len(ours) >= 20, "Atelier's metrics were not found in the registry"
    assert not ours - documented(), f"not in docs/metrics.md: {sorted(ours - documented())}"
    assert not documented() - ours, (
        f"docs/metrics.md names metrics the code lacks: {sorted(documented() - ours)}"
    )


def test_no_metric_is_labelled_by_tenant_or_person(registry: dict[str, tuple[str, list[str]]]) -> None:
    ours = {name: labels for name, (_, labels) in registry.items() if name.startswith("atelier_")}
    assert any(labels for labels in ours.values()), "the label names were not read"
    unbounded = {
        "tenant",
        "guild",
        "workspace",
        "team",
        "user",
        "member",
        "channel",
        "job",
        "job_id",
        "prompt",
    }
    labelled = {
        name: sorted(set(labels) & unbounded) for name, labels in ours.items() if set(labels) & unbounded
    }
    assert not labelled, f"unbounded labels: {labelled}"


# ----- Prometheus and Grafana in docker-compose.yml ---------------------------------------------------------------


def mounts(service: str) -> dict[str, Path]:
    """{path in the container: path in the repository} of a service's bind mounts."""
    found = {}
    for volume in COMPOSE["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            found[target] = (ROOT / source).resolve()
    return found


def test_prometheus_scrapes_every_atelier_service_on_its_metrics_port() -> None:
    services = COMPOSE["services"]
    config_path = next(a.split("=", 1)[1] for a in services["prometheus"]["command"] if "--config.file" in a)
    assert mounts("prometheus")[config_path] == PROMETHEUS_FILE.resolve()
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    scraped = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                scraped[name] = sd["port"]
    atelier = {
        name
        for name, service in services.items()
        if "build" in service and (service.get("command") or [""])[0] != "migrate"
    }
    assert atelier == set(scraped), f"scraped {sorted(scraped)}, Atelier services {sorted(atelier)}"
    for name, port in scraped.items():
        environment = services[name]["environment"]
        assert str(environment["ATELIER_METRICS_PORT"]) == str(port), name


def test_grafana_is_provisioned_from_the_repository() -> None:
    grafana = mounts("grafana")
    assert grafana["/etc/grafana/provisioning"] == DATASOURCES_FILE.parents[1].resolve()
    datasource = yaml.safe_load(DATASOURCES_FILE.read_text())["datasources"][0]
    assert datasource["type"] == "prometheus"
    host, port = re.fullmatch(r"http://([\w-]+):(\d+)", datasource["url"]).groups()
    assert host in COMPOSE["services"] and port == "9090"
    folder = yaml.safe_load(PROVIDERS_FILE.read_text())["providers"][0]["options"]["path"]
    assert grafana[folder] == DASHBOARD_FILE.parent.resolve()
    password = COMPOSE["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${") and password.endswith("}"), "the admin password comes from .env"
