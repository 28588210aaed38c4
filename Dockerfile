# The ledger as a container image: a static binary on a distroless base,
# running as a non-root user with its data directory in /data.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/ledger ./cmd/ledger \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ledger /ledger
COPY --from=build --chown=65532:65532 /out/data /data
ENV LEDGER_DATA_DIR=/data LEDGER_ADDR=:8080
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["/ledger"]
CMD ["serve"]
