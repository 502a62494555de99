# tracktable in a container: `docker build -t tracktable .`
#
# The build stage compiles the binary in the `dist` profile (release with fat LTO); the runtime image holds only it, the
# system's CA certificates (TLS to the warehouse and AWS) and an unprivileged user.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --profile dist --locked -p tracktable \
    && cp target/dist/tracktable /usr/local/bin/tracktable

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/tracktable --create-home tracktable
COPY --from=build /usr/local/bin/tracktable /usr/local/bin/tracktable
USER tracktable
WORKDIR /var/lib/tracktable
# Metrics, health and readiness; the timely cluster port when processes > 1.
EXPOSE 9464 2101
ENV TRACKTABLE_METRICS_ADDR=0.0.0.0:9464
ENTRYPOINT ["tracktable"]
CMD ["run"]
