#!/bin/sh
# Regenerates src/gateway/httproute.rs from the vendored Gateway API CRD (standard channel,
# v1.6.1) in src/gateway/crds/ (see crds/SOURCE.md). Run from the crate root:
#   cargo install kopium --version 0.24.1 --locked && sh src/gateway/regenerate.sh
set -eu
[ "$(kopium --version)" = "kopium 0.24.1" ] || { echo "need kopium 0.24.1" >&2; exit 1; }
out="src/gateway/httproute.rs"
{
    echo "// Generated from src/gateway/crds/standard/httproutes.yaml (gateway.networking.k8s.io/v1). Do not edit."
    echo "// Regenerate with: sh src/gateway/regenerate.sh (kopium 0.24.1; flags below)."
    # --schema=disabled: the Gateway API's own CRDs are installed, Forklane never needs crd().
    # --no-condition: route status conditions are standard, but Forklane never reads them typed.
    kopium -f src/gateway/crds/standard/httproutes.yaml --api-version v1 --schema=disabled \
        --derive Default --derive PartialEq --docs --no-condition
} | awk '
    # kopium derives Default on structs but not on enums, and a struct with a required enum
    # field then fails to compile: give every enum Default, its first variant. It is only a
    # placeholder for `..Default::default()`: Forklane writes every enum field it sets.
    /^#\[derive\(.*\)\]$/ && !/Default/ { held = $0; next }
    held != "" { if ($0 ~ /^pub enum /) { sub(/PartialEq\)\]/, "Default, PartialEq)]", held); print held; print; print "    #[default]" } else { print held; print } held = ""; next }
    { print }
' > "$out"
rustfmt --edition 2024 "$out"
