#!/usr/bin/env bash
# Builds the DocC documentation of every library module with swift-docc-plugin and fails on any
# DocC warning (unresolved symbol links, undocumented parameters).
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(Courier CourierCore CourierIngest CourierJetStream CourierCrypto CourierCloudEvents CourierRouting CourierTesting)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
swift package generate-documentation $(printf -- '--target %s ' "${targets[@]}") > "$log" 2>&1 || { cat "$log" >&2; exit 1; }
# SwiftPM's own notes about dependencies' unhandled files are not documentation warnings.
if grep -E '^warning:' "$log" | grep -v 'unhandled; explicitly declare' ; then
    echo "docs: DocC reported warnings" >&2
    exit 1
fi
echo "docs: built $(ls -d .build/plugins/Swift-DocC/outputs/*.doccarchive | wc -l) documentation archives without warnings"
