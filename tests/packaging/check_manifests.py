#!/usr/bin/python3
"""Checks the deployment files under packaging/ against each other and the binary.

Usage: check_manifests.py SOURCE_DIR WORKER_BINARY

- Every YAML file in packaging/kubernetes and packaging/swarm parses.
- Every environment variable a manifest or the Dockerfile sets is one the
  binary reads. The list is taken from the source (engine/config/env_overrides.cpp
  and the getenv() calls of engine/main.cpp), never copied here.
- Kubernetes: each Deployment has replicas, WORKER_ID from metadata.name,
  REDIS_HOST, REDIS_PASSWORD from a Secret that exists, resources, liveness
  on /health and readiness on /ready at the health port, a securityContext
  that drops ALL and adds only NET_RAW and runs as the image's uid, and the
  ConfigMap with worker.toml it mounts; each region file sets its own region.
- Swarm: the stack has replicas, the same environment, NET_RAW only, a
  /health check, and its worker.toml config.
- Dockerfile: multi-stage, installs the .deb into debian:12-slim, runs as
  guardant, HEALTHCHECK on /health.
- Each worker.toml shipped for a deployment passes `guardant-worker
  --check-config` with the environment its manifest sets.
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

import yaml

failures = []
passed = 0


def check(condition, message):
    global passed
    if condition:
        passed += 1
    else:
        failures.append(message)
        print(f"FAIL: {message}")


def binary_env_vars(src):
    """The environment variables the worker reads, from its source."""
    names = set()
    with open(os.path.join(src, "engine/config/env_overrides.cpp")) as f:
        names |= set(re.findall(r'\br\.(?:text|port|number|get)\("([A-Z][A-Z0-9_]*)"', f.read()))
    with open(os.path.join(src, "engine/main.cpp")) as f:
        names |= set(re.findall(r'getenv\("([A-Z][A-Z0-9_]*)"\)', f.read()))
    return names


def load_yaml_files(pattern):
    docs = {}
    for path in sorted(glob.glob(pattern, recursive=True)):
        try:
            with open(path) as f:
                docs[path] = [d for d in yaml.safe_load_all(f) if d is not None]
            check(True, "")
        except yaml.YAMLError as e:
            check(False, f"{path}: does not parse: {e}")
    return docs


def run_check_config(binary, toml_text, env, what):
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(toml_text)
        path = f.name
    try:
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        full_env.update(env)
        r = subprocess.run([binary, "--check-config", "--config", path], env=full_env,
                           capture_output=True, text=True, timeout=30)
        out = r.stdout + r.stderr
        check(r.returncode == 0 and "mode queue" in out,
              f"{what}: --check-config failed ({r.returncode}): {out.strip()}")
        if "WORKER_REGION" in env:
            check(f"region {env['WORKER_REGION']}" in out, f"{what}: region not applied: {out.strip()}")
    finally:
        os.unlink(path)


def container_env(container):
    """name -> literal value (or a placeholder for valueFrom)."""
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        else:
            env[e["name"]] = "from-" + next(iter(e.get("valueFrom", {"?": 0})))
    return env


def check_kubernetes(src, env_vars, binary, image_uid):
    k8s = os.path.join(src, "packaging/kubernetes")
    docs = load_yaml_files(os.path.join(k8s, "**/*.yaml"))
    by_kind = {}
    for path, items in docs.items():
        for d in items:
            by_kind.setdefault(d.get("kind"), []).append((path, d))
    secrets = {d["metadata"]["name"]: d for _, d in by_kind.get("Secret", [])}
    configmaps = {d["metadata"]["name"]: d for _, d in by_kind.get("ConfigMap", [])}
    deployments = by_kind.get("Deployment", [])
    check(len(deployments) >= 3, f"kubernetes: expected the default Deployment and one per region, found {len(deployments)}")
    region_files = sorted(glob.glob(os.path.join(k8s, "regions/*.yaml")))
    check(len(region_files) >= 2, "kubernetes: expected at least two regions/*.yaml examples")
    regions_seen = {}

    for path, dep in deployments:
        name = f"{os.path.relpath(path, src)}:{dep['metadata']['name']}"
        spec = dep["spec"]
        check(isinstance(spec.get("replicas"), int) and spec["replicas"] >= 1, f"{name}: replicas")
        pod = spec["template"]["spec"]
        containers = pod["containers"]
        check(len(containers) == 1, f"{name}: one container expected")
        c = containers[0]
        env = container_env(c)
        for var in env:
            check(var in env_vars, f"{name}: sets {var}, which the worker does not read (it reads {sorted(env_vars)})")
        worker_id = next((e for e in c.get("env", []) if e["name"] == "WORKER_ID"), None)
        check(worker_id is not None and worker_id.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
              f"{name}: WORKER_ID must come from metadata.name")
        check("REDIS_HOST" in env, f"{name}: REDIS_HOST missing")
        password = next((e for e in c.get("env", []) if e["name"] == "REDIS_PASSWORD"), None)
        ref = (password or {}).get("valueFrom", {}).get("secretKeyRef", {})
        check(ref.get("name") in secrets and ref.get("key") in secrets[ref["name"]].get("stringData", {}),
              f"{name}: REDIS_PASSWORD must come from an existing Secret key, got {ref}")
        check("WORKER_REGION" in env, f"{name}: WORKER_REGION missing")
        regions_seen.setdefault(env.get("WORKER_REGION"), []).append(path)

        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                check(r in res.get(kind, {}), f"{name}: resources.{kind}.{r} missing")
        health_port = int(env.get("HEALTH_PORT", "3099"))
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        for probe, path_want in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
            get = c.get(probe, {}).get("httpGet", {})
            check(get.get("path") == path_want, f"{name}: {probe} must GET {path_want}, got {get.get('path')}")
            port = get.get("port")
            port = ports.get(port, port)
            check(port == health_port, f"{name}: {probe} port {port} is not HEALTH_PORT {health_port}")

        sc = c.get("securityContext", {})
        caps = sc.get("capabilities", {})
        check(caps.get("add") == ["NET_RAW"], f"{name}: capabilities.add must be exactly [NET_RAW], got {caps.get('add')}")
        check(caps.get("drop") == ["ALL"], f"{name}: capabilities.drop must be [ALL], got {caps.get('drop')}")
        check(sc.get("privileged") in (None, False), f"{name}: must not be privileged")
        psc = pod.get("securityContext", {})
        check(psc.get("runAsNonRoot") is True, f"{name}: runAsNonRoot")
        check(psc.get("runAsUser") == image_uid, f"{name}: runAsUser {psc.get('runAsUser')} is not the image's uid {image_uid}")

        cm_volumes = [v for v in pod.get("volumes", []) if "configMap" in v]
        check(len(cm_volumes) == 1, f"{name}: one ConfigMap volume expected")
        if cm_volumes:
            cm_name = cm_volumes[0]["configMap"]["name"]
            check(cm_name in configmaps and "worker.toml" in configmaps[cm_name].get("data", {}),
                  f"{name}: ConfigMap {cm_name} with worker.toml not found")
            mount = next((m for m in c.get("volumeMounts", []) if m["name"] == cm_volumes[0]["name"]), {})
            check(mount.get("mountPath") == "/etc/guardant", f"{name}: the config must be mounted at /etc/guardant")
            check(c.get("args", [])[-2:] == ["--config", "/etc/guardant/worker.toml"], f"{name}: args must name the mounted config")
            if cm_name in configmaps:
                literal_env = {k: v for k, v in env.items() if not v.startswith("from-")}
                literal_env["WORKER_ID"] = dep["metadata"]["name"] + "-0"
                literal_env["REDIS_PASSWORD"] = "placeholder"
                run_check_config(binary, configmaps[cm_name]["data"]["worker.toml"], literal_env, name)

    for region_file in region_files:
        regions = [r for r, paths in regions_seen.items() if region_file in paths]
        check(len(regions) == 1 and regions[0] not in (None, "default"),
              f"{region_file}: must set its own WORKER_REGION, got {regions}")
    named = [r for r in regions_seen if r not in (None, "default")]
    check(len(named) == len(set(named)) and all(len(regions_seen[r]) == 1 for r in named),
          f"kubernetes: each region must have exactly one file: {regions_seen}")


def check_swarm(src, env_vars, binary):
    swarm = os.path.join(src, "packaging/swarm")
    docs = load_yaml_files(os.path.join(swarm, "*.yml")) | load_yaml_files(os.path.join(swarm, "*.yaml"))
    stacks = [(p, d) for p, items in docs.items() for d in items if isinstance(d, dict) and "services" in d]
    check(len(stacks) == 1, f"swarm: expected one stack file, found {len(stacks)}")
    for path, stack in stacks:
        for svc_name, svc in stack["services"].items():
            name = f"{os.path.relpath(path, src)}:{svc_name}"
            check(isinstance(svc.get("deploy", {}).get("replicas"), int), f"{name}: deploy.replicas")
            env = svc.get("environment", {})
            if isinstance(env, list):
                env = dict(e.split("=", 1) for e in env)
            for var in env:
                check(var in env_vars, f"{name}: sets {var}, which the worker does not read")
            for var in ("WORKER_ID", "REDIS_HOST", "REDIS_PASSWORD", "WORKER_REGION"):
                check(var in env, f"{name}: {var} missing")
            check(svc.get("cap_add") == ["NET_RAW"], f"{name}: cap_add must be exactly [NET_RAW]")
            check(svc.get("cap_drop") == ["ALL"], f"{name}: cap_drop must be [ALL]")
            test = " ".join(svc.get("healthcheck", {}).get("test", []))
            check("/health" in test, f"{name}: healthcheck must check /health")
            targets = {c["target"]: c["source"] for c in svc.get("configs", [])}
            source = targets.get("/etc/guardant/worker.toml")
            check(source in stack.get("configs", {}), f"{name}: no config mounted at /etc/guardant/worker.toml")
            if source in stack.get("configs", {}):
                toml_path = os.path.join(swarm, stack["configs"][source]["file"])
                with open(toml_path) as f:
                    literal_env = {k: str(v) for k, v in env.items() if "{{" not in str(v) and "$" not in str(v)}
                    literal_env["WORKER_ID"] = "node-1"
                    literal_env["REDIS_PASSWORD"] = "placeholder"
                    run_check_config(binary, f.read(), literal_env, name)


def check_dockerfile(src, env_vars):
    path = os.path.join(src, "packaging/docker/Dockerfile")
    with open(path) as f:
        text = f.read()
    # Continuation lines joined, comments dropped.
    lines = [l.strip() for l in re.sub(r"\\\n", " ", text).splitlines() if l.strip() and not l.strip().startswith("#")]
    froms = [l.split()[1] for l in lines if l.upper().startswith("FROM ")]
    check(len(froms) >= 2, "Dockerfile: multi-stage build expected")
    check(froms[-1] == "debian:12-slim", f"Dockerfile: final stage must be debian:12-slim, got {froms[-1:]}")
    check(any("build-packages.sh deb" in l for l in lines), "Dockerfile: must build the .deb with packaging/build-packages.sh")
    check(any(l.startswith("RUN") and "apt-get install" in l and "guardant-worker_" in l and ".deb" in l for l in lines),
          "Dockerfile: must install the .deb with apt-get")
    users = [l.split()[1] for l in lines if l.upper().startswith("USER ")]
    check(users[-1:] == ["guardant"], f"Dockerfile: must run as guardant, got {users}")
    health = [l for l in lines if l.upper().startswith("HEALTHCHECK ")]
    check(len(health) == 1 and "/health" in health[0], "Dockerfile: HEALTHCHECK on /health")
    check(any("setcap cap_net_raw=ep" in l for l in lines), "Dockerfile: NET_RAW as the only file capability")
    for l in lines:
        if l.upper().startswith("ENV "):
            for var in re.findall(r"([A-Z][A-Z0-9_]*)=", l):
                check(var in env_vars, f"Dockerfile: ENV {var} is not read by the worker")
    uid = re.search(r"ARG GUARDANT_UID=(\d+)", text)
    check(uid is not None, "Dockerfile: ARG GUARDANT_UID with a fixed uid")
    return int(uid.group(1)) if uid else None


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    src, binary = sys.argv[1], sys.argv[2]
    env_vars = binary_env_vars(src)
    print(f"environment variables the worker reads (from the source): {' '.join(sorted(env_vars))}")
    check({"REDIS_HOST", "WORKER_ID", "HEALTH_PORT"} <= env_vars, f"could not read the env var list from the source: {env_vars}")
    image_uid = check_dockerfile(src, env_vars)
    check_kubernetes(src, env_vars, binary, image_uid)
    check_swarm(src, env_vars, binary)
    print(f"{passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
