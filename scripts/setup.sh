#!/usr/bin/env bash
# Installs the Debian 12 packages Sluice needs (when missing) and builds it into build/.
# Usage: scripts/setup.sh [Release|Debug]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  g++ cmake ninja-build ccache pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  librocksdb-dev librdkafka-dev libyaml-cpp-dev libcli11-dev nlohmann-json3-dev
  libcpp-httplib-dev libspdlog-dev libgtest-dev libgmock-dev libbenchmark-dev kcat curl
  iproute2 iptables
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD_TYPE="${1:-Release}"
echo "==> configuring ($BUILD_TYPE) and building with $(nproc) cores"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >/dev/null
cmake --build build
