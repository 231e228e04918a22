#!/usr/bin/env bash
# Installs everything the tests need (python packages, Debian peers) and runs
# the whole suite. Extra arguments go to pytest. Exit code 5 ("no tests ran")
# is a failure here, not a pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh --test
venv=${SCPNODE_VENV:-.venv}
set +e
"$venv/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "run-tests: pytest collected no tests; treating as failure" >&2
  exit 1
fi
exit "$rc"
