#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then run them all.
# This is the README's test command; .ci/run calls exactly it.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)  # the TLS front (platform/tls.sh)
command -v openssl >/dev/null || need+=(openssl)
[ -d /usr/share/fonts/opentype/noto ] || need+=(fonts-noto-cjk)  # Japanese glyphs for screenshots
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
id postgres >/dev/null 2>&1 || need+=(postgresql-15)
if ((${#need[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
# Style first (ruff.toml): a lint error or an unformatted file fails the run before the tests.
python3 -m ruff check .
python3 -m ruff format --check .
exec python3 -m pytest "$@"
