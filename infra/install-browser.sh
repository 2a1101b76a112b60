#!/bin/sh
# The browser the console's tests drive: Debian's chromium, through Playwright's
# `executable_path` (Playwright's own browser download needs the internet). Idempotent: a
# machine that has /usr/bin/chromium is left alone; a fresh CI machine gets it from apt.
set -eu
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium
