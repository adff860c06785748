# The served image with archives baked in, for Swarm (or any orchestrator): a model version is
# an image tag, so a rolling update rolls the models too and every node has the same files.
# The build context is a model store: `tsforge docker models --tag 1.0` builds it from model_store/.
ARG BASE=tsforge:cpu
# hadolint ignore=DL3006
FROM ${BASE}
COPY --chown=1000:1000 *.mar /home/model-server/model_store/
