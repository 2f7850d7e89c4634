# authd's container image: a static binary on distroless/static, run as
# the image's non-root user, with no shell. Untested in this repository's
# development and CI environment, which has no container engine (README,
# "Container files").
#
#   docker build -t placebrain-auth-service .

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static: no cgo (the SQLite driver is pure Go), so it runs without libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/authd ./cmd/authd \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/authd /authd
# DATA__DIR for the embedded SQLite file when DATABASE__URL is empty;
# mount a volume there to keep it.
COPY --from=build --chown=65532:65532 /out/data /data
ENV GRPC__LISTEN_ADDR=:50051 \
    DATA__DIR=/data
USER 65532:65532
EXPOSE 50051
# Exit status from the local grpc.health.v1 (SERVING: 0).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/authd", "healthcheck"]
ENTRYPOINT ["/authd"]
CMD ["serve"]
