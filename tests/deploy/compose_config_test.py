#!/usr/bin/python3
"""docker-compose.yml, alone and with docker-compose.gpu.yml, as docker-compose itself reads
them (`docker-compose config`), and the Prometheus and Grafana files they mount: each must
load, and they must agree with each other (service names, ports, paths), since a mismatch
between them shows only as an empty dashboard or a target that is never scraped.

Needs docker-compose (v1) and promtool; no Docker daemon. Exit 0 when every check passes.
"""
import os
import subprocess
import sys
import tempfile

import yaml

ROOT = os.environ.get("METATRAIN_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
failures = 0
# docker-compose reads a .env beside the files; the checks must not see a developer's.
EMPTY_ENV_FILE = tempfile.NamedTemporaryFile(prefix="metatrain-empty-", suffix=".env")


def check(what, ok, detail=""):
    global failures
    if ok:
        print(f"ok: {what}")
    else:
        failures += 1
        print(f"FAIL: {what}" + (f" ({detail})" if detail else ""))


def compose_config(files, **env):
    """`docker-compose config` of the given files, with only the given settings."""
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("METATRAIN_", "COMPOSE_", "PROMETHEUS_", "GRAFANA_",
                                        "LIBTORCH_"))}
    environment.update(env)
    command = ["docker-compose", "--env-file", EMPTY_ENV_FILE.name]
    for f in files:
        command += ["-f", os.path.join(ROOT, f)]
    result = subprocess.run(command + ["config"], cwd=ROOT, env=environment,
                            capture_output=True, text=True)
    return result


def mounts(service):
    """{container path: (source, read_only)} from the short volume syntax config prints."""
    out = {}
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        out[parts[1]] = (parts[0], len(parts) > 2 and parts[2] == "ro")
    return out


def published(service, target):
    """(host address, host port) that a container port is published on, or None."""
    for port in service.get("ports", []):
        if isinstance(port, dict) and port.get("target") == target:
            return (port.get("host_ip", "0.0.0.0"), str(port.get("published")))
        if isinstance(port, str):
            parts = port.split("/")[0].split(":")  # [HOST_IP:]HOST_PORT:CONTAINER_PORT
            if parts[-1] == str(target):
                return (parts[0] if len(parts) == 3 else "0.0.0.0", parts[-2])
    return None


BASE = ["docker-compose.yml"]
GPU = ["docker-compose.yml", "docker-compose.gpu.yml"]

# --- both passes of `docker-compose config` -------------------------------------------------
runs = {}
for name, files in (("base", BASE), ("gpu", GPU)):
    result = compose_config(files)
    runs[name] = result
    check(f"docker-compose config ({' + '.join(files)}) exits 0", result.returncode == 0,
          result.stderr.strip()[-500:])
    check(f"docker-compose config ({' + '.join(files)}) prints no warning",
          "WARN" not in result.stderr, result.stderr.strip()[-500:])
if failures:
    sys.exit(1)
base = yaml.safe_load(runs["base"].stdout)
gpu = yaml.safe_load(runs["gpu"].stdout)
services = base["services"]

check("services are coordinator, worker, prometheus, grafana",
      set(services) == {"coordinator", "worker", "prometheus", "grafana"}, sorted(services))

coordinator, worker = services["coordinator"], services["worker"]
check("coordinator and worker images share one Dockerfile with their own targets",
      coordinator["build"]["dockerfile"] == worker["build"]["dockerfile"] == "deploy/docker/Dockerfile"
      and coordinator["build"]["target"] == "coordinator" and worker["build"]["target"] == "worker")
check("workers start after the coordinator is healthy",
      worker.get("depends_on", {}).get("coordinator", {}).get("condition") == "service_healthy",
      worker.get("depends_on"))
health = coordinator.get("healthcheck", {}).get("test", [])
check("the coordinator's health check is `metactl health` (grpc.health.v1) against its own port",
      "metactl" in health and any("127.0.0.1:50051" in a for a in health)
      and health[-1:] == ["health"], health)
check("workers connect to the coordinator service",
      "--coordinator=coordinator:50051" in worker["command"], worker["command"])

# --- security (docs/security.md): TLS, mutual TLS for workers, tokens -----------------------
SECRETS = "/etc/metatrain/secrets"
default_secrets = os.path.realpath(os.path.join(ROOT, "build", "cluster-secrets"))
check("the coordinator serves TLS, asks workers for certificates and checks tokens",
      {f"--tls_cert={SECRETS}/tls.crt", f"--tls_key={SECRETS}/tls.key",
       f"--tls_client_ca={SECRETS}/ca.crt", f"--tokens_file={SECRETS}/tokens",
       f"--worker_token_file={SECRETS}/worker-tokens"} <= set(coordinator["command"])
      and "--insecure" not in coordinator["command"], coordinator["command"])
check("the coordinator mounts only its own secrets, read-only",
      mounts(coordinator).get(SECRETS) == (os.path.join(default_secrets, "coordinator"), True),
      mounts(coordinator).get(SECRETS))
for name, files in (("worker", services["worker"]), ("gpu worker", gpu["services"]["worker"])):
    check(f"{name}s verify the coordinator, present a certificate and send the join token",
          {f"--tls_ca={SECRETS}/ca.crt", f"--tls_cert={SECRETS}/tls.crt",
           f"--tls_key={SECRETS}/tls.key", f"--token_file={SECRETS}/token"} <= set(files["command"])
          and "--insecure" not in files["command"], files["command"])
check("workers mount only the worker secrets (no job API tokens, no server key)",
      mounts(worker).get(SECRETS) == (os.path.join(default_secrets, "worker"), True),
      mounts(worker).get(SECRETS))
check("the health check speaks TLS to the coordinator",
      f"--tls_ca={SECRETS}/ca.crt" in health, health)
make_certs = os.path.join(ROOT, "deploy", "tls", "make-certs.sh")
with open(make_certs) as f:
    script = f.read()
for path in ("coordinator/tls.crt", "coordinator/tls.key", "coordinator/ca.crt", "coordinator/tokens",
             "coordinator/worker-tokens", "worker/tls.crt", "worker/tls.key", "worker/ca.crt",
             "worker/token"):
    check(f"deploy/tls/make-certs.sh makes {path}", path in script)
check("the server certificate names the compose service", "DNS:coordinator," in script)
check("coordinator port 50051 is published on localhost:50051 by default",
      published(coordinator, 50051) == ("127.0.0.1", "50051"), coordinator.get("ports"))
check("Prometheus and Grafana are published on localhost only by default",
      published(services["prometheus"], 9090) == ("127.0.0.1", "9090")
      and published(services["grafana"], 3000) == ("127.0.0.1", "3000"))

# --- volumes: checkpoints named, data read-only at the path jobs use ------------------------
coordinator_mounts = mounts(coordinator)
check("checkpoints live in the named volume `checkpoints`",
      coordinator_mounts.get("/var/lib/metatrain/checkpoints", ("",))[0] == "checkpoints"
      and "checkpoints" in base.get("volumes", {}), coordinator_mounts)
check("the coordinator writes checkpoints where it is told to",
      "--checkpoint_dir=/var/lib/metatrain/checkpoints" in coordinator["command"])
default_data = os.path.realpath(os.path.join(ROOT, "..", "shared", "data"))
for name in ("coordinator", "worker"):
    data = mounts(services[name]).get("/srv/shared/data")
    check(f"{name}: ../shared/data mounted read-only at /srv/shared/data",
          data == (default_data, True), data)
    cache = mounts(services[name]).get("/var/cache/metatrain")
    check(f"{name}: dataset cache in the named volume `dataset-cache`",
          cache is not None and cache[0] == "dataset-cache", cache)

moved = compose_config(BASE, METATRAIN_DATA_DIR="/srv/elsewhere", METATRAIN_PORT="15051",
                       METATRAIN_PUBLISH_IP="0.0.0.0", METATRAIN_SECRETS_DIR="/srv/secrets")
if moved.returncode == 0:
    moved_services = yaml.safe_load(moved.stdout)["services"]
    check("METATRAIN_DATA_DIR moves the data mount",
          mounts(moved_services["worker"]).get("/srv/shared/data") == ("/srv/elsewhere", True))
    check("METATRAIN_SECRETS_DIR moves the secrets mounts",
          mounts(moved_services["worker"]).get(SECRETS) == ("/srv/secrets/worker", True)
          and mounts(moved_services["coordinator"]).get(SECRETS) == ("/srv/secrets/coordinator", True))
    check("METATRAIN_PORT and METATRAIN_PUBLISH_IP move the published coordinator port",
          published(moved_services["coordinator"], 50051) == ("0.0.0.0", "15051"),
          moved_services["coordinator"].get("ports"))
else:
    check("docker-compose config with METATRAIN_DATA_DIR and METATRAIN_PORT exits 0", False, moved.stderr)

# --- the GPU override -----------------------------------------------------------------------
gpu_worker = gpu["services"]["worker"]
check("CPU workers reserve no device", "deploy" not in worker)
devices = (gpu_worker.get("deploy", {}).get("resources", {}).get("reservations", {})
           .get("devices", []))
check("GPU workers reserve an NVIDIA GPU",
      len(devices) == 1 and devices[0].get("driver") == "nvidia"
      and "gpu" in devices[0].get("capabilities", []), devices)
check("GPU workers run on cuda:0", "--device=cuda:0" in gpu_worker["command"], gpu_worker["command"])
check("GPU workers are built against the LibTorch named by a build argument",
      gpu_worker["build"].get("args", {}).get("LIBTORCH_URL", "").endswith(".zip")
      and gpu_worker["build"].get("target") == "worker", gpu_worker["build"])
check("the GPU worker image has its own name", gpu_worker["image"] != worker["image"])


def normalized(all_services):
    """Services without the worker, volume lists sorted (merging files reorders them)."""
    return {name: dict(s, volumes=sorted(s.get("volumes", [])))
            for name, s in all_services.items() if name != "worker"}


check("the GPU override changes only the workers", normalized(gpu["services"]) == normalized(services))
cuda_url = compose_config(GPU, LIBTORCH_CUDA_URL="file:///opt/libtorch-cu118.zip")
check("LIBTORCH_CUDA_URL chooses the CUDA LibTorch",
      cuda_url.returncode == 0 and yaml.safe_load(cuda_url.stdout)["services"]["worker"]["build"]
      ["args"]["LIBTORCH_URL"] == "file:///opt/libtorch-cu118.zip")

# --- Prometheus: config valid, and it scrapes what compose runs -----------------------------
prometheus = services["prometheus"]
prometheus_file = os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")
check("Prometheus reads deploy/prometheus/prometheus.yml",
      mounts(prometheus).get("/etc/prometheus/prometheus.yml") == (prometheus_file, True),
      mounts(prometheus))
promtool = subprocess.run(["promtool", "check", "config", prometheus_file],
                          capture_output=True, text=True)
check("promtool check config passes", promtool.returncode == 0, promtool.stdout + promtool.stderr)
with open(prometheus_file) as f:
    scrape = {job["job_name"]: job for job in yaml.safe_load(f)["scrape_configs"]}
metrics_port = coordinator["environment"]["METATRAIN_METRICS_LISTEN"].rsplit(":", 1)[1]
check("coordinator and workers serve metrics on one port",
      worker["environment"]["METATRAIN_METRICS_LISTEN"] == coordinator["environment"]["METATRAIN_METRICS_LISTEN"])
coordinator_targets = [t for group in scrape.get("metatrain-coordinator", {}).get("static_configs", [])
                       for t in group["targets"]]
check("Prometheus scrapes the coordinator service at its metrics port",
      coordinator_targets == [f"coordinator:{metrics_port}"], coordinator_targets)
dns = scrape.get("metatrain-worker", {}).get("dns_sd_configs", [{}])[0]
check("Prometheus finds every scaled worker through DNS of the service name",
      dns.get("names") == ["worker"] and dns.get("type") == "A" and str(dns.get("port")) == metrics_port, dns)

# --- Grafana: the provisioning points at what compose mounts and runs -----------------------
grafana_mounts = mounts(services["grafana"])
provisioning = os.path.join(ROOT, "deploy", "grafana", "provisioning")
check("Grafana is provisioned from deploy/grafana/provisioning",
      grafana_mounts.get("/etc/grafana/provisioning") == (provisioning, True), grafana_mounts)
with open(os.path.join(provisioning, "datasources", "prometheus.yml")) as f:
    datasources = yaml.safe_load(f)["datasources"]
check("the datasource is the compose Prometheus",
      [d["url"] for d in datasources] == ["http://prometheus:9090"]
      and published(prometheus, 9090) is not None, datasources)
with open(os.path.join(provisioning, "dashboards", "metatrain.yml")) as f:
    providers = yaml.safe_load(f)["providers"]
dashboards_dir = os.path.join(ROOT, "deploy", "grafana", "dashboards")
mounted_at = [path for path, (source, _) in grafana_mounts.items() if source == dashboards_dir]
check("the dashboard provider reads the folder deploy/grafana/dashboards is mounted at",
      len(providers) == 1 and providers[0]["type"] == "file"
      and [providers[0]["options"]["path"]] == mounted_at, (providers, mounted_at))

print(f"{failures} failed" if failures else "all checks passed")
sys.exit(1 if failures else 0)
