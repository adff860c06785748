# The served image with archives baked in, for Swarm (or any orchestrator): a model version is
# an image tag, so a rolling update rolls the models too and every node has the same files.
# The build context is a model store: `tsforge docker models --tag 1.0` builds it from model_store/.
ARG BASE=tsforge:cpu
# hadolint ignore=DL3006
FROM ${BASE}
# The archives with their signatures, and the public key they were signed with
# (tsforge.deploy.containers.models_image stages them). Root-owned and read-only to TorchServe
# (uid 1000): it loads only what the entrypoint verified, and cannot add to it.
# Only these: the base image's own archives and the key of its build go.
USER 0
RUN rm -rf /opt/tsforge/model_store /opt/tsforge/trusted/* && mkdir -m 0755 /opt/tsforge/model_store
COPY trusted/ /opt/tsforge/trusted/
COPY store/ /opt/tsforge/model_store/
USER 1000:1000
