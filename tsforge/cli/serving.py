"""The serving verbs: serve (start, stop, status, key, run, health), predict, models and verify."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tsforge.paths import MODEL_STORE, RUN_DIR
from tsforge.server import client, torchserve


def archives() -> list[str]:
    """Every archive in the store, by file name: TorchServe names each model from its
    manifest, so digits.mar (1.0) and digits-v2.mar (2.0) serve as two versions of digits."""
    return sorted(p.name for p in MODEL_STORE.glob("*.mar"))


def cmd_serve(args: argparse.Namespace) -> None:
    host = os.environ.get("TSFORGE_BIND_HOST")  # set by the Docker image only
    # Set by compose only, which publishes management on the host's loopback; Swarm never does.
    management_host = os.environ.get("TSFORGE_MANAGEMENT_HOST")
    if args.action in ("start", "run") and not archives():
        raise SystemExit(f"no archives in {MODEL_STORE}: run `make demo` or `tsforge build` first")
    if args.action == "start":
        print_server(torchserve.start(archives(), host=host, management_host=management_host))
    elif args.action == "run":
        from tsforge.server import foreground

        raise SystemExit(foreground.run(archives(), host, print_server, management_host))
    elif args.action == "health":
        from tsforge.server import foreground

        raise SystemExit(0 if foreground.ready(torchserve.server_for(RUN_DIR)) else 1)
    elif args.action == "stop":
        print("TorchServe stopped" if torchserve.stop() else "TorchServe was not running")
    elif args.action == "status":
        if not torchserve.is_running():
            raise SystemExit("TorchServe is not running (start it with `make serve`)")
        server = torchserve.server_for(RUN_DIR)
        torchserve.wait_ready(server, [], timeout=10)
        print_server(server)
    elif args.action == "key":
        server = torchserve.server_for(RUN_DIR)
        if not torchserve.is_running() or not server.key_file.exists():
            raise SystemExit(f"TorchServe is not running from {RUN_DIR} (start it with `make serve`): no key to print")
        print(server.keys()[args.kind])


def print_server(server: torchserve.Server) -> None:
    print(
        f"TorchServe ready: inference {server.inference_url}, management {server.management_url}, metrics {server.metrics_url}"
    )
    print(f"  token keys: {server.key_file}  (expire after token_expiration_min; `tsforge serve key` prints one)")
    print(f"  logs:       {server.run_dir / 'logs'}")


def _client(args: argparse.Namespace) -> client.Client:
    keys = {
        k: v
        for k, v in (("inference", args.inference_key), ("management", args.management_key), ("API", args.api_key))
        if v
    }
    return client.Client(torchserve.server_for(RUN_DIR), keys)


def cmd_predict(args: argparse.Namespace) -> None:
    print(client.pretty(_client(args).predict_file(args.model, Path(args.input), args.version)))


def cmd_models(args: argparse.Namespace) -> None:
    c = _client(args)
    if args.action == "register":
        answer = c.register(args.archive, args.batch_size, args.max_batch_delay, args.workers, not args.no_wait)
    elif args.action == "list":
        answer = c.list()
    elif args.action == "describe":
        answer = c.describe(args.name, args.version, customized=args.card)
    elif args.action == "scale":
        answer = c.scale(args.name, args.workers, args.max_workers, args.version)
    elif args.action == "default":
        answer = c.set_default(args.name, args.version)
    else:
        answer = c.unregister(args.name, args.version)
    print(client.pretty(answer))


def cmd_verify(args: argparse.Namespace) -> None:
    from tsforge.server import verify

    url, key = args.url, args.inference_key
    if url is None:  # the local TorchServe, with its own key
        if not torchserve.is_running():
            raise SystemExit("TorchServe is not running (start it with `make serve`), or pass the endpoint's URL")
        server = torchserve.server_for(RUN_DIR)
        url = server.inference_url
        key = key or (server.keys()["inference"] if server.key_file.exists() else None)
    verify.report(url, Path(args.store), key, args.model)
