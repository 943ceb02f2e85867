#!/bin/sh
# Regenerates src/istio/{virtualservice,destinationrule,telemetry}.rs from the vendored
# Istio CRDs in src/istio/crds/ (see crds/SOURCE.md). Run from the crate root:
#   cargo install kopium --version 0.24.1 --locked && sh src/istio/regenerate.sh
set -eu
[ "$(kopium --version)" = "kopium 0.24.1" ] || { echo "need kopium 0.24.1" >&2; exit 1; }
for kind in virtualservice destinationrule telemetry; do
    out="src/istio/$kind.rs"
    group=networking.istio.io
    [ "$kind" = telemetry ] && group=telemetry.istio.io
    {
        echo "// Generated from src/istio/crds/$kind.crd.yaml ($group/v1). Do not edit."
        echo "// Regenerate with: sh src/istio/regenerate.sh (kopium 0.24.1; flags below)."
        # --schema=disabled: Istio installs these CRDs, Forklane never needs crd().
        # --no-condition: istiod's status conditions are not Kubernetes' standard Condition
        # (no reason, no lastTransitionTime where it writes a probe time, generations as
        # strings); read as one, a single reported object would make the whole list unreadable.
        kopium -f "src/istio/crds/$kind.crd.yaml" --api-version v1 --schema=disabled \
            --derive Default --derive PartialEq --docs --no-condition
    } > "$out"
    rustfmt --edition 2024 "$out"
done
