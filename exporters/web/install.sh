#!/usr/bin/env bash
# Install the browser runtime of isoproof.exporters (`make web`; idempotent):
#   1. Debian's chromium at /usr/bin/chromium (apt-get as root, only where it is missing);
#   2. node + npm (apt-get, only where missing);
#   3. the npm packages pinned by package-lock.json (`npm ci`: onnxruntime-web, puppeteer-core),
#      with no browser download (puppeteer-core never downloads one; scripts are not run).
# Without root or apt (a developer machine) a missing piece is reported and the browser tests
# skip with that reason; with CI=true it is an error, so CI never silently skips them.
set -euo pipefail
cd "$(dirname "$0")"
CHROMIUM="${ISOPROOF_CHROMIUM:-/usr/bin/chromium}"
started=$(date +%s)

give_up() {
    if [ "${CI:-}" = "true" ]; then
        echo "make web: error: $1 (CI=true: the browser tests must run)" >&2
        exit 1
    fi
    echo "make web: warning: $1; the browser tests will skip" >&2
    exit 0
}

apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        give_up "$1 is missing and apt-get cannot run here (not root or no apt): install $2"
    fi
    if [ -z "${_APT_UPDATED:-}" ]; then
        apt-get update -qq || give_up "apt-get update failed"
        _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null \
        || give_up "apt-get install $2 failed"
}

[ -x "$CHROMIUM" ] || apt_install "$CHROMIUM" chromium
command -v node >/dev/null 2>&1 || apt_install node nodejs
command -v npm >/dev/null 2>&1 || apt_install npm npm
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.isoproof-lock 2>/dev/null)" != "$lock_sum" ]; then
    PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
        || give_up "npm ci failed in $(pwd)"
    echo "$lock_sum" > node_modules/.isoproof-lock
fi
version=$("$CHROMIUM" --version 2>/dev/null | awk '{print $2}')
echo "make web: chromium $version, node $(node --version), npm packages in $(pwd)/node_modules" \
    "($(( $(date +%s) - started )) s)"
