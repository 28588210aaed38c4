# syntax=docker/dockerfile:1
# The ledger as a static binary on a minimal, non-root image, with every
# key service (-tags kms: AWS KMS, GCP KMS, Azure Key Vault, Vault).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=docker
RUN CGO_ENABLED=0 go build -tags kms -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ledger ./cmd/ledger \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ledger /ledger
COPY --from=build --chown=65532:65532 --chmod=0700 /out/data /data
USER 65532:65532
ENV LEDGER_ADDR=:8080 LEDGER_DATA_DIR=/data LEDGER_LOG_FORMAT=json
EXPOSE 8080
VOLUME ["/data"]
ENTRYPOINT ["/ledger"]
CMD ["serve"]
