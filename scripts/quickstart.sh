#!/usr/bin/env bash
# Sets up Sluice, starts a local cluster (1 coordinator + 2 workers) with the embedded Kafka
# endpoint, fills topic `payments` with payment events, runs a stateful job that keeps the spend
# per user and writes every change to topic `spend-per-user` exactly once, and shows the results
# arriving with kcat, an ordinary Kafka client.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh Release
export PATH="$PWD/build/bin:$PATH"
export SLUICE_CLUSTER_DIR="${SLUICE_CLUSTER_DIR:-/tmp/sluice-cluster}"

# Payment events [from, to) as "user|json" lines: 200 users (a few spend a lot), 8 merchants,
# amounts 1.00-90.00, about 5% refunds (negative), event times 10 ms apart.
payments() {
  awk -v from="$1" -v to="$2" -v t0=1798761600000 'BEGIN {
    split("grocer cafe books cinema pharmacy fuel bakery garden", m, " ");
    srand(from + 7);
    for (i = from; i < to; i++) {
      u = int(rand() * rand() * 200) + 1;
      a = int(rand() * 8900) + 100;
      if (rand() < 0.05) a = -a;
      printf "u%03d|{\"user\":\"u%03d\",\"merchant\":\"%s\",\"amount_cents\":%d,\"ts\":%.0f}\n", u, u, m[int(rand() * 8) + 1], a, t0 + i * 10;
    }
  }'
}
# The latest value per user in spend-per-user, biggest spenders first.
top_spenders() {
  kcat -b "$KAFKA" -C -t spend-per-user -o beginning -e -q -f '%k %s\n' 2>/dev/null |
    awk '{ last[$1] = $2 } END { for (k in last) print last[k] }' |
    sed -E 's/.*"user":"([^"]*)","payments":([0-9]+),"spent_cents":(-?[0-9]+).*/\3 \1 \2/' |
    sort -n -r | head -"$1" |
    awk '{ printf "   %s  %5d payments  %10.2f spent\n", $2, $3, $1 / 100 }'
}
updates() { kcat -b "$KAFKA" -C -t spend-per-user -o beginning -e -q 2>/dev/null | wc -l; }

sluice cluster stop >/dev/null 2>&1 || true
# The embedded Kafka endpoint starts empty, so jobs a previous quickstart left in the cluster's
# job store would resume against topics that are gone (and hold its slots): the demo starts
# from no jobs. Only the quickstart does this; `sluice cluster start` keeps recorded jobs.
rm -rf "$SLUICE_CLUSTER_DIR/ha" "$SLUICE_CLUSTER_DIR/checkpoints" "$SLUICE_CLUSTER_DIR"/worker-*-state
echo
echo "==> starting a local cluster with the embedded Kafka endpoint"
sluice cluster start --workers 2 --slots 2 --kafka --kafka-topic payments:4 --kafka-topic spend-per-user:4
KAFKA=$(head -1 "$SLUICE_CLUSTER_DIR/kafka.addr")

echo
echo "==> producing 50,000 payment events into topic 'payments' with kcat, for example:"
payments 0 3 | cut -d'|' -f2 | sed 's/^/   /'
payments 0 50000 | kcat -b "$KAFKA" -P -t payments -K'|'

echo
echo "==> the job (examples/payments.yaml): kafka(payments) -> filter(no refunds) -> key_by(user)"
echo "    -> count/sum in RocksDB state -> kafka_sink(spend-per-user, exactly_once), checkpoint every 1s"
echo "==> sluice run examples/payments.yaml"
JOB=$(sluice run examples/payments.yaml)
echo "$JOB"

echo
echo "==> waiting for the first checkpoints to commit the job's output transactions"
for _ in $(seq 1 60); do
  [ "$(updates)" -ge 40000 ] && break
  sleep 1
done
echo "    $(updates) updates in spend-per-user so far (one per payment that is not a refund)"
echo
echo "==> top 5 spenders, from topic spend-per-user (kcat -C -t spend-per-user; latest value per key)"
top_spenders 5

echo
echo "==> 10,000 more payments arrive; the job is still running"
payments 50000 60000 | kcat -b "$KAFKA" -P -t payments -K'|'
sleep 3
top_spenders 5

echo
echo "==> sluice status $JOB"
sluice status "$JOB"

echo
echo "The job keeps running: produce more with kcat -b $KAFKA -P -t payments -K'|', watch with"
echo "kcat -b $KAFKA -C -t spend-per-user. The embedded endpoint has no transaction markers, so"
echo "kcat shows every record written; point jobs at a real broker for read_committed semantics."
echo "Stop the job: build/bin/sluice cancel $JOB    Stop everything: build/bin/sluice cluster stop"
