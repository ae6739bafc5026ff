#!/usr/bin/env bash
# Installs the Debian packages the tests use (socat by default) when they are
# missing. As root it installs them; otherwise it says how, and the tests that
# need a missing tool fail with that tool's name.
set -euo pipefail
missing=()
for tool in "${@:-socat}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-tools: installing ${missing[*]} with apt-get" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "ensure-tools: missing ${missing[*]}: run 'sudo apt-get install ${missing[*]}'" >&2
fi
