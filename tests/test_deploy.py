"""``deploy/`` cannot drift from the app: no cluster or Docker engine runs here, so the
manifests are parsed and checked against what the code really serves and reads."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from speko_bridge.app import create_app
from speko_bridge.config import load_settings

from .conftest import base_env

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


def k8s_docs() -> list[dict]:
    """Every Kubernetes object (the kustomization is kustomize's file, not an object)."""
    return [d for f in sorted(K8S.glob("*.yaml")) if f.name != "kustomization.yaml"
            for d in yaml.safe_load_all(f.read_text()) if d]


def one(kind: str, name: str | None = None) -> dict:
    found = [d for d in k8s_docs() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def known_env_vars() -> set[str]:
    source = (ROOT / "speko_bridge" / "config.py").read_text()
    return set(re.findall(r'"((?:SPEKO|OPENAI|GOOGLE|XAI)_[A-Z_]+)"', source))


def served_paths(tmp_path) -> set[str]:
    app = create_app(load_settings(base_env(tmp_path)))
    return {getattr(route, "path", None) for route in app.routes}


def dockerfile() -> list[str]:
    """Instructions of the final stage, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return lines[last_from:]


def instruction(name: str) -> list[str]:
    return [line[len(name) + 1:].strip() for line in dockerfile() if line.startswith(name + " ")]


def container() -> dict:
    return one("Deployment", "speko-bridge")["spec"]["template"]["spec"]["containers"][0]


def config_map() -> dict:
    return one("ConfigMap", "speko-bridge")["data"]


def serve_port(argv: list[str]) -> int:
    return int(argv[argv.index("--port") + 1])


# ------------------------------------------------------------------------------- kubernetes


def test_every_manifest_parses_and_kustomization_lists_them_all():
    for doc in k8s_docs():
        assert {"apiVersion", "kind", "metadata"} <= doc.keys() and doc["metadata"]["name"], doc
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    present = {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(listed) == sorted(present)


def test_probes_hit_routes_the_app_serves_on_the_container_port(tmp_path):
    c = container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == serve_port(c["args"]) == 8000
    paths = served_paths(tmp_path)
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path and path in paths, probe
        assert ports[get["port"]] == 8000, probe
    annotations = one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in paths and int(annotations["prometheus.io/port"]) == 8000


def test_grace_period_covers_prestop_and_the_drain():
    spec = one("Deployment")["spec"]["template"]["spec"]
    pre_stop = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(config_map()["SPEKO_DRAIN_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + drain + 10


def test_service_hpa_and_pdb_select_the_deployment_pods():
    deployment = one("Deployment", "speko-bridge")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = one("Service", "speko-bridge")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["name"] for p in container()["ports"]} >= {p["targetPort"] for p in service["spec"]["ports"]}
    hpa = one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "speko-bridge"}
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    assert one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_config_and_secret_hold_only_variables_the_app_reads():
    known = known_env_vars()
    assert {"SPEKO_REDIS_URL", "SPEKO_DRAIN_SECONDS", "SPEKO_MINT_RATE_PER_MINUTE"} <= known
    secret = one("Secret", "speko-bridge")["stringData"]
    for name in [*config_map(), *secret]:
        assert name in known, f"{name} is not read by speko_bridge/config.py"
    assert {"SPEKO_API_KEYS", "SPEKO_SIGNING_KEY"} <= secret.keys()
    refs = {(r.get("configMapRef") or r.get("secretRef"))["name"] for r in container()["envFrom"]}
    assert refs == {"speko-bridge"}


def test_config_map_loads_as_valid_settings(tmp_path):
    env = {**config_map(), **base_env(tmp_path)}
    settings = load_settings(env)
    assert settings.redis_url == config_map()["SPEKO_REDIS_URL"]
    assert settings.drain_seconds == float(config_map()["SPEKO_DRAIN_SECONDS"])


def test_pod_runs_as_non_root_with_a_read_only_root():
    pod = one("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    c = container()["securityContext"]
    assert c["readOnlyRootFilesystem"] is True and c["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"] for m in container()["volumeMounts"]}
    assert config_map()["SPEKO_DATA_DIR"] in mounts and "/tmp" in mounts


def test_redis_service_matches_the_url_the_bridge_uses():
    url = config_map()["SPEKO_REDIS_URL"]
    host, port = re.match(r"redis://([^:/]+):(\d+)/", url).groups()
    service = one("Service", host)
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    redis = one("StatefulSet", host)["spec"]["template"]["spec"]["containers"][0]
    assert "--appendonly" in redis["args"] and redis["args"][redis["args"].index("--appendonly") + 1] == "yes"


def test_ingress_routes_the_api_with_long_timeouts_and_not_metrics(tmp_path):
    ingress = one("Ingress")
    notes = ingress["metadata"]["annotations"]
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(notes["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert "/v1" in paths and not any(p in ("/", "/metrics") for p in paths)
    served = served_paths(tmp_path)
    assert {"/v1/sessions", "/v1/realtime", "/openapi.yaml"} <= served


# ------------------------------------------------------------------------------- docker


def test_dockerfile_runs_the_server_as_non_root_on_the_exposed_port():
    cmd = yaml.safe_load(instruction("CMD")[0])  # exec form is a JSON (YAML) list
    assert cmd[:2] == ["speko-bridge", "serve"]
    assert instruction("EXPOSE") == [str(serve_port(cmd))]
    user = instruction("USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    health = instruction("HEALTHCHECK")[0]
    assert f"127.0.0.1:{serve_port(cmd)}/healthz" in health
    assert instruction("STOPSIGNAL") == ["SIGTERM"]


def test_dockerfile_copies_what_the_package_build_needs():
    text = (DEPLOY / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY") and "--from" not in line:
            for source in shlex.split(line)[1:-1]:
                assert (ROOT / source).exists(), f"{source} is not in the repository"


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_runs_two_replicas_sharing_redis_and_keys():
    services = compose()["services"]
    bridges = [s for name, s in services.items() if name.startswith("bridge")]
    assert len(bridges) == 2
    envs = [b["environment"] for b in bridges]
    assert envs[0] == envs[1]
    assert envs[0]["SPEKO_REDIS_URL"].startswith("redis://redis:6379")
    assert "redis" in services and "--appendonly" in services["redis"]["command"]
    for name in envs[0]:
        assert name in known_env_vars(), name
    grace = int(bridges[0]["stop_grace_period"].rstrip("s"))
    assert grace >= float(envs[0]["SPEKO_DRAIN_SECONDS"]) + 10
    assert bridges[0]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / bridges[0]["build"]["context"] / bridges[0]["build"]["dockerfile"]).is_file()
    proxy = services["proxy"]
    assert any(v.startswith("./nginx.conf:") for v in proxy["volumes"])


@pytest.fixture
def nginx() -> str:
    return (DEPLOY / "nginx.conf").read_text()


def test_nginx_upgrades_websockets_to_both_replicas_and_hides_metrics(nginx):
    assert "proxy_http_version 1.1;" in nginx
    assert re.search(r"proxy_set_header Upgrade \$http_upgrade;", nginx)
    assert re.search(r"proxy_set_header Connection \$connection_upgrade;", nginx)
    assert re.search(r"map \$http_upgrade \$connection_upgrade", nginx)
    servers = re.findall(r"server (bridge-[ab]):(\d+)", nginx)
    assert sorted(servers) == [("bridge-a", "8000"), ("bridge-b", "8000")]
    assert sorted(compose()["services"]) == sorted({"redis", "proxy", *(s for s, _ in servers)})
    timeout = re.search(r"proxy_read_timeout (\d+)s;", nginx)
    assert timeout and int(timeout.group(1)) >= 3600
    assert re.search(r"location = /metrics \{\s*return 404;", nginx)


# ------------------------------------------------------------------------------- resume routing


def minted_url_parameter(tmp_path) -> str:
    """The query parameter that carries the session id in the url the app mints."""
    from urllib.parse import parse_qs, urlsplit

    from starlette.testclient import TestClient

    from .conftest import API_KEY

    env = {**base_env(tmp_path), "OPENAI_API_KEY": "sk-unused", "SPEKO_OPENAI_URL": "ws://127.0.0.1:9/"}
    app = create_app(load_settings(env))
    with TestClient(app) as client:
        r = client.post("/v1/sessions", json={"provider": "openai", "model": "gpt-realtime"},
                        headers={"Authorization": f"Bearer {API_KEY}"})
        assert r.status_code == 201, r.text
        body = r.json()
    query = parse_qs(urlsplit(body["url"]).query)
    (name,) = [k for k, v in query.items() if v == [body["sessionId"]]]
    return name


def test_nginx_routes_every_socket_of_a_session_to_one_replica(nginx, tmp_path):
    """A resume must reach the replica that holds the session: the compose proxy hashes
    (consistently) on the parameter the minted url carries; requests without it spread."""
    name = minted_url_parameter(tmp_path)
    upstream = re.search(r"upstream speko_bridge \{(.*?)\}", nginx, re.S).group(1)
    route = re.search(r"hash \$(\w+) consistent;", upstream)
    assert route, "the upstream must hash consistently"
    variable = route.group(1)
    if variable != f"arg_{name}":  # through a map that falls back for requests without it
        mapping = re.search(rf"map \$arg_{name} \${variable} \{{(.*?)\}}", nginx, re.S)
        assert mapping, f"${variable} must be mapped from $arg_{name}"
        rows = dict(line.split(None, 1) for line in mapping.group(1).strip().splitlines())
        assert rows["default"].rstrip(";").strip() == f"$arg_{name}"


def test_ingress_routes_every_socket_of_a_session_to_one_pod(tmp_path):
    name = minted_url_parameter(tmp_path)
    notes = one("Ingress")["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/upstream-hash-by"] == f"$arg_{name}"
