#!/bin/sh
# Installs the peers of `wsgate bench compare` (nginx and HAProxy, Debian's
# packages) when missing. The packages' own services are not needed: the
# benchmark starts each peer itself with a generated config.
set -e
missing=""
command -v nginx >/dev/null 2>&1 || missing="$missing nginx"
command -v haproxy >/dev/null 2>&1 || missing="$missing haproxy"
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
