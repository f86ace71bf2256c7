# pushflow: one image, every component (`pushflow up`, `pushflow run <name>`).
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev zlib1g-dev && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --bin pushflow

FROM debian:bookworm-slim
# curl: the health probe of docker-compose.yml (GET /healthz); /bin/sh here
# is dash, which has no /dev/tcp.
# /var/lib/pushflow/{vapid,ddl}: owned by pushflow, so the named volumes
# docker-compose.yml mounts there start writable by it.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libssl3 zlib1g && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --home /app pushflow \
    && mkdir -p /var/lib/pushflow/vapid /var/lib/pushflow/ddl \
    && chown -R pushflow:pushflow /var/lib/pushflow
WORKDIR /app
COPY --from=build /src/target/release/pushflow /usr/local/bin/pushflow
COPY topology.yaml /app/topology.yaml
COPY schemas/*.avsc /app/schemas/
USER pushflow
ENTRYPOINT ["pushflow"]
CMD ["up"]
