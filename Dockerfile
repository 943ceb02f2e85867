# syntax=docker/dockerfile:1
# The controller's image: `docker build -t REGISTRY/forklane:VERSION .` (README, "Install on a
# cluster"). tests/deploy_image.rs checks this file against Cargo.toml and deploy/.

# The toolchain the project is built and tested with (the workspace needs rust-version 1.89 or later).
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# The whole workspace: the binaries embed files of crds/, examples/ and tests/reference/ (the
# context is kept small by .dockerignore).
COPY . .
# Cache mounts keep the registry and the compiled dependencies between builds; the binaries are
# copied out of the cached target directory, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin forklane --bin kubectl-forklane \
    && install -D -m 0755 -t /out target/release/forklane target/release/kubectl-forklane

# glibc and libgcc for the binaries (aws-lc is linked statically), no shell, no package manager:
# Debian 12 like the builder, so that the glibc matches.
FROM gcr.io/distroless/cc-debian12:nonroot
# The workspace version (Cargo.toml), the tag deploy/ names.
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="forklane" \
      org.opencontainers.image.description="Release experiments on a service mesh, decided with statistics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/forklane/forklane"
COPY --from=builder /out/forklane /out/kubectl-forklane /usr/local/bin/
# The distroless "nonroot" user; deploy/deployment.yaml runs as the same uid and gid.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/forklane"]
CMD ["run"]
