#!/usr/bin/env bash
# Starts what the test suite needs that the tests cannot start themselves. (moto is started by the tests.)
set -euo pipefail
echo "test services: nothing to start yet"
