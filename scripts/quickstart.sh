#!/usr/bin/env bash
# Sets up Sluice, starts a local cluster (1 coordinator + 2 workers as background processes),
# runs a job that counts 1M generated clicks per user across both workers, and shows the result.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh Release
export PATH="$PWD/build/bin:$PATH"
export SLUICE_CLUSTER_DIR="${SLUICE_CLUSTER_DIR:-/tmp/sluice-cluster}"

sluice cluster stop >/dev/null 2>&1 || true
echo
echo "==> starting a local cluster"
sluice cluster start --workers 2 --slots 2
rm -rf /tmp/sluice-out/clicks

echo
echo "==> the job (examples/clicks.yaml): datagen -> filter -> key_by(user_id) -> count/sum -> file"
echo "==> sluice run examples/clicks.yaml --wait"
sluice run examples/clicks.yaml --wait
JOB=$(sluice list | awk 'NR>1 {id=$1} END {print id}')

echo
echo "==> sluice status $JOB"
sluice status "$JOB"

echo
echo "==> top 5 users by clicks (from /tmp/sluice-out/clicks/part-*.jsonl, one file per sink subtask)"
cat /tmp/sluice-out/clicks/part-*.jsonl | sort -t: -k3 -n -r | head -5 || true
echo "   $(cat /tmp/sluice-out/clicks/part-*.jsonl | wc -l) users in total"

echo
echo "The cluster keeps running. Try: sluice run examples/unbounded.yaml; sluice list; sluice status JOB;"
echo "sluice cancel JOB. Metrics: sluice workers (METRICS column) and /metrics on each address."
echo "Stop it with: build/bin/sluice cluster stop"
