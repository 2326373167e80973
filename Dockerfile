# Flowgate image: the gateway and the example transforms on distroless (no shell, CA certificates, glibc).
#   docker build --build-arg FLOWGATE_GIT_REV=$(git rev-parse --short=12 HEAD) -t flowgate .
# CI checks this file without a Docker engine: tools/docker/check.py runs every build command and checks every
# path it copies.
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# .git is not in the build context: the revision comes in as a build argument (see `flowgate --version`).
ARG FLOWGATE_GIT_REV=unknown
ENV FLOWGATE_GIT_REV=${FLOWGATE_GIT_REV}
RUN tools/docker/build.sh /out

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/bin/flowgate /usr/local/bin/flowgate
COPY --from=build /out/transforms/ /usr/share/flowgate/transforms/
# Numeric, so Kubernetes can verify runAsNonRoot (distroless' nonroot user).
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/flowgate"]
CMD ["run"]
