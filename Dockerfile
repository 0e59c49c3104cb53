# syntax=docker/dockerfile:1
# dpproxy container image: a Go builder with a C toolchain (pg_query_go uses
# cgo), then a slim Debian runtime. The build step is scripts/build.sh, the
# same command CI (scripts/test.sh) and scripts/quickstart.sh run.
#
#   docker build -t dpproxy .
#   docker run --rm dpproxy --help
#
# docker-compose.yml builds this image for its dpproxy and demo-load services.

FROM golang:1.26-bookworm AS build
# go.mod may ask for a newer patch release than the image has.
ENV GOTOOLCHAIN=auto
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    ./scripts/build.sh /out

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/dpproxy --create-home dpproxy
COPY --from=build /out/dpproxy /usr/local/bin/dpproxy
USER dpproxy
WORKDIR /var/lib/dpproxy
# 6432: analysts (PostgreSQL protocol); 6433: admin HTTP (/metrics, /healthz,
# /readyz, /ledger/*), keep it on a private network.
EXPOSE 6432 6433
ENTRYPOINT ["dpproxy"]
CMD ["serve", "--policy", "/etc/dpproxy/policy.yaml", "--log-format", "json"]
