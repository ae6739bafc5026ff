#!/usr/bin/env bash
# Installs the Debian packages the benchmark drives (haproxy, nginx with its
# stream module, wrk, iperf3, taskset/prlimit from util-linux) when they are
# missing. As root it installs them with apt-get; otherwise it prints the
# command to run and exits 1, so the harness can say why it stopped.
set -euo pipefail
missing=()
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
# The stream module is a separate package on Debian; nginx -V lists it only
# when built in, so look for the dynamic module file instead.
if ! ls /usr/lib/nginx/modules/ngx_stream_module.so >/dev/null 2>&1 &&
  ! (command -v nginx >/dev/null 2>&1 && nginx -V 2>&1 | grep -q -- '--with-stream[^=_]'); then
  missing+=(libnginx-mod-stream)
fi
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
{ command -v taskset >/dev/null 2>&1 && command -v prlimit >/dev/null 2>&1; } || missing+=(util-linux)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "install-tools: installing ${missing[*]} with apt-get" >&2
  apt-get update -qq >/dev/null
  # The Debian nginx and iperf3 packages start system services on install;
  # policy-rc.d 101 stops that so the ports and CPUs stay free for the run.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  echo 'iperf3 iperf3/start_daemon boolean false' | debconf-set-selections 2>/dev/null || true
  status=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
  [ "$created_policy" -eq 1 ] && rm -f "$policy"
  exit "$status"
fi
echo "install-tools: missing ${missing[*]}: run 'sudo apt-get install ${missing[*]}' (or bash bench/install-tools.sh as root)" >&2
exit 1
