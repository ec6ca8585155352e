# blacktree-hub on an empty base: a static binary, the CA bundle and an
# unprivileged user. scripts/build-images prepares the context (bin/ and
# rootfs/) from the host, so the build pulls nothing.
FROM scratch
COPY rootfs/ /
COPY bin/blacktree-hub /usr/local/bin/blacktree-hub
USER 10001:10001
# gRPC (workers, admin API) and HTTP (/healthz, /readyz, /metrics): the
# hub's default --grpc-addr and --http-addr.
EXPOSE 7070 7071
ENTRYPOINT ["/usr/local/bin/blacktree-hub"]
