#!/usr/bin/env bash
# Everything `cargo xtask test` needs besides Rust and Go, installed idempotently with caches
# outside the clone (PATRONI_RS_CACHE, default ~/.cache/patroni-rs). Run by `cargo xtask test`
# itself (skip with --no-install); needs root, as the suite does.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf '\n=== %s (%ss)\n' "$*" "$SECONDS"; }
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  apt-get install -y -qq "$@" >/dev/null
}

# --- system packages -------------------------------------------------------
# iproute2: network namespaces for test hosts; util-linux: setpriv (run PostgreSQL
# unprivileged); procps: ps; postgresql-15: the server under test; curl: the e2e tests' HTTP
# client inside test hosts; prometheus: promtool checks /metrics; python3-venv: Patroni's venvs.
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v setpriv >/dev/null || need+=(util-linux)
command -v ps >/dev/null || need+=(procps)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
command -v git >/dev/null || need+=(git)
command -v curl >/dev/null || need+=(curl)
command -v promtool >/dev/null || need+=(prometheus)
command -v python3 >/dev/null || need+=(python3)
# e2e t70 runs the Python Patroni daemon from a venv built with the system python3.
if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
  need+=(python3-venv)
fi
# The lab's real node (crates/testlab/src/node.rs) and the image (cargo xtask image):
# containerd + runc + CNI plugins, iptables and conntrack for kube-proxy, mmdebstrap and umoci.
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v umoci >/dev/null || need+=(umoci)
# The ZooKeeper DCS tests (crates/testlab/src/zookeeper.rs) run Debian's server jar with Java.
[ -f /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
command -v java >/dev/null || need+=(default-jre-headless)
# etcd-client (the etcd3 DCS) compiles etcd's .proto files at build time: protoc.
command -v protoc >/dev/null || need+=(protobuf-compiler)
# Backups (#18, docs/backups.md): the two tools patroni-backup drives.
command -v pgbackrest >/dev/null || need+=(pgbackrest)
command -v barman-cloud-wal-archive >/dev/null || need+=(barman-cli-cloud)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  apt_install "${need[@]}"
fi
# The postgresql package creates this user; make sure it exists regardless.
id postgres >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres

# --- Patroni's own Python package: the compatibility peer of the e2e tests ----
CACHE="${PATRONI_RS_CACHE:-$HOME/.cache/patroni-rs}"
mkdir -p "$CACHE"
VENV="$CACHE/venv"
if ! cmp -s crates/e2e/py/requirements.txt "$VENV/.requirements" 2>/dev/null; then
  log "python venv with Patroni (crates/e2e/py/requirements.txt)"
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then apt_install python3-venv; fi
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r crates/e2e/py/requirements.txt
  cp crates/e2e/py/requirements.txt "$VENV/.requirements"
fi
if ! cmp -s crates/e2e/py/requirements-etcd3.txt "$VENV/.requirements-etcd3" 2>/dev/null; then
  log "python-etcd in the Patroni venv (crates/e2e/py/requirements-etcd3.txt)"
  "$VENV/bin/pip" install -q -r crates/e2e/py/requirements-etcd3.txt
  cp crates/e2e/py/requirements-etcd3.txt "$VENV/.requirements-etcd3"
fi
"$VENV/bin/patronictl" version >/dev/null
# moto's S3 server for the backup tests (crates/testlab/src/s3.rs), in a venv of its own: its
# botocore cannot share a venv with Patroni's pinned python-dateutil.
S3_VENV="$CACHE/venv-s3"
if ! cmp -s crates/e2e/py/requirements-s3.txt "$S3_VENV/.requirements" 2>/dev/null; then
  log "python venv with moto's S3 server (crates/e2e/py/requirements-s3.txt)"
  rm -rf "$S3_VENV"
  python3 -m venv "$S3_VENV"
  "$S3_VENV/bin/pip" install -q -r crates/e2e/py/requirements-s3.txt
  cp crates/e2e/py/requirements-s3.txt "$S3_VENV/.requirements"
fi
"$S3_VENV/bin/moto_server" --help >/dev/null

# --- Go modules of the lab's control plane, node, Helm and etcd image ------
# A no-op when the module cache already holds them.
(cd testenv && GOFLAGS="${GOFLAGS:--buildvcs=false}" go mod download)
(cd testenv/helm && GOFLAGS="${GOFLAGS:--buildvcs=false}" go mod download)
(cd testenv/helm3 && GOFLAGS="${GOFLAGS:--buildvcs=false}" go mod download)
(cd testenv/etcd && GOFLAGS="${GOFLAGS:--buildvcs=false}" go mod download)
