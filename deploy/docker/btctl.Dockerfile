# btctl, the operator CLI, on an empty base: a static binary, the CA bundle
# and an unprivileged user. scripts/build-images prepares the context.
FROM scratch
COPY rootfs/ /
COPY bin/btctl /usr/local/bin/btctl
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/btctl"]
