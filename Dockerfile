# cs-pulse container image: a release build, run as an unprivileged user.
#   docker build -t cs-pulse .
#   docker run --rm cs-pulse --help
# Configuration: mount a file at /etc/cs-pulse/cs-pulse.toml (see
# deploy/cs-pulse.example.toml) or set CS_PULSE_* environment variables.

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY schemas schemas
COPY benches benches
COPY examples examples
RUN cargo build --release --locked --bin cs-pulse \
 && strip target/release/cs-pulse

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin cs-pulse
COPY --from=build /src/target/release/cs-pulse /usr/local/bin/cs-pulse
COPY deploy/cs-pulse.example.toml /etc/cs-pulse/cs-pulse.toml
USER 10001:10001
# In a container, metrics must be reachable from outside the loopback interface.
ENV CS_PULSE_METRICS_BIND=0.0.0.0:9464 \
    CS_PULSE_LOG_FORMAT=json
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/cs-pulse"]
CMD ["run", "--config", "/etc/cs-pulse/cs-pulse.toml"]
