#!/bin/sh
# Installs the Debian packages named as arguments that are missing (one apt-get run for all):
# chromium, which the console's browser tests drive through Playwright's `executable_path`
# (Playwright's own browser download needs the internet), and bubblewrap, which the tool
# executor's enforced sandbox runs every call in. Idempotent: installed packages are left alone.
set -eu
missing=""
for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing:$missing, and apt-get is not available: install them with your package manager" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
LOCK="-o DPkg::Lock::Timeout=300"
$SUDO apt-get $LOCK update -qq
# shellcheck disable=SC2086
$SUDO apt-get $LOCK install -y -qq --no-install-recommends $missing >/dev/null
