"""docker-compose.yml's `replicas` profile, checked by parsing it (Docker cannot run on the test
machines): app replicas on the shared Redis behind nginx, whose config points at them."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_default_services_run_without_a_profile():
    services = COMPOSE["services"]
    assert "profiles" not in services["redis"] and "profiles" not in services["app"]


def test_replicas_profile_runs_several_app_replicas_on_the_shared_redis():
    services = COMPOSE["services"]
    replica, app = services["replica"], services["app"]
    assert replica["profiles"] == ["replicas"] and replica["deploy"]["replicas"] >= 2
    assert replica["build"] == app["build"] and "ports" not in replica  # reached only through the balancer
    assert replica["environment"]["PARLEY_REDIS_URL"] == app["environment"]["PARLEY_REDIS_URL"]
    assert re.fullmatch(r"redis://redis:6379/\d+", replica["environment"]["PARLEY_REDIS_URL"])
    assert replica["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(replica["healthcheck"]["test"])


def test_load_balancer_fronts_the_replicas_with_the_config_in_deploy():
    lb = COMPOSE["services"]["lb"]
    assert lb["profiles"] == ["replicas"]
    assert lb["depends_on"]["replica"]["condition"] == "service_healthy"
    source, target = lb["volumes"][0].split(":")[:2]
    config = (ROOT / source).resolve()
    assert config.is_relative_to(ROOT / "deploy") and config.is_file() and target == "/etc/nginx/nginx.conf"
    text = config.read_text()
    listen = re.search(r"listen\s+(\d+);", text).group(1)
    assert any(port.endswith(f":{listen}") for port in lb["ports"])
    upstream = re.search(r"upstream\s+(\w+)\s*{([^}]*)}", text)
    assert re.search(r"server\s+replica:8000\b", upstream.group(2))  # the service name and the app's port
    assert f"proxy_pass http://{upstream.group(1)};" in text
    assert "proxy_buffering off;" in text  # SSE tokens are not held back
    assert text.count("{") == text.count("}")
