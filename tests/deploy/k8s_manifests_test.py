#!/usr/bin/python3
"""deploy/k8s: both kustomizations render with the kubectl on this machine (`kubectl
kustomize`, client-side), and the rendered objects are the ones a cluster needs: their kinds
and names, the coordinator's persistent checkpoints and its health probes over TLS, workers
that reach the coordinator's Service, the GPU variant's nvidia.com/gpu requests, Prometheus
annotations that point at real container ports, and TLS and tokens (docs/security.md): each
role mounts its own Secret, made by deploy/k8s/create-secrets.sh from the files
deploy/tls/make-certs.sh writes, and its flags read the files the Secret holds; the
manifests themselves hold no Secret. No cluster is contacted.

Needs kubectl (any version from 1.20, Debian 12's kubernetes-client, on). Exit 0 when every
check passes.
"""
import os
import subprocess
import sys

import yaml

ROOT = os.environ.get("METATRAIN_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "deploy", "k8s")
failures = 0


def check(what, ok, detail=""):
    global failures
    if ok:
        print(f"ok: {what}")
    else:
        failures += 1
        print(f"FAIL: {what}" + (f" ({detail})" if detail else ""))


def render(path):
    result = subprocess.run(["kubectl", "kustomize", path], capture_output=True, text=True,
                            env=dict(os.environ, KUBECONFIG=os.devnull))
    check(f"kubectl kustomize {os.path.relpath(path, ROOT)} exits 0", result.returncode == 0,
          result.stderr.strip()[-500:])
    if result.returncode != 0:
        return None
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(result.stdout) if o}


def container(objects, kind, name):
    return objects[(kind, name)]["spec"]["template"]["spec"]["containers"][0]


def env(c):
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def ports(c):
    return {p["name"]: p["containerPort"] for p in c.get("ports", [])}


base = render(os.path.join(K8S, "base"))
gpu = render(os.path.join(K8S, "overlays", "gpu"))
if base is None or gpu is None:
    sys.exit(1)

EXPECTED = {
    ("Namespace", "metatrain"),
    ("PersistentVolumeClaim", "metatrain-data"),
    ("Service", "coordinator"), ("Service", "coordinator-headless"),
    ("StatefulSet", "coordinator"),
    ("Deployment", "worker"),
}
for name, objects in (("base", base), ("gpu", gpu)):
    check(f"{name}: renders exactly the expected kinds and names", set(objects) == EXPECTED,
          sorted(set(objects) ^ EXPECTED))
    check(f"{name}: every namespaced object is in namespace metatrain",
          all(o["metadata"].get("namespace") == "metatrain"
              for key, o in objects.items() if key[0] != "Namespace"))

# --- coordinator ----------------------------------------------------------------------------
statefulset = base[("StatefulSet", "coordinator")]
coordinator = container(base, "StatefulSet", "coordinator")
check("one coordinator", statefulset["spec"]["replicas"] == 1)
check("the StatefulSet is governed by the headless Service",
      statefulset["spec"]["serviceName"] == "coordinator-headless"
      and base[("Service", "coordinator-headless")]["spec"].get("clusterIP") == "None")
claims = {t["metadata"]["name"]: t["spec"] for t in statefulset["spec"].get("volumeClaimTemplates", [])}
mounts = {m["name"]: m for m in coordinator.get("volumeMounts", [])}
check("checkpoints are on a ReadWriteOnce persistent volume claim",
      claims.get("checkpoints", {}).get("accessModes") == ["ReadWriteOnce"], claims)
check("the coordinator writes its checkpoints on that volume",
      f"--checkpoint_dir={mounts.get('checkpoints', {}).get('mountPath')}" in coordinator["args"],
      (coordinator["args"], mounts.get("checkpoints")))
check("coordinator listens on its grpc port",
      "--listen=0.0.0.0:50051" in coordinator["args"] and ports(coordinator).get("grpc") == 50051)
for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
    command = coordinator.get(probe, {}).get("exec", {}).get("command", [])
    check(f"coordinator {probe} is `metactl health` over TLS on port 50051",
          command[:1] == ["metactl"] and "--coordinator=127.0.0.1:50051" in command
          and "--tls_ca=/etc/metatrain/secrets/ca.crt" in command and command[-1:] == ["health"],
          coordinator.get(probe))
service_ports = {p["name"]: p for p in base[("Service", "coordinator")]["spec"]["ports"]}
check("the coordinator Service selects the coordinator pods",
      base[("Service", "coordinator")]["spec"]["selector"].items()
      <= statefulset["spec"]["template"]["metadata"]["labels"].items())
check("the coordinator Service exposes grpc 50051",
      service_ports.get("grpc", {}).get("port") == 50051
      and service_ports["grpc"].get("targetPort") in ("grpc", 50051), service_ports)

# --- workers --------------------------------------------------------------------------------
worker = container(base, "Deployment", "worker")
check("two CPU workers by default", base[("Deployment", "worker")]["spec"]["replicas"] == 2)
check("workers connect to the coordinator Service's grpc port",
      f"--coordinator=coordinator:{service_ports['grpc']['port']}" in worker["args"], worker["args"])
check("CPU workers request no GPU",
      "nvidia.com/gpu" not in str(worker.get("resources")) and "--device=cuda:0" not in worker["args"])
gpu_worker = container(gpu, "Deployment", "worker")
check("GPU workers request and are limited to one nvidia.com/gpu",
      gpu_worker["resources"]["requests"].get("nvidia.com/gpu") == 1
      and gpu_worker["resources"]["limits"].get("nvidia.com/gpu") == 1, gpu_worker["resources"])
check("GPU workers run their inner loops on cuda:0", "--device=cuda:0" in gpu_worker["args"])
check("GPU workers use the CUDA worker image", gpu_worker["image"].startswith("metatrain-worker-cuda:"),
      gpu_worker["image"])
check("GPU workers tolerate the nvidia.com/gpu taint",
      any(t.get("key") == "nvidia.com/gpu" for t in
          gpu[("Deployment", "worker")]["spec"]["template"]["spec"].get("tolerations", [])))
check("the GPU variant keeps the rest of the worker (volumes, env)",
      gpu_worker["volumeMounts"] == worker["volumeMounts"] and gpu_worker["env"] == worker["env"])
check("the GPU variant changes nothing but the workers",
      {k: v for k, v in gpu.items() if k != ("Deployment", "worker")}
      == {k: v for k, v in base.items() if k != ("Deployment", "worker")})

# --- shared by both roles: data, secrets, metrics -------------------------------------------
for kind, name in (("StatefulSet", "coordinator"), ("Deployment", "worker")):
    c = container(base, kind, name)
    pod = base[(kind, name)]["spec"]["template"]
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    by_name = {m["name"]: m for m in c.get("volumeMounts", [])}
    check(f"{name}: datasets mounted read-only where jobs look (/srv/shared/data)",
          by_name.get("data", {}).get("mountPath") == "/srv/shared/data"
          and by_name["data"].get("readOnly") is True
          and volumes.get("data", {}).get("persistentVolumeClaim", {}).get("claimName") == "metatrain-data")
    secret = f"metatrain-{name}-secrets"
    secret_mounts = [m for m in c.get("volumeMounts", []) if "secret" in volumes.get(m["name"], {})]
    check(f"{name}: only Secret {secret}, mounted read-only at /etc/metatrain/secrets",
          len(secret_mounts) == 1
          and volumes[secret_mounts[0]["name"]]["secret"]["secretName"] == secret
          and secret_mounts[0]["mountPath"] == "/etc/metatrain/secrets"
          and secret_mounts[0].get("readOnly") is True, secret_mounts)
    annotations = pod["metadata"].get("annotations", {})
    listen = env(c).get("METATRAIN_METRICS_LISTEN", "")
    check(f"{name}: Prometheus annotations point at the port the metrics are served on",
          annotations.get("prometheus.io/scrape") == "true"
          and annotations.get("prometheus.io/path") == "/metrics"
          and annotations.get("prometheus.io/port") == str(ports(c).get("metrics"))
          and listen.endswith(f":{annotations.get('prometheus.io/port')}"), (annotations, listen))
    check(f"{name}: runs as the images' non-root user",
          pod["spec"].get("securityContext", {}).get("runAsUser") == 10001)

# --- TLS and tokens: flags read the files that make-certs.sh puts in each role's Secret -------
SECRETS = "/etc/metatrain/secrets"
with open(os.path.join(ROOT, "deploy", "k8s", "create-secrets.sh")) as f:
    create_secrets = f.read()
with open(os.path.join(ROOT, "deploy", "tls", "make-certs.sh")) as f:
    make_certs = f.read()
for role, args, files in (
        ("coordinator", coordinator["args"],
         {"tls_cert": "tls.crt", "tls_key": "tls.key", "tls_client_ca": "ca.crt",
          "tokens_file": "tokens", "worker_token_file": "worker-tokens"}),
        ("worker", worker["args"],
         {"tls_ca": "ca.crt", "tls_cert": "tls.crt", "tls_key": "tls.key", "token_file": "token"}),
        ("worker", gpu_worker["args"],
         {"tls_ca": "ca.crt", "tls_cert": "tls.crt", "tls_key": "tls.key", "token_file": "token"})):
    for flag, file in files.items():
        check(f"{role}: --{flag} reads {file} of its Secret",
              f"--{flag}={SECRETS}/{file}" in args, args)
        check(f"deploy/tls/make-certs.sh writes {role}/{file}", f"{role}/{file}" in make_certs)
    check(f"{role}: no --insecure", "--insecure" not in args)
    check(f"create-secrets.sh makes metatrain-{role}-secrets from DIR/{role}",
          f'"metatrain-$role-secrets" --from-file="$dir/$role"' in create_secrets
          and "for role in coordinator worker" in create_secrets)
check("the server certificate names the coordinator Service",
      "DNS:coordinator," in make_certs and "DNS:coordinator.metatrain.svc" in make_certs)

# The scrape job for an in-cluster Prometheus reads the same annotations. (Debian's promtool
# is built without Kubernetes service discovery, so it cannot check this file.)
with open(os.path.join(K8S, "prometheus-scrape.yml")) as f:
    scrape = yaml.safe_load(f)["scrape_configs"][0]
read = {label for rule in scrape["relabel_configs"] for label in rule.get("source_labels", [])}
check("the scrape job reads the pods' prometheus.io annotations in namespace metatrain",
      {"__meta_kubernetes_pod_annotation_prometheus_io_scrape",
       "__meta_kubernetes_pod_annotation_prometheus_io_port",
       "__meta_kubernetes_pod_annotation_prometheus_io_path"} <= read
      and scrape["kubernetes_sd_configs"][0]["namespaces"]["names"] == ["metatrain"])

print(f"{failures} failed" if failures else "all checks passed")
sys.exit(1 if failures else 0)
