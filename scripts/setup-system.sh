#!/usr/bin/env bash
# System packages joulegrid uses from Debian: Fashion-MNIST images (image_cnn workload) and
# chromium (the report's browser test). Installed only when missing; needs root (or sudo).
# Set JOULEGRID_SKIP_APT=1 to skip (then the image workload and browser test are unavailable).
set -euo pipefail
[ "${JOULEGRID_SKIP_APT:-0}" = 1 ] && exit 0
command -v dpkg-query >/dev/null || exit 0   # not Debian (el9 on lxplus, Blackett): nothing to install this way
pkgs=(dataset-fashion-mnist chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "setup-system: not root and no sudo; install ${missing[*]} yourself (apt-get install ${missing[*]})" >&2
  exit 0
fi
echo "setup-system: apt-get install ${missing[*]}" >&2
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
