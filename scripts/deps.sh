#!/usr/bin/env bash
# Installs r1's build and test dependencies from Debian packages. Idempotent: packages already
# present are left alone, and apt is only touched when something is missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config zstd tmux clang libclang-rt-dev
      libcli11-dev libsentencepiece-dev libxxhash-dev libzstd-dev catch2 libpcre2-dev
      nlohmann-json3-dev libedit-dev libutf8proc-dev libcpp-httplib-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} packages present"
  exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
