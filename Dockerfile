# syntax=docker/dockerfile:1
# Build: docker build --build-arg VERSION=$(git describe --tags --always) \
#          --build-arg COMMIT=$(git rev-parse --short HEAD) -t nouvelhook .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/nouvelhook ./cmd/nouvelhook \
 && mkdir -p /out/data

# A static binary on a distroless base: no shell, no package manager, and a
# non-root user (uid 65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/nouvelhook /usr/local/bin/nouvelhook
COPY --from=build --chown=65532:65532 /out/data /data
ENV NOUVELHOOK_DB=/data/nouvelhook.db
VOLUME ["/data"]
EXPOSE 8080
USER 65532:65532
# The image has no shell or curl: the binary probes its own public listener
# (NOUVELHOOK_LISTEN, default :8080). Give serve its address through that
# variable, not --listen, so that the probe finds it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["/usr/local/bin/nouvelhook", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/nouvelhook"]
CMD ["serve"]
