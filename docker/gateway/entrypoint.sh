#!/bin/sh
# Reads the gateway key from a Docker secret (swarm mode) into GATEWAY_KEY, which haproxy.cfg
# expands; without the secret the gateway passes TorchServe's own Authorization through.
set -eu
if [ -n "${GATEWAY_KEY_FILE:-}" ]; then
    GATEWAY_KEY=$(tr -d '\r\n' < "$GATEWAY_KEY_FILE")
    case "$GATEWAY_KEY" in
        ""|*[!A-Za-z0-9._~-]*)
            echo "gateway: $GATEWAY_KEY_FILE must hold one key of letters, digits and ._~- (e.g. openssl rand -hex 32)" >&2
            exit 2 ;;
    esac
    export GATEWAY_KEY
fi
export TS_HOST="${TS_HOST:-torchserve}"
exec haproxy -W -db -f /etc/haproxy/haproxy.cfg
