#!/usr/bin/env bash
# The container test: Sluice's image and Kubernetes manifests, really run by a pod runner.
#
#   deploy/test-containers.sh [--rebuild] [--keep-logs DIR]
#
# 1. Builds the image with deploy/build-image.sh (reused when localhost/sluice:<git sha>
#    exists; --rebuild builds it anyway).
# 2. Renders deploy/k8s/overlays/podman (the dev overlay on the host network, ports 26123/28081
#    for the coordinator and 26121/29249 for the worker) and runs it with
#    `podman kube play --network host`: one coordinator pod, one worker pod (2 slots), the
#    podman volume `sluice-data` as the shared volume. Never podman's default bridge.
# 3. Checks /healthz on both and that the worker registered; submits a checkpointed job with
#    the CLI in a container (as the submit Job does): a bounded datagen -> key_by -> count/sum
#    -> exactly-once file sink on the shared volume.
# 4. Kills the worker container (SIGKILL) mid-job; the worker comes back (podman's restart
#    policy, or `podman start` as a kubelet would), the job restarts from its checkpoint and
#    finishes.
# 5. Checks the output exactly against the failure-free result computed here: per key, updates
#    numbered 1..n exactly once, the last carrying the expected sum.
# Tears everything down on exit, also on failure (logs go to --keep-logs DIR, default
# /tmp/sluice-container-test-logs). Runs as root. Opt-in: it is not part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

REBUILD=0
LOG_DIR=/tmp/sluice-container-test-logs
while (($#)); do
  case "$1" in
    --rebuild) REBUILD=1 ;;
    --keep-logs) LOG_DIR=$2; shift ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test-containers.sh: unknown argument '$1'" >&2; exit 1 ;;
  esac
  shift
done

IMAGE=localhost/sluice:dev
VOLUME=sluice-data
# The shared volume and the volumes podman makes of the pods' emptyDirs (named as in the overlay).
VOLUMES=(sluice-data sluice-coordinator-tmp sluice-worker-work sluice-worker-tmp)
COORD=127.0.0.1:26123
COORD_HTTP=28081
WORKER_HTTP=29249
PORTS=(26123 28081 26121 29249)
RECORDS=60000     # datagen records
RATE=3000         # records/s: about 20 s of input
KEYS=100
START=$SECONDS

log() { echo "==> [$((SECONDS - START))s] $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || fail "run as root (rootful podman)"
command -v kubectl >/dev/null || fail "kubectl is needed (for kubectl kustomize)"
command -v python3 >/dev/null || fail "python3 is needed (for the output check)"

# kube play's infra container needs catatonit (a Recommends of podman).
if ! command -v catatonit >/dev/null && [[ ! -x /usr/libexec/podman/catatonit ]]; then
  log "installing catatonit"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends catatonit >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends catatonit >/dev/null; }
fi

# --- image -----------------------------------------------------------------------------------
if ((REBUILD)); then
  deploy/build-image.sh
else
  deploy/build-image.sh --reuse
fi

for p in "${PORTS[@]}"; do
  if ss -Hltn "sport = :$p" | grep -q .; then fail "port $p is in use on this host (the podman overlay uses ${PORTS[*]})"; fi
done
for v in "${VOLUMES[@]}"; do
  if podman volume exists "$v"; then fail "podman volume $v exists (left by an earlier run?): podman volume rm $v"; fi
done
for pod in sluice-coordinator-pod-0 sluice-worker-pod-0; do
  if podman pod exists "$pod"; then fail "podman pod $pod exists (left by an earlier run?): podman pod rm -f $pod"; fi
done

WORK=$(mktemp -d /tmp/sluice-container-test.XXXXXX)
PLAYED=0
VOLUME_CREATED=0
cleanup() {
  local rc=$?
  set +e
  mkdir -p "$LOG_DIR"
  for c in sluice-coordinator-pod-0-coordinator sluice-worker-pod-0-worker; do
    podman container exists "$c" && podman logs "$c" >"$LOG_DIR/$c.log" 2>&1
  done
  if ((rc != 0)); then
    echo "--- last coordinator and worker log lines (all in $LOG_DIR) ---" >&2
    tail -n 15 "$LOG_DIR"/*.log >&2 2>/dev/null
  fi
  if ((PLAYED)); then
    log "tearing down: podman kube down"
    podman kube down "$WORK/play.yaml" >/dev/null 2>&1
    podman pod rm -f sluice-coordinator-pod-0 sluice-worker-pod-0 >/dev/null 2>&1
  fi
  if ((VOLUME_CREATED)); then
    for v in "${VOLUMES[@]}"; do podman volume rm -f "$v" >/dev/null 2>&1; done
  fi
  rm -rf "$WORK"
  if ((rc == 0)); then echo "container test passed"; else echo "container test FAILED" >&2; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- manifests ---------------------------------------------------------------------------------
# The manifests configure the processes through SLUICE_* environment variables. A binary
# from before that (no --advertise-address flag) gets the same values as flags from a shell.
if podman run --rm --network none "$IMAGE" sluice-worker --help 2>&1 | grep -q -- '--advertise-address'; then
  log "image reads its configuration from SLUICE_* variables"
  kubectl kustomize deploy/k8s/overlays/podman >"$WORK/play.yaml"
else
  log "image predates SLUICE_* configuration: passing the same values as flags (compat patch)"
  mkdir -p "$WORK/compat"
  cp -r deploy/k8s "$WORK/compat/k8s"
  cat >"$WORK/compat/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - k8s/overlays/podman
patches:
  - target: {kind: Deployment, name: sluice-coordinator}
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/command
        value: [sh, -c, 'exec sluice-coordinator --host "$SLUICE_HOST" --port "$SLUICE_PORT" --http-port "$SLUICE_HTTP_PORT" --ha-dir "$SLUICE_HA_DIR" --checkpoint-dir "$SLUICE_CHECKPOINT_DIR" --savepoint-dir "$SLUICE_SAVEPOINT_DIR"']
  - target: {kind: Deployment, name: sluice-worker}
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/command
        value: [sh, -c, 'exec sluice-worker --coordinator "$SLUICE_COORDINATOR" --host "$SLUICE_HOST" --port "$SLUICE_PORT" --http-port "$SLUICE_HTTP_PORT" --slots "$SLUICE_SLOTS" --work-dir "$SLUICE_WORK_DIR" --name "$SLUICE_NAME"']
EOF
  kubectl kustomize "$WORK/compat" >"$WORK/play.yaml"
fi

# --- shared volume and pods --------------------------------------------------------------------
podman volume create --label io.sluice.test=containers "$VOLUME" >/dev/null
VOLUME_CREATED=1
DATA=$(podman volume inspect --format '{{.Mountpoint}}' "$VOLUME")
chown 10001:10001 "$DATA"

log "podman kube play --network host (coordinator and worker pods)"
PLAYED=1
podman kube play --network host "$WORK/play.yaml" >"$WORK/play.out"

sluice() {  # the CLI inside the coordinator's container
  podman exec sluice-coordinator-pod-0-coordinator sluice --coordinator "$COORD" "$@"
}
http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1$2" || true; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2 deadline=$((SECONDS + $1))
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${limit}s waiting for $what"
    sleep 0.5
  done
}
healthy() { [[ $(http_status "$1" /healthz) == 200 ]]; }
worker_registered() { sluice workers | grep -q 'podman-worker\|127.0.0.1:26121'; }

wait_for 60 "the coordinator's /healthz" healthy $COORD_HTTP
wait_for 60 "the worker's /healthz" healthy $WORKER_HTTP
wait_for 60 "the worker to register" worker_registered
log "coordinator /healthz $(http_status $COORD_HTTP /healthz), /readyz $(http_status $COORD_HTTP /readyz); worker /healthz $(http_status $WORKER_HTTP /healthz), /readyz $(http_status $WORKER_HTTP /readyz)"
sluice workers

# --- the job -----------------------------------------------------------------------------------
OUT=output/container-test-$$
cat >"$WORK/job.yaml" <<EOF
name: container-test
parallelism: 2
checkpoint: {interval: 500ms, timeout: 30s, retain: 3}
restart: {strategy: fixed_delay, attempts: 100, delay: 500ms}
operators:
  - id: gen
    type: datagen
    count: $RECORDS
    rate: $RATE
    fields:
      - {name: key, type: int64, expr: "(seq * 7919) % $KEYS"}
      - {name: value, type: int64, expr: "seq % 1000"}
  - {id: by_key, type: key_by, key: [key]}
  - id: totals
    type: aggregate
    aggregates: [{fn: count, as: n}, {fn: sum, field: value, as: total}]
  - {id: out, type: file, path: /var/lib/sluice/$OUT}
EOF
chmod 644 "$WORK/job.yaml"
log "submitting the job with the CLI in a container (podman run --network host $IMAGE sluice run)"
JOB=$(podman run --rm --network host --read-only -v "$WORK/job.yaml:/jobs/job.yaml:ro,Z" "$IMAGE" \
  sluice --coordinator "$COORD" run /jobs/job.yaml | tail -n 1)
[[ -n "$JOB" ]] || fail "sluice run printed no job id"
log "job $JOB submitted"

job_state() { sluice status "$JOB" | sed -n '1s/^Job [^ ]* ([^)]*): \([A-Z_]*\).*/\1/p'; }
gen_out() { sluice status "$JOB" | awk '$1 == "gen" {print $5; exit}'; }
checkpointed() { compgen -G "$DATA/$OUT/part-*.jsonl" >/dev/null; }  # some output committed by a checkpoint
halfway() { local n; n=$(gen_out); [[ -n "$n" && "$n" -ge $((RECORDS / 4)) ]] && checkpointed; }

wait_for 120 "the job to produce a quarter of its input and commit output" halfway
log "job at $(gen_out) records generated, output committed; killing the worker container (SIGKILL)"
restarts_before=$(podman inspect --format '{{.RestartCount}}' sluice-worker-pod-0-worker)
podman kill --signal KILL sluice-worker-pod-0-worker >/dev/null

# Podman's restart policy (the pod's restartPolicy: Always) may bring it back; if it does not
# within 10 s, start it as the kubelet would.
deadline=$((SECONDS + 10))
while ((SECONDS < deadline)); do
  [[ $(podman inspect --format '{{.RestartCount}}' sluice-worker-pod-0-worker) -gt $restarts_before ]] && break
  sleep 0.5
done
if [[ $(podman inspect --format '{{.RestartCount}}' sluice-worker-pod-0-worker) -gt $restarts_before ]]; then
  log "podman restarted the worker container (restart policy)"
else
  log "podman did not restart the killed container; podman start (as a kubelet would)"
  podman start sluice-worker-pod-0-worker >/dev/null
fi
wait_for 60 "the worker to register again" worker_registered

deadline=$((SECONDS + 240))
while :; do
  state=$(job_state || true)
  case "$state" in
    FINISHED) break ;;
    FAILED | CANCELLED | CANCELED) sluice status "$JOB" || true; fail "job ended $state" ;;
  esac
  ((SECONDS < deadline)) || { sluice status "$JOB" || true; fail "job not finished after 240 s (state $state)"; }
  sleep 1
done
STATUS=$(sluice status "$JOB")
echo "$STATUS"
grep -Eq 'restart\(s\)|restored checkpoint' <<<"$STATUS" || fail "the job shows no restart: the kill did not hit it"
log "job FINISHED after a restart; checking the output"

# --- exactly-once check ------------------------------------------------------------------------
python3 - "$DATA/$OUT" "$RECORDS" "$KEYS" <<'PY'
import collections, glob, json, os, sys
out, records, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
count, total = collections.Counter(), collections.Counter()
for s in range(records):
    k = (s * 7919) % keys
    count[k] += 1
    total[k] += s % 1000
files = sorted(glob.glob(os.path.join(out, "part-*.jsonl")))
seen = collections.defaultdict(set)
last = {}
lines = duplicates = 0
for f in files:
    with open(f) as fh:
        for line in fh:
            r = json.loads(line)
            lines += 1
            k, n = r["key"], r["n"]
            if n in seen[k]:
                duplicates += 1
            seen[k].add(n)
            if n == count[k]:
                last[k] = r["total"]
missing = sum(len(set(range(1, count[k] + 1)) - seen[k]) for k in count)
extra = sum(len(seen[k] - set(range(1, count[k] + 1))) for k in seen)
bad_sums = sum(1 for k in count if last.get(k) != total[k])
print(f"output: {len(files)} files, {lines} lines (expected {records}), {len(seen)} keys (expected {keys}), "
      f"{duplicates} duplicates, {missing} missing updates, {extra} unexpected, {bad_sums} keys with a wrong final sum")
sys.exit(0 if (lines == records and duplicates == 0 and missing == 0 and extra == 0 and bad_sums == 0
               and len(seen) == keys) else 1)
PY
log "output is exactly the failure-free result"
