# blacktree-worker on an empty base: a static binary, the CA bundle and an
# unprivileged user. scripts/build-images prepares the context (bin/ and
# rootfs/) from the host, so the build pulls nothing.
#
# The worker talks to a Docker engine (DOCKER_HOST, default
# unix:///var/run/docker.sock). The socket on the host is root:docker 0660,
# and the docker group's id differs between hosts, so the image does not
# guess it: give the container that group at run time (docker run
# --group-add "$(stat -c %g /var/run/docker.sock)", or a pod's
# securityContext.supplementalGroups). Access to the engine's socket is
# root on that host: see deploy/README.md.
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 state/ /var/lib/blacktree-worker/
COPY bin/blacktree-worker /usr/local/bin/blacktree-worker
USER 10001:10001
# The stable worker id and unacknowledged results live here: mount a
# volume to keep them across container replacements.
ENV BLACKTREE_STATE_DIR=/var/lib/blacktree-worker
ENTRYPOINT ["/usr/local/bin/blacktree-worker"]
