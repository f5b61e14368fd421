#!/usr/bin/env bash
# Installs the Debian packages gossip needs, skipping those already present.
# Idempotent: safe to run on every build. Needs root (or sudo) only when something is missing.
#   --torch       also python3-torch (1.13, CPU; ~750 MB, a few minutes): the Python package's
#                 torch tests and examples need it, the build does not (scripts/test.sh passes it).
#   --sanitizers  also clang-14 with libFuzzer and its sanitizer runtimes, for the sanitizer build
#                 and the fuzz targets (scripts/build-sanitized.sh, scripts/fuzz.sh).
set -euo pipefail

packages=(
  build-essential meson ninja-build pkg-config
  libzmq3-dev cppzmq-dev libspdlog-dev libfmt-dev doctest-dev
  libeigen3-dev libcli11-dev libtomlplusplus-dev nlohmann-json3-dev
  libopenblas-dev libomp-dev zlib1g-dev
  dataset-fashion-mnist gnuplot-nox python3 python3-numpy pybind11-dev
)
for arg in "$@"; do
  case "$arg" in
    --torch) packages+=(python3-torch) ;;
    --sanitizers) packages+=(clang-14 libclang-rt-14-dev libomp-14-dev time) ;;
    *) echo "install-deps: unknown option $arg" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
