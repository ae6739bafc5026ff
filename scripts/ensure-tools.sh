#!/usr/bin/env bash
# Installs the Debian packages behind the commands the tests use (socat,
# openssl for the TLS tests' certificates, python3 for the reset and backlog
# peers, ps, prometheus and promtool for the metrics tests, chromium for the
# dashboard's browser test, haproxy for the PROXY protocol interop test, dnsmasq as the
# discovery tests' DNS server, sshd, ssh, initdb, psql, nginx and curl as the
# protocol-detection tests' real peers, dig as the UDP tests' DNS client,
# lintian, dpkg-deb, man and systemd-analyze for the Debian package's test) when
# they are missing. As root it installs them; otherwise it says how, and the
# tests that need a missing command fail naming it (the metrics, dashboard and
# HAProxy and discovery tests skip instead, saying so, when their tool is missing and it is
# not root).
set -euo pipefail
# Debian keeps haproxy in /usr/sbin, which a user's PATH often lacks.
PATH="$PATH:/usr/sbin:/sbin"
declare -A package=([socat]=socat [openssl]=openssl [python3]=python3 [ps]=procps [promtool]=prometheus [prometheus]=prometheus [chromium]=chromium [haproxy]=haproxy [dnsmasq]=dnsmasq-base
  [sshd]=openssh-server [ssh]=openssh-client [ssh-keygen]=openssh-client [psql]=postgresql-client [initdb]=postgresql [nginx]=nginx [curl]=curl [dig]=bind9-dnsutils
  [lintian]=lintian [dpkg-deb]=dpkg [man]=man-db [systemd-analyze]=systemd)
# Debian keeps PostgreSQL's server programs (initdb, postgres) off PATH, in
# /usr/lib/postgresql/<version>/bin.
installed() {
  command -v "$1" >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}
missing=()
for tool in "${@:-socat openssl python3 ps}"; do
  for name in $tool; do
    installed "$name" || missing+=("${package[$name]:-$name}")
  done
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-tools: installing ${missing[*]} with apt-get" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "ensure-tools: missing ${missing[*]}: run 'sudo apt-get install ${missing[*]}'" >&2
fi
