#!/usr/bin/env bash
# The project's test command (the README's and CI's): formatting, lints, then every test in
# release mode. GPU tests run on a real GPU when one exists, else on Mesa's lavapipe (a Vulkan
# device on the CPU), which this script installs when no Vulkan device is present. The GPU tests
# are told a GPU is required (FRFLOW_REQUIRE_GPU=1), so a missing device fails them, not skips.
set -euo pipefail
cd "$(dirname "$0")/.."

have_vulkan_device() {
  command -v vulkaninfo >/dev/null 2>&1 && vulkaninfo --summary 2>/dev/null | grep -q 'deviceName'
}

if ! have_vulkan_device; then
  echo "test.sh: no Vulkan device found; installing Mesa lavapipe (mesa-vulkan-drivers)"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers vulkan-tools libvulkan1 >/dev/null
  have_vulkan_device || { echo "test.sh: still no Vulkan device after installing lavapipe" >&2; exit 1; }
fi
vulkaninfo --summary 2>/dev/null | grep -E 'deviceName|driverName' | sed 's/^/test.sh: /' || true

export FRFLOW_REQUIRE_GPU=1
# Mesa warns on stderr at every adapter enumeration when this is unset (as in CI containers).
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  XDG_RUNTIME_DIR=$(mktemp -d)
  export XDG_RUNTIME_DIR
fi
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
# The lean library (`default-features = false`): it builds, and pulls in no CLI-only crate.
cargo clippy --release --lib --no-default-features -- -D warnings
if cargo tree -e normal --no-default-features --prefix none | grep -E '^(clap|plotters|indicatif) '; then
  echo "test.sh: the lean library depends on a CLI-only crate (above)" >&2
  exit 1
fi
cargo test --release

# The Python package (python/): lint its crate, build its wheel with maturin into a virtual
# environment (reusing target/, so the frflow crate compiled above is not rebuilt from scratch),
# and run its pytest suite; its GPU tests, too, fail rather than skip without an adapter.
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "test.sh: installing python3 with venv and pip"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends python3 python3-venv python3-pip >/dev/null
fi
VENV=target/python-venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check 'maturin>=1.8,<2' pytest numpy
export PYO3_PYTHON="$PWD/$VENV/bin/python"
cargo clippy --release -p frflow-python --all-targets -- -D warnings
CARGO_TARGET_DIR="$PWD/target" "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  --no-build-isolation --force-reinstall --no-deps ./python
# Run from outside the source tree, so that the installed package (not python/frflow) is imported.
(cd python/tests && "$PWD/../../$VENV/bin/python" -m pytest -q -p no:cacheprovider .)
