# One image for the operator and the sync workers:
#   docker build -t retl .
#   operator: retl operator        worker (set by the operator on each Job): retl worker --sync NS/NAME
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin retl

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/retl /retl
USER 65532:65532
ENTRYPOINT ["/retl"]
