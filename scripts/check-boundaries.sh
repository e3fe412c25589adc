#!/usr/bin/env bash
# Architecture checks CI runs: every cnats call lives in a Native/ folder, no public type is
# defined there, and every `@unchecked Sendable` has a paragraph above it saying why it is safe.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0

outside=$(grep -rnE '\b(js_[A-Za-z]+|jsCtx_[A-Za-z]+|natsConnection_[A-Za-z]+|natsMsg_[A-Za-z]+|natsMsgHeader_[A-Za-z]+|natsSubscription_[A-Za-z]+|natsOptions_[A-Za-z]+|kvStore_[A-Za-z]+|nats_[A-Za-z]+)\(' Sources --include='*.swift' | grep -v '/Native/' || true)
if [ -n "$outside" ]; then
    echo "cnats calls outside a Native/ folder:" >&2
    echo "$outside" >&2
    status=1
fi
if grep -rn 'import CNATS' Sources --include='*.swift' | grep -v '/Native/' >&2; then
    echo "CNATS imported outside a Native/ folder" >&2
    status=1
fi
public=$(grep -rnE '^\s*public (final class|class|struct|enum|protocol|actor) ' Sources --include='*.swift' | grep '/Native/' || true)
if [ -n "$public" ]; then
    echo "public types defined in a Native/ folder:" >&2
    echo "$public" >&2
    status=1
fi

# Each `@unchecked Sendable` declaration needs a doc paragraph naming it above the declaration.
missing=$(python3 - <<'PY'
import pathlib, re
for path in pathlib.Path("Sources").rglob("*.swift"):
    lines = path.read_text().split("\n")
    for i, line in enumerate(lines):
        if "@unchecked Sendable" in line and not line.lstrip().startswith("///"):
            j = i - 1
            doc = []
            while j >= 0 and lines[j].lstrip().startswith("///"):
                doc.append(lines[j])
                j -= 1
            if not any("`@unchecked Sendable`" in d for d in doc):
                print(f"{path}:{i + 1}: {line.strip()}")
PY
)
if [ -n "$missing" ]; then
    echo "@unchecked Sendable without a paragraph saying why it is safe:" >&2
    echo "$missing" >&2
    status=1
fi
[ $status -eq 0 ] && echo "boundaries: cnats only in Native/, no public type there, every @unchecked Sendable explained"
exit $status
