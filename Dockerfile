# One image for every role: `serve --role gateway|mcp|ledger|metrics|audit|admin`, and the
# one-shot tasks (`db migrate up`, `kafka create-topics`, ...). Build: docker build -t caracal .
#
# Image layout (tests/deploy runs the binary under exactly these paths, user and environment):
#   /usr/local/bin/caracal    the binary, the entrypoint
#   /etc/caracal/             configuration and secrets, mounted read-only (caracal.yaml)
#   /var/lib/caracal          the data volume: the only writable path (embedded store, keys)
#   uid/gid 65532             non-root; the root filesystem can be mounted read-only

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Manifests first, so the dependency layer is cached across source changes.
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
COPY migrations ./migrations
COPY schemas ./schemas
COPY pricebook ./pricebook
# No .git in the context: `--build-arg CARACAL_GIT_COMMIT=$(git rev-parse --short=12 HEAD)`
# puts the commit in `caracal --version` and /health (build.rs reads it).
ARG CARACAL_GIT_COMMIT=""
RUN cargo build --release --locked --bin caracal \
 && install -D -m 0755 target/release/caracal /out/caracal

FROM debian:bookworm-slim
# No package is installed: the binary needs only glibc (rustls with ring, SQLite bundled,
# webpki roots compiled in), and the health check uses bash's /dev/tcp.
RUN groupadd --system --gid 65532 caracal \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/caracal --no-create-home \
      --shell /usr/sbin/nologin caracal \
 && mkdir -p /var/lib/caracal /etc/caracal \
 && chown 65532:65532 /var/lib/caracal \
 && chmod 0750 /var/lib/caracal
COPY --from=build /out/caracal /usr/local/bin/caracal
COPY pricebook/default.yaml /usr/share/caracal/pricebook/default.yaml

ENV CARACAL_DATADIR=/var/lib/caracal \
    CARACAL_TELEMETRY__LOGFORMAT=json \
    CARACAL_HEALTH_PORT=9090
WORKDIR /var/lib/caracal
VOLUME ["/var/lib/caracal"]
USER 65532:65532
# 8443 gateway, 8080 MCP, 8081 admin API, 9090 telemetry (9091 for a metrics-only process).
EXPOSE 8443 8080 8081 9090 9091
# Every role's /health is served by the process's telemetry listener.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${CARACAL_HEALTH_PORT} && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && read -r _ code _ <&3 && [ \"$code\" = 200 ]"]
ENTRYPOINT ["caracal"]
CMD ["serve"]
