# numguard in a container: built with the Rust toolchain, run as a non-root user on a slim
# Debian. The build needs no protoc (build.rs compiles proto/ with protox).
#   docker build -t numguard .
#   docker run -p 50051:50051 -v numguard-data:/var/lib/numguard numguard
# The first start prints the first API key on stdout (docker logs). Put a settings file at
# /etc/numguard/numguard.toml (NUMGUARD_CONFIG) or pass NUMGUARD_* variables.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin numguard \
    && strip target/release/numguard

FROM debian:bookworm-slim
# ca-certificates unpinned on purpose: it must follow Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/numguard --create-home numguard \
    && chmod 0700 /var/lib/numguard
COPY --from=build /src/target/release/numguard /usr/local/bin/numguard
USER 10001:10001
WORKDIR /var/lib/numguard
ENV NUMGUARD_LISTEN=0.0.0.0:50051 \
    NUMGUARD_DATABASE_URL=sqlite:///var/lib/numguard/numguard.db \
    NUMGUARD_KEY_FILE=/var/lib/numguard/numguard.key \
    NUMGUARD_LOG_FORMAT=json
VOLUME ["/var/lib/numguard"]
# gRPC; the REST facade and metrics when NUMGUARD_REST_LISTEN / NUMGUARD_METRICS_LISTEN
# are set (e.g. 0.0.0.0:8080 and 0.0.0.0:9464).
EXPOSE 50051 8080 9464
ENTRYPOINT ["/usr/local/bin/numguard"]
CMD ["serve"]
