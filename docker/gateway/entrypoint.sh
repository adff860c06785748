#!/bin/sh
# Reads the gateway key from a Docker secret (swarm mode) into GATEWAY_KEY, which haproxy.cfg
# expands. Fails closed: without a key the gateway starts only when told that TorchServe checks
# its own tokens behind it (GATEWAY_PASS_TOKENS=1, compose), never by default, since Swarm's
# replicas run without tokens and a keyless gateway would serve them to anyone.
set -eu
if [ -z "${GATEWAY_KEY_FILE:-}" ] && [ "${GATEWAY_PASS_TOKENS:-}" != "1" ]; then
    echo "gateway: no key. Set GATEWAY_KEY_FILE to a Docker secret (Swarm), or GATEWAY_PASS_TOKENS=1 where TorchServe checks its own tokens (compose)" >&2
    exit 2
fi
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
