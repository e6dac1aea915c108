#!/usr/bin/env bash
# Builds the Sluice container image without any container registry.
#
#   deploy/build-image.sh [--reuse] [--rebuild-base]
#
# 1. The Debian 12 base image comes from the Debian archive apt uses on this machine
#    (/etc/apt/sources.list*): `mmdebstrap --variant=minbase bookworm` -> rootfs.tar ->
#    `podman import` as localhost/sluice-base:bookworm (made once; --rebuild-base redoes it).
# 2. `podman build --pull=never --network host` of deploy/Containerfile over `git archive HEAD`
#    (the committed tree, so the tag names exactly what is in the image), with the host's
#    ccache mounted into the build step.
# 3. Tags localhost/sluice:<git short sha> and localhost/sluice:dev; prints the image size.
#
# --reuse: if localhost/sluice:<sha> or :dev exists and was built from a commit whose tree
#          differs from HEAD only in docs (*.md), deploy/k8s/ or deploy/*.sh, tag it instead.
# Runs as root (podman rootful); installs podman, buildah, mmdebstrap and runc if missing and
# writes /etc/containers/containers.conf (runtime runc, ulimits) if there is none. Never uses
# podman's default bridge network (it rewrites the host's iptables): builds use the host network.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

REUSE=0
REBUILD_BASE=0
for a in "$@"; do
  case "$a" in
    --reuse) REUSE=1 ;;
    --rebuild-base) REBUILD_BASE=1 ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image.sh: unknown argument '$a'" >&2; exit 1 ;;
  esac
done

IMAGE=localhost/sluice
BASE=localhost/sluice-base:bookworm
SHA=$(git rev-parse --short=12 HEAD)
log() { echo "==> $*"; }

if [[ $(id -u) -ne 0 ]]; then
  echo "build-image.sh: run as root (rootful podman, mmdebstrap)" >&2
  exit 1
fi

# --- tools ---------------------------------------------------------------------------------
missing=()
for p in podman buildah mmdebstrap runc; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# crun fails on this kind of host (hybrid cgroups): use runc. Raise the default ulimits (RocksDB
# opens many files).
if [[ ! -e /etc/containers/containers.conf ]]; then
  log "writing /etc/containers/containers.conf (runtime runc)"
  mkdir -p /etc/containers
  cat >/etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF
elif ! grep -q '^ *runtime *= *"runc"' /etc/containers/containers.conf; then
  echo "warning: /etc/containers/containers.conf does not set runtime = \"runc\"" >&2
fi

# --- the image for this commit, if it exists -------------------------------------------------
if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
  echo "warning: uncommitted changes are not in the image (it is built from HEAD = $SHA)" >&2
fi
# An image built from an earlier commit has the same content when nothing that goes into it
# changed since: documentation, manifests and these scripts do not.
same_content() {
  local rev
  rev=$(podman image inspect --format '{{index .Labels "org.opencontainers.image.revision"}}' "$1" 2>/dev/null) || return 1
  [[ -n "$rev" ]] && git cat-file -e "$rev^{commit}" 2>/dev/null &&
    git diff --quiet "$rev" HEAD -- . ':(exclude)*.md' ':(exclude)deploy/k8s' ':(exclude)deploy/*.sh' ':(exclude).gitignore'
}
if ((REUSE)); then
  for candidate in "$IMAGE:$SHA" "$IMAGE:dev"; do
    if podman image exists "$candidate" && same_content "$candidate"; then
      podman tag "$candidate" "$IMAGE:$SHA" "$IMAGE:dev"
      log "reusing $candidate (built from $(podman image inspect --format '{{index .Labels "org.opencontainers.image.revision"}}' "$candidate" | cut -c1-12)), tagged $IMAGE:$SHA and :dev"
      podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$IMAGE:$SHA"
      exit 0
    fi
  done
fi

WORK=$(mktemp -d /tmp/sluice-image.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# --- base image from the Debian archive ------------------------------------------------------
# The Debian entries (deb822 or one-line) of apt's sources, as one-line entries for mmdebstrap.
debian_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] && awk '$1 == "deb" && $0 ~ /debian-archive-keyring|deb\.debian\.org|\/debian(-security)?\/? /' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk 'function flush() { if (types ~ /(^| )deb( |$)/ && (key ~ /debian-archive-keyring/ || uris ~ /deb\.debian\.org/)) {
           n = split(uris, u, " "); m = split(suites, s, " ");
           for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print "deb " u[i] " " s[j] " " comps }
           types = uris = suites = comps = key = "" }
         /^[ \t]*$/ { flush(); next }
         /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
         /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
         /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
         /^Components:/ { sub(/^Components:[ \t]*/, ""); comps = $0 }
         /^Signed-By:/ { sub(/^Signed-By:[ \t]*/, ""); key = $0 }
         END { flush() }' "$f"
  done
}
if ((REBUILD_BASE)) || ! podman image exists "$BASE"; then
  mapfile -t sources < <(debian_sources | grep -E ' bookworm(-updates|-security)? ' | sort -u)
  ((${#sources[@]})) || sources=("deb http://deb.debian.org/debian bookworm main")
  log "mmdebstrap --variant=minbase bookworm from: ${sources[*]}"
  mmdebstrap --quiet --variant=minbase --format=tar bookworm "$WORK/rootfs.tar" "${sources[@]}"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    "$WORK/rootfs.tar" "$BASE" >/dev/null
  rm -f "$WORK/rootfs.tar"
  log "base image $BASE: $(podman images --format '{{.Size}}' "$BASE")"
fi

# --- the Sluice image ------------------------------------------------------------------------
git archive --format=tar HEAD | tar -x -C "$WORK"
CCACHE_HOST_DIR=$(ccache -k cache_dir 2>/dev/null || echo "$HOME/.cache/ccache")
mkdir -p "$CCACHE_HOST_DIR"
log "podman build $IMAGE:$SHA (ccache from $CCACHE_HOST_DIR)"
podman build --pull=never --network host \
  --timestamp "$(git log -1 --format=%ct HEAD)" \
  --build-arg BASE_IMAGE="$BASE" --build-arg GIT_SHA="$(git rev-parse HEAD)" \
  -v "$CCACHE_HOST_DIR:/ccache:z" \
  -f "$WORK/deploy/Containerfile" -t "$IMAGE:$SHA" -t "$IMAGE:dev" "$WORK"

size=$(podman image inspect --format '{{.Size}}' "$IMAGE:$SHA")
log "built $IMAGE:$SHA and $IMAGE:dev: $((size / 1000000)) MB ($size bytes)"
