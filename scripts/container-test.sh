#!/usr/bin/env bash
# Build the image, run it, and check it as a user would: readiness on the port it was given,
# the README's curl example, a CIFAR-10 photo, a non-root user, a passing HEALTHCHECK.
# Prints the image size and the time to ready. Uses podman (Docker works the same with
# ENGINE=docker); on these machines ../shared/container/make-base-image.sh provides the base.
#   bash scripts/container-test.sh            (make container-test)
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE="${ENGINE:-podman}"
IMAGE="${IMAGE:-classifier:test}"
NAME="classifier-test-$$"
PORT="${PORT:-8765}"

if [ "$ENGINE" = podman ] && ! command -v podman >/dev/null; then
  apt-get install -y -q podman runc debootstrap >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q podman runc debootstrap >/dev/null; }
fi
if [ "$ENGINE" = podman ] && ! podman image exists docker.io/library/python:3.11-slim; then
  bash ../shared/container/make-base-image.sh
fi

started=$(date +%s)
"$ENGINE" build --format docker --network host -t "$IMAGE" . >/tmp/container-build.log 2>&1 \
  || { tail -40 /tmp/container-build.log; exit 1; }
echo "built $IMAGE in $(( $(date +%s) - started )) s"

cleanup() { "$ENGINE" rm -f "$NAME" >/dev/null 2>&1 || true; }
# Poll /readyz on a port for up to a minute.
wait_ready() {
  for _ in $(seq 1 120); do
    if curl -sf "http://127.0.0.1:$1/readyz" >/dev/null; then return; fi
    sleep 0.5
  done
}
trap cleanup EXIT
started=$(date +%s.%N)
"$ENGINE" run -d --name "$NAME" --network host -e PORT="$PORT" "$IMAGE" >/dev/null
wait_ready "$PORT"
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { "$ENGINE" logs "$NAME" | tail -30; echo "not ready"; exit 1; }
ready=$(python3 -c "print(f'{$(date +%s.%N) - $started:.1f}')")

answer=$(curl -sf -F image=@tests/data/7.png "http://127.0.0.1:$PORT/predict?model=custom2")
python3 -c "import json, sys; body = json.loads(sys.argv[1]); assert body['class_index'] == 7, body" "$answer"
photo=/tmp/container-test-photo.jpg
.venv/bin/python - "$photo" <<'PY'
import sys
import numpy as np
from PIL import Image
y, x = np.mgrid[0:480, 0:640]
sky = np.stack([90 + 0 * x, 140 + 0 * x, 230 - y // 8], axis=-1)  # a blue sky
hull = (y > 300) & (y < 380) & (x > 120) & (x < 520)              # a grey hull on the sea
sea = y >= 380
pixels = np.where(sea[..., None], [20, 60, 140], sky)
pixels = np.where(hull[..., None], [110, 110, 115], pixels).astype(np.uint8)
Image.fromarray(pixels).save(sys.argv[1], quality=90)
PY
cifar=$(curl -sf -F image=@"$photo" "http://127.0.0.1:$PORT/predict?model=cifar10/vgg_bn")
python3 -c "import json, sys; body = json.loads(sys.argv[1]); assert len(body['probabilities']) == 10 and body['class_name'], body; print('CIFAR-10 photo:', body['class_name'], round(body['confidence'], 3))" "$cifar"

grep -q '<canvas' <<< "$(curl -sf "http://127.0.0.1:$PORT/")" || { echo "the page at / is missing"; exit 1; }
curl -sf "http://127.0.0.1:$PORT/static/app.js" >/dev/null || { echo "the page's script is missing"; exit 1; }
grep -q '/docs-assets/swagger-ui-bundle.js' <<< "$(curl -sf "http://127.0.0.1:$PORT/docs")" || { echo "/docs is not offline"; exit 1; }
curl -sf "http://127.0.0.1:$PORT/docs-assets/swagger-ui-bundle.js" >/dev/null || { echo "/docs assets missing"; exit 1; }

user=$("$ENGINE" inspect --format '{{.Config.User}}' "$NAME")
[ "$user" != "" ] && [ "$user" != "root" ] && [ "$user" != "0" ] || { echo "runs as root ($user)"; exit 1; }
"$ENGINE" exec "$NAME" id -u | grep -qv '^0$' || { echo "runs as uid 0"; exit 1; }
if [ "$ENGINE" = podman ]; then
  podman healthcheck run "$NAME" || { echo "HEALTHCHECK failed on port $PORT"; exit 1; }
fi
size=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
echo "container test passed: user $user, ready in ${ready} s on port $PORT, image $(python3 -c "print(f'{$size / 2**30:.2f} GiB')")"

# CPUs and memory counted from the container's limits, not the machine's: `--cpus 1` must give
# one worker, one TensorFlow thread per op and pool, one preparation thread
# (app.config.usable_cpus); `--memory 3g` at most 3 GiB available (app.serve.available_memory_bytes).
"$ENGINE" rm -f "$NAME" >/dev/null
ONE_CPU_PORT=$((PORT + 1))
"$ENGINE" run -d --name "$NAME" --network host --cpus 1 --memory 3g -e PORT="$ONE_CPU_PORT" "$IMAGE" >/dev/null
wait_ready "$ONE_CPU_PORT"
start_lines=$("$ENGINE" logs "$NAME" 2>&1 | grep -E "WORKERS=auto|threads: " || true)
grep -q "WORKERS=auto: 1 worker(s) for 1 usable CPU(s)" <<< "$start_lines" \
  && grep -q "threads: 1 usable CPU(s), intra_op_threads=1 inter_op_threads=1 preprocess_threads=1" <<< "$start_lines" \
  || { echo "$start_lines"; echo "--cpus 1 was not counted as one CPU"; exit 1; }
memory=$(echo "$start_lines" | sed -n 's/.*CPU(s), \([0-9,]*\) MiB of memory available.*/\1/p' | tr -d ,)
[ -n "$memory" ] && [ "$memory" -le 3072 ] || { echo "$start_lines"; echo "--memory 3g was not counted"; exit 1; }
curl -sf -F image=@tests/data/7.png "http://127.0.0.1:$ONE_CPU_PORT/predict?model=custom2" >/dev/null \
  || { echo "not serving with --cpus 1"; exit 1; }
echo "--cpus 1 --memory 3g: one worker, intra_op_threads=1 inter_op_threads=1 preprocess_threads=1, $memory MiB available"
"$ENGINE" rm -f "$NAME" >/dev/null

# The Kubernetes manifests as written, in a pod runtime: `podman kube play` of deploy/k8s's
# ConfigMap and Deployment (read-only root, runAsUser, the /tmp emptyDir, envFrom) on this
# image, the Secret created as a podman secret (podman 4.3 misreads kind: Secret). What
# podman cannot do here is changed in the played copy only: host network (no port list,
# numeric probe ports), one replica, this image's name, a free port. Service, HPA and PDB
# are not run (kubernetes-validate checks them: tests/service/test_manifests.py).
if [ "$ENGINE" = podman ]; then
  KUBE_PORT="${KUBE_PORT:-8766}"
  played=$(mktemp -d)
  trap 'cleanup; podman kube down "$played/pod.yaml" >/dev/null 2>&1 || true; podman secret rm classifier-keys >/dev/null 2>&1 || true; rm -rf "$played"' EXIT
  .venv/bin/python - "$played/pod.yaml" "$IMAGE" "$KUBE_PORT" <<'PY'
import sys
import yaml
out, image, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = yaml.safe_load(open("deploy/k8s/configmap.yaml"))
config["data"]["PORT"] = str(port)
deployment = yaml.safe_load(open("deploy/k8s/deployment.yaml"))
deployment["spec"]["replicas"] = 1
pod = deployment["spec"]["template"]["spec"]
pod["hostNetwork"] = True
(container,) = pod["containers"]
container["image"] = image
container.pop("ports")
for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
    container[probe]["httpGet"]["port"] = port
yaml.safe_dump_all([config, deployment], open(out, "w"), sort_keys=False)
PY
  key="kube-test-key-$$"
  printf '{"API_KEYS":"%s","ADMIN_API_KEYS":"%s"}' "$(printf '%s' "$key" | base64)" "$(printf 'admin-%s' "$key" | base64)" > "$played/secret.json"
  podman secret rm classifier-keys >/dev/null 2>&1 || true
  podman secret create classifier-keys "$played/secret.json" >/dev/null
  started=$(date +%s.%N)
  podman kube play --network host "$played/pod.yaml" >/dev/null
  wait_ready "$KUBE_PORT"
  pod_container=$(podman ps -a --format '{{.Names}} {{.Pod}}' | awk '$2 != "" && $1 !~ /-infra$/ {print $1; exit}')
  curl -sf "http://127.0.0.1:$KUBE_PORT/readyz" >/dev/null \
    || { podman logs "$pod_container" 2>&1 | tail -30; echo "the Kubernetes pod is not ready"; exit 1; }
  kube_ready=$(python3 -c "print(f'{$(date +%s.%N) - $started:.1f}')")
  restarts=$(podman inspect --format '{{.RestartCount}}' "$pod_container")
  [ "$restarts" = 0 ] || { podman logs "$pod_container" 2>&1 | tail -30; echo "the pod restarted $restarts times"; exit 1; }
  status=$(curl -s -o /dev/null -w '%{http_code}' -F image=@tests/data/7.png "http://127.0.0.1:$KUBE_PORT/predict?model=custom2")
  [ "$status" = 401 ] || { echo "a prediction without the Secret's key answered $status, not 401"; exit 1; }
  answer=$(curl -sf -H "X-API-Key: $key" -F image=@tests/data/7.png "http://127.0.0.1:$KUBE_PORT/predict?model=custom2")
  python3 -c "import json, sys; body = json.loads(sys.argv[1]); assert body['class_index'] == 7, body" "$answer"
  grep -q '^http_requests_total' <<< "$(curl -sf "http://127.0.0.1:$KUBE_PORT/metrics")" || { echo "/metrics is missing"; exit 1; }
  # The Deployment's CPU limit reaches the app as a cgroup quota, which it counts its CPUs by.
  limit=$(.venv/bin/python -c "import yaml; (c,) = yaml.safe_load(open('deploy/k8s/deployment.yaml'))['spec']['template']['spec']['containers']; print(float(c['resources']['limits']['cpu']))")
  seen=$(podman exec "$pod_container" python -c "from app.config import CGROUP_ROOT, _cpu_quota; print(_cpu_quota(CGROUP_ROOT))")
  [ "$seen" = "$limit" ] || { echo "the pod's CPU quota reads $seen, not the Deployment's limit $limit"; exit 1; }
  grace=$(.venv/bin/python -c "import yaml; print(yaml.safe_load(open('deploy/k8s/deployment.yaml'))['spec']['template']['spec']['terminationGracePeriodSeconds'])")
  stopping=$(date +%s)
  timeout "$grace" podman kube down "$played/pod.yaml" >/dev/null || { echo "the pod did not stop within its grace period ($grace s)"; exit 1; }
  echo "Kubernetes manifests passed in podman kube play: ready in ${kube_ready} s, no restart, 401 without a key, 7 with the Secret's key, /metrics, CPU limit $limit seen by the app, stopped in $(( $(date +%s) - stopping )) s (grace ${grace} s)"
fi
