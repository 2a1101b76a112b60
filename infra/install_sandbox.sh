#!/bin/sh
# Installs bubblewrap, which the tool executor's enforced sandbox runs every tool call in.
# Idempotent: does nothing when bwrap is already on PATH. Debian/Ubuntu only (apt-get).
set -eu
if command -v bwrap >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "bubblewrap (bwrap) is missing and apt-get is not available: install it with your package manager" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# `make test` runs its prerequisites side by side; another apt-get may hold the lock for a while.
LOCK="-o DPkg::Lock::Timeout=300"
$SUDO apt-get $LOCK update -qq
$SUDO apt-get $LOCK install -y -qq --no-install-recommends bubblewrap >/dev/null
command -v bwrap >/dev/null
