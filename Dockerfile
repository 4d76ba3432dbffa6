# syntax=docker/dockerfile:1
# The orgconnect operator image: the one binary on distroless, running as non-root.
#
#   docker build -t orgconnect .
#   docker run --rm orgconnect crds

# Bookworm, so the binary links against the glibc of the distroless debian12 runtime.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build
ENV CARGO_TERM_COLOR=never \
    CARGO_PROFILE_RELEASE_STRIP=symbols

# Dependencies first, in a layer of their own: with only the manifest and the lock file
# and empty sources, this layer is rebuilt only when the dependencies change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin orgconnect \
    && rm -rf src

# The real sources; touched so Cargo does not take the placeholder's build as current.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin orgconnect \
    && ./target/release/orgconnect --version

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="orgconnect" \
      org.opencontainers.image.description="Kubernetes operator that connects a cluster to AWS Organizations" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /build/target/release/orgconnect /orgconnect
# distroless' nonroot user, by number so the kubelet can check runAsNonRoot.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/orgconnect"]
CMD ["run"]
