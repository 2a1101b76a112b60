#!/usr/bin/env bash
# Build the collector of builder.yaml into infra/otel/bin/otelcol-agentlog (about two
# minutes on a fresh machine, from the Go module proxy).
set -euo pipefail
cd "$(dirname "$0")"
BIN=bin/otelcol-agentlog
command -v go >/dev/null || { echo "the collector needs Go (https://go.dev/dl/)" >&2; exit 1; }
mkdir -p bin
GOBIN="$PWD/bin" go install go.opentelemetry.io/collector/cmd/builder@v0.165.0
bin/builder --config builder.yaml
mv bin/build/otelcol-agentlog "$BIN"
rm -rf bin/build
