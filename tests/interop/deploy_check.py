"""Consistency checks of cs-pulse's deployment files, without a Docker daemon or a cluster:
the compose file, the Prometheus and Grafana provisioning, the Kubernetes manifests and
the Dockerfile must agree with each other and with cs-pulse.

    python deploy_check.py REPO_ROOT CONFIGMAP_TOML_OUT

Writes the ConfigMap's cs-pulse.toml to CONFIGMAP_TOML_OUT, for `cs-pulse check-config`.
Exits 1 with every problem found, one per line.
"""

import json
import pathlib
import sys

import yaml

root = pathlib.Path(sys.argv[1])
problems = []


def check(ok, what):
    if not ok:
        problems.append(what)
    return ok


def load(path):
    return yaml.safe_load((root / path).read_text())


# --- compose --------------------------------------------------------------------------
compose = load("deploy/compose.yaml")
services = compose.get("services", {})
for name in ("kafka", "generator", "cs-pulse", "prometheus", "grafana"):
    check(name in services, f"compose: no {name} service")
kafka = services.get("kafka", {})
check(str(kafka.get("image", "")).startswith("apache/kafka:4."), "compose: kafka is not the official apache/kafka 4.x image")
kafka_env = kafka.get("environment", {})
check("broker,controller" in str(kafka_env.get("KAFKA_PROCESS_ROLES")), "compose: kafka is not a KRaft broker and controller")
pulse = services.get("cs-pulse", {})
pulse_env = pulse.get("environment", {})
bootstrap = pulse_env.get("CS_PULSE_BOOTSTRAP_SERVERS", "")
check(f"//{bootstrap}" in str(kafka_env.get("KAFKA_ADVERTISED_LISTENERS")),
      f"compose: cs-pulse's bootstrap {bootstrap!r} is not an advertised Kafka listener")
check(services.get("generator", {}).get("environment", {}).get("CS_PULSE_BOOTSTRAP_SERVERS") == bootstrap,
      "compose: the generator writes to another bootstrap than cs-pulse reads")
bind_port = str(pulse_env.get("CS_PULSE_METRICS_BIND", ":")).rsplit(":", 1)[1]
check(str(pulse_env.get("CS_PULSE_METRICS_BIND", "")).startswith("0.0.0.0:"),
      "compose: cs-pulse's metrics must listen beyond loopback inside its container")
for name, svc in services.items():
    for v in svc.get("volumes", []):
        src = str(v).split(":")[0]
        check((root / "deploy" / src).exists(), f"compose: {name} mounts {src}, which does not exist")
    for port in svc.get("ports", []):
        check(str(port).startswith("127.0.0.1:"), f"compose: {name} publishes {port} beyond loopback")
    build = svc.get("build")
    if build:
        check((root / "deploy" / build["context"] / build["dockerfile"]).exists(), f"compose: {name} builds from a missing Dockerfile")

# --- Prometheus and Grafana -----------------------------------------------------------
prom = load("deploy/prometheus/prometheus.yml")
targets = [t for sc in prom.get("scrape_configs", []) for c in sc.get("static_configs", []) for t in c.get("targets", [])]
check(f"cs-pulse:{bind_port}" in targets, f"prometheus.yml does not scrape the compose service cs-pulse:{bind_port} ({targets})")
for rf in prom.get("rule_files", []):
    check((root / "deploy/prometheus" / rf).exists(), f"prometheus.yml names a missing rule file {rf}")
ds = load("deploy/grafana/provisioning/datasources/prometheus.yml")["datasources"][0]
check(ds.get("url") == "http://prometheus:9090", f"grafana data source points at {ds.get('url')}, not the prometheus service")
provider = load("deploy/grafana/provisioning/dashboards/cs-pulse.yml")["providers"][0]
mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in services.get("grafana", {}).get("volumes", [])}
check(provider["options"]["path"] in mounts and mounts[provider["options"]["path"]] == "./grafana/dashboards",
      "grafana: the dashboard provider's path is not where compose mounts the dashboards")
for f in sorted((root / "deploy/grafana/dashboards").glob("*.json")):
    d = json.loads(f.read_text())
    for p in d["panels"]:
        check(p["datasource"]["uid"] == ds["uid"], f"{f.name}: panel {p['title']!r} uses another data source")

# --- Kubernetes -----------------------------------------------------------------------
kust = load("deploy/k8s/kustomization.yaml")
docs = {}
for res in kust["resources"]:
    check((root / "deploy/k8s" / res).exists(), f"kustomization names a missing {res}")
    d = load(f"deploy/k8s/{res}")
    docs[d["kind"]] = d
for kind in ("Deployment", "ConfigMap", "Service", "PodDisruptionBudget"):
    check(kind in docs, f"k8s: no {kind}")
dep = docs["Deployment"]
labels = dep["spec"]["template"]["metadata"]["labels"]
check(dep["spec"]["selector"]["matchLabels"] == labels, "k8s: the Deployment's selector does not match its pods")
check(docs["Service"]["spec"]["selector"] == labels, "k8s: the Service does not select the pods")
check(docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels, "k8s: the PodDisruptionBudget does not select the pods")
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
port = {p["name"]: p["containerPort"] for p in c["ports"]}.get("metrics")
env = {e["name"]: e.get("value") for e in c.get("env", [])}
check(str(port) == env.get("CS_PULSE_METRICS_BIND", ":").rsplit(":", 1)[1], "k8s: the metrics port is not where cs-pulse listens")
check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "k8s: liveness is not /healthz")
check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "k8s: readiness is not /readyz")
check(pod["securityContext"].get("runAsNonRoot") is True and pod["securityContext"].get("runAsUser", 0) != 0, "k8s: pods may run as root")
check("memory" in c["resources"]["requests"] and "cpu" in c["resources"]["requests"], "k8s: no resource requests")
mount = next((m for m in c["volumeMounts"] if m["name"] == "config"), None)
args = c.get("args", [])
config_path = args[args.index("--config") + 1] if "--config" in args else None
check(mount is not None and config_path == f"{mount['mountPath']}/cs-pulse.toml", "k8s: --config is not the mounted ConfigMap file")
toml_text = docs["ConfigMap"]["data"].get("cs-pulse.toml")
if check(toml_text is not None, "k8s: the ConfigMap has no cs-pulse.toml"):
    pathlib.Path(sys.argv[2]).write_text(toml_text)
    # The API's token: the variable the ConfigMap names comes from a Secret, required.
    token_env = next((line.split("=", 1)[1].strip().strip('"') for line in toml_text.splitlines()
                      if line.strip().startswith("token_env")), None)
    secret = next((e.get("valueFrom", {}).get("secretKeyRef") for e in c.get("env", []) if e["name"] == token_env), None)
    check(token_env is not None, "k8s: the API has no token (api.token_env) although it listens beyond loopback")
    check(secret is not None and not secret.get("optional", False), f"k8s: {token_env} does not come from a required Secret")
advertised = env.get("CS_PULSE_API_ADVERTISED_URL") or ""
check(advertised.endswith(f":{port}") and "$(POD_IP)" in advertised,
      f"k8s: CS_PULSE_API_ADVERTISED_URL {advertised!r} is not the pod's IP and the API port")

# --- Dockerfile -----------------------------------------------------------------------
lines = [line.strip() for line in (root / "Dockerfile").read_text().splitlines()]
stages = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
check(len(stages) >= 2, "Dockerfile: not a multi-stage build")
final = lines[stages[-1]:]
user = next((line.split()[1] for line in final if line.upper().startswith("USER ")), "root")
check(user.split(":")[0] not in ("root", "0"), f"Dockerfile: the final stage runs as {user}")
check(user.split(":")[0] == str(pod["securityContext"].get("runAsUser")), "Dockerfile and k8s disagree on the user id")
check(any(line.upper().startswith("EXPOSE ") and bind_port in line for line in final), "Dockerfile: the metrics port is not exposed")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"deploy check: compose ({len(services)} services), prometheus, grafana, k8s ({len(docs)} manifests) and Dockerfile agree")
