#!/usr/bin/env bash
# Install the Debian packages cnet builds and tests against, when they are missing.
# Sourced by scripts/test and scripts/demo. Needs root (apt-get) only when something is missing.
set -euo pipefail
CNET_DEB_PACKAGES=(
  pkg-config libnftnl-dev libmnl-dev nftables iproute2 iputils-ping
  containernetworking-plugins netavark iperf3 conntrack iptables ipset netcat-openbsd
  podman crun busybox-static musl-tools
)
missing=()
for p in "${CNET_DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "cnet: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cnet: cargo not found; install the Rust toolchain first" >&2
  exit 1
fi
# The workspace builds for musl (.cargo/config.toml says why).
musl_lib="$(rustc --print target-libdir --target x86_64-unknown-linux-musl 2>/dev/null || true)"
if ! ls "$musl_lib"/libstd-*.rlib >/dev/null 2>&1; then
  echo "cnet: adding the Rust target x86_64-unknown-linux-musl"
  rustup target add x86_64-unknown-linux-musl
fi
