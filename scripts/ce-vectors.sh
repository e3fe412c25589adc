#!/usr/bin/env bash
# Acceptance check: `courier ce validate` accepts every valid CloudEvents conformance vector and
# rejects every invalid one with a message naming the attribute.
set -euo pipefail
cd "$(dirname "$0")/.."
courier=${COURIER_BIN:-.build/debug/courier}
python3 - "$courier" Tests/CourierCloudEventsTests/Vectors <<'PY'
import json, subprocess, sys, re
courier, folder = sys.argv[1], sys.argv[2]
failures = 0
for name, key, expect_valid in [("valid-events.json", "event", True), ("invalid-events.json", "event", False),
                                 ("valid-batches.json", "batch", True), ("invalid-batches.json", "batch", False)]:
    for test in json.load(open(f"{folder}/{name}"))["tests"]:
        run = subprocess.run([courier, "ce", "validate"], input=json.dumps(test[key]).encode(), capture_output=True)
        message = run.stderr.decode().strip()
        ok = (run.returncode == 0) if expect_valid else (run.returncode != 0 and re.search(r"attribute '[^']+'|batch element [0-9]+", message))
        if not ok:
            failures += 1
            print(f"FAIL {name} {test['id']}: exit {run.returncode} {message}")
print(f"ce-vectors: {'all vectors behave' if failures == 0 else f'{failures} failure(s)'}")
sys.exit(1 if failures else 0)
PY
