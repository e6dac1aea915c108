#!/usr/bin/env bash
# Renders every kustomization under deploy/k8s and validates the objects offline against the
# Kubernetes schemas (validate.mjs), after the validator's own self-test.
# Needs kubectl (for `kubectl kustomize`) and node/npm; installs the validator's npm
# dependencies (package-lock.json) on first use.
set -euo pipefail
cd "$(dirname "$0")"
[[ -d node_modules ]] || npm ci --no-audit --no-fund --silent
node validate.mjs --self-test
status=0
for k in overlays/dev overlays/prod overlays/podman submit; do
  echo "==> $k"
  kubectl kustomize "../$k" | node validate.mjs - || status=1
done
exit $status
