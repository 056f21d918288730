"""docker-compose.yml, checked by parsing it (Docker cannot run on the test machines): Redis persisting to
an append-only file, app replicas on the shared Redis behind nginx, whose config points at them, and the
`gpu` profile with its image."""

import ipaddress
import re
from pathlib import Path

import pytest
import yaml

from app.config import Settings

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


def test_redis_keeps_sessions_across_restarts_in_an_append_only_file_on_a_named_volume():
    """tests/api/test_durable_sessions.py restarts a redis-server started with these very flags."""
    redis = COMPOSE["services"]["redis"]
    binary, *flags = redis["command"]
    assert binary == "redis-server" and len(flags) % 2 == 0
    options = dict(zip(flags[::2], flags[1::2], strict=True))
    assert options["--appendonly"] == "yes" and options["--appendfsync"] == "everysec"
    volume, target = redis["volumes"][0].split(":")
    assert target == "/data" and volume in COMPOSE["volumes"]  # named (declared), not a bind mount
    assert "--dir" not in options  # the redis image writes to /data, the volume


def test_replicas_behind_the_balancer_trust_its_forwarded_for_header():
    trusted = Settings(trusted_proxies=COMPOSE["services"]["replica"]["environment"]["PARLEY_TRUSTED_PROXIES"])
    docker_pools = ("172.17.0.0/16", "172.31.0.0/16", "192.168.0.0/20")  # Docker's default address pools
    assert all(any(ipaddress.ip_network(pool).subnet_of(net) for net in trusted.trusted_proxy_networks)
               for pool in docker_pools)
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in (ROOT / "deploy/nginx.conf").read_text()
    assert "PARLEY_TRUSTED_PROXIES" not in COMPOSE["services"]["app"]["environment"]  # published: its peer is the client


def test_gpu_profile_reserves_an_nvidia_gpu_for_an_image_with_cuda_wheels():
    services = COMPOSE["services"]
    gpu, app = services["app-gpu"], services["app"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["environment"]["PARLEY_DEVICE"] == "cuda"
    assert gpu["environment"]["PARLEY_REDIS_URL"] == app["environment"]["PARLEY_REDIS_URL"]
    assert gpu["depends_on"]["redis"]["condition"] == "service_healthy"
    assert gpu["healthcheck"] == app["healthcheck"]
    published = {port.split(":")[0] for service in services.values() for port in service.get("ports", [])
                 if service is not gpu}
    assert gpu["ports"][0].split(":")[0] not in published  # runs beside `app` without a port clash
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1 and devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert devices[0].get("count", "all") == "all" or devices[0]["count"] >= 1

    assert gpu["build"]["context"] == "."
    dockerfile = (ROOT / gpu["build"]["dockerfile"]).read_text()
    pin = re.search(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    install = re.search(r"pip install -q torch==(\S+) --index-url https://download\.pytorch\.org/whl/\$\{TORCH_CUDA}",
                        dockerfile)
    assert install and install.group(1) == pin  # the same torch as the CPU image, its CUDA build
    assert re.search(r"^ARG TORCH_CUDA=cu\d+$", dockerfile, re.M)
    assert "pip uninstall -q -y onnxruntime" in dockerfile and '"onnxruntime-gpu==${ORT}"' in dockerfile
    assert re.search(r"^ENV .*PARLEY_DEVICE=cuda", dockerfile, re.M | re.S)
    assert dockerfile.index("pip uninstall -q -y onnxruntime") > dockerfile.index("make install")  # swap after


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_images_install_from_the_lock_file(dockerfile):
    """`make install` is constrained by requirements.lock (and depends on it): an image must copy it in."""
    copied = " ".join(line for line in (ROOT / dockerfile).read_text().splitlines() if line.startswith("COPY"))
    assert "requirements.lock" in copied.split() and "make install" in (ROOT / dockerfile).read_text()
