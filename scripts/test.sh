#!/usr/bin/env bash
# Sets up (packages, build) and runs the whole test suite: unit tests, the example plugins built
# out of tree against the installed SDK as a plugin author would (about 2 s with a warm ccache),
# then integration tests that start real coordinator and worker processes on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh Release
echo "==> unit tests"
ctest --test-dir build -L unit --output-on-failure -j 2
echo "==> example plugins, out of tree against the installed SDK"
scripts/build_example_plugins.sh build
echo "==> Kubernetes manifests: render every overlay and validate it offline"
if command -v kubectl >/dev/null && command -v npm >/dev/null; then
  deploy/k8s/validate/run.sh
else
  echo "skipped: needs kubectl and npm (deploy/k8s/validate/run.sh)"
fi
echo "==> integration tests"
ctest --test-dir build -L integration --output-on-failure
