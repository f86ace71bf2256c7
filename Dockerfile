# pushflow: one image, every component (`pushflow up`, `pushflow run <name>`).
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev zlib1g-dev && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --bin pushflow

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /app pushflow
WORKDIR /app
COPY --from=build /src/target/release/pushflow /usr/local/bin/pushflow
COPY topology.yaml /app/topology.yaml
COPY schemas/*.avsc /app/schemas/
USER pushflow
ENTRYPOINT ["pushflow"]
CMD ["up"]
