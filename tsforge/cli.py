"""One command line, one verb per step:

tsforge train    --model digits      # fit, checkpoint, metrics.json, curves.png
tsforge export   --model digits      # TorchScript and ONNX, each with parity and quality gates
tsforge archive  --model digits      # model_store/digits.mar and digits-onnx.mar
tsforge build    --model all         # the three above, skipped when up to date
                 --runtime onnx      # (export, archive, build) one format only
tsforge serve start|stop|status|key  # TorchServe on config.properties
tsforge predict  --model digits-onnx examples/mnist-7.png
tsforge demo                         # all of it, then one request per model
tsforge docker build|wait|models     # images without a registry; compose health; archives baked in
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from training.export import FORMATS, ExportFailed
from training.gates import GateFailed
from training.registry import SPECS, get_spec
from training.weights import WeightsError
from tsforge import build, client, containers, foreground, serve
from tsforge.paths import ARTIFACTS, EXAMPLES, MODEL_STORE, ROOT, RUN_DIR


def _specs(name: str):
    return list(SPECS.values()) if name == "all" else [get_spec(name)]


def _runtimes(name: str, spec) -> list[str]:
    """The formats to build for `spec`: all it declares, or the one asked for if it declares it."""
    return [r for r in spec.formats if name in ("all", r)]


def cmd_train(args: argparse.Namespace) -> None:
    from training.train import train

    for spec in _specs(args.model):
        if spec.train is None:
            print(f"{spec.name}: no training declared (its weights come from elsewhere): skipped")
            continue
        cfg = spec.train if args.epochs is None else replace(spec.train, epochs=args.epochs)
        result = train(spec, build.artifacts_dir(spec), cfg)
        test = result.test_metrics[spec.gate_metric]
        print(
            f"{spec.name}: best epoch {result.best_epoch}, held-out {spec.gate_metric} {test:.4f} -> {build.artifacts_dir(spec)}"
        )


def cmd_export(args: argparse.Namespace) -> None:
    for spec in _specs(args.model):
        for runtime in _runtimes(args.runtime, spec):
            path, gates = build.export_and_gate(spec, build.artifacts_dir(spec), runtime)
            for gate in gates:
                print(f"{spec.name} ({runtime}): gate {gate.gate} passed: {gate.detail}")
            print(f"{spec.name} ({runtime}): wrote {path.relative_to(ROOT)}")


def cmd_archive(args: argparse.Namespace) -> None:
    for spec in _specs(args.model):
        for runtime in _runtimes(args.runtime, spec):
            out_dir = build.artifacts_dir(spec)
            gates = build.load_gates(out_dir, runtime)
            path = build.archive_export(spec, out_dir, runtime, gates, MODEL_STORE, args.version)
            print(f"{spec.name} ({runtime}): wrote {path.relative_to(ROOT)}")


def cmd_build(args: argparse.Namespace) -> list[str]:
    rebuilt = []
    weights = Path(args.weights) if getattr(args, "weights", None) else None
    if weights and args.model == "all":
        raise SystemExit("--weights packages one model: name it with --model")
    for spec in _specs(args.model):
        config = replace(spec.train, seed=args.seed) if args.seed is not None and spec.train else None
        for runtime in _runtimes(args.runtime, spec):
            path, fresh = build.build(
                spec,
                config=config,
                version=args.version,
                force=args.force,
                archive_name=args.archive_name,
                runtime=runtime,
                weights=weights,
            )
            print(f"{spec.name} ({runtime}): {'built' if fresh else 'up to date'} {path.relative_to(ROOT)}")
            if fresh:
                rebuilt.append(path.stem)
                for gate in build.load_gates(ARTIFACTS / (args.archive_name or spec.name), runtime):
                    print(f"  gate {gate.gate} passed: {gate.detail}")
    return rebuilt


def _archives() -> list[str]:
    """Every archive in the store, by file name: TorchServe names each model from its
    manifest, so digits.mar (1.0) and digits-v2.mar (2.0) serve as two versions of digits."""
    return sorted(p.name for p in MODEL_STORE.glob("*.mar"))


def cmd_serve(args: argparse.Namespace) -> None:
    host = os.environ.get("TSFORGE_BIND_HOST")  # set by the Docker image only
    # Set by compose only, which publishes management on the host's loopback; Swarm never does.
    management_host = os.environ.get("TSFORGE_MANAGEMENT_HOST")
    if args.action in ("start", "run") and not _archives():
        raise SystemExit(f"no archives in {MODEL_STORE}: run `make demo` or `tsforge build` first")
    if args.action == "start":
        _print_server(serve.start(_archives(), host=host, management_host=management_host))
    elif args.action == "run":
        raise SystemExit(foreground.run(_archives(), host, _print_server, management_host))
    elif args.action == "health":
        raise SystemExit(0 if foreground.ready(serve.server_for(RUN_DIR)) else 1)
    elif args.action == "stop":
        print("TorchServe stopped" if serve.stop() else "TorchServe was not running")
    elif args.action == "status":
        if not serve.is_running():
            raise SystemExit("TorchServe is not running (start it with `make serve`)")
        server = serve.server_for(RUN_DIR)
        serve.wait_ready(server, [], timeout=10)
        _print_server(server)
    elif args.action == "key":
        server = serve.server_for(RUN_DIR)
        if not serve.is_running() or not server.key_file.exists():
            raise SystemExit(f"TorchServe is not running from {RUN_DIR} (start it with `make serve`): no key to print")
        print(server.keys()[args.kind])


def _print_server(server: serve.Server) -> None:
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
    return client.Client(serve.server_for(RUN_DIR), keys)


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


def curl_command(server: serve.Server, model: str, path: Path) -> str:
    content_type = client.CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    key = "$(.venv/bin/tsforge serve key)"
    return (
        f'curl -s -H "Authorization: Bearer {key}" -H "Content-Type: {content_type}" '
        f"--data-binary @{shlex.quote(str(path.relative_to(ROOT)))} {server.inference_url}/predictions/{model}"
    )


def cmd_demo(args: argparse.Namespace) -> None:
    args.model, args.runtime, args.force, args.seed, args.archive_name, args.weights = (
        "all",
        "all",
        False,
        None,
        None,
        None,
    )
    rebuilt = cmd_build(args)
    if serve.is_running() and rebuilt:
        print(f"archives changed ({', '.join(rebuilt)}): restarting TorchServe")
        serve.stop()
    if serve.is_running():
        server = serve.server_for(RUN_DIR)
        serve.wait_ready(server, build.SERVED, timeout=60)
        print("TorchServe already running with up-to-date archives: reusing it")
    else:
        server = serve.start(_archives())
    _print_server(server)
    for name, spec in SPECS.items():
        path = EXAMPLES / spec.example
        for model in (FORMATS[fmt].served_name(name) for fmt in spec.formats):
            answer = client.Client(server).predict_file(model, path)
            if isinstance(answer, dict) and "embedding" in answer:  # 384 floats: show the first few
                vector = answer["embedding"]
                answer = {**answer, "embedding": [*vector[:4], f"... {len(vector)} floats"]}
            print(f"\n{model} <- {path.relative_to(ROOT)}\n{client.pretty(answer)}")
            print(f"again: {curl_command(server, model, path)}")
    print("\nTorchServe keeps running; `make stop` ends it.")


def cmd_bench(args: argparse.Namespace) -> None:
    # The benchmark is not installed (nor in the image): it runs from the checkout.
    sys.path.insert(0, str(ROOT))
    if args.publish:
        from bench import publish

        print(f"published {publish.publish(Path(args.publish))}; README's generated blocks rewritten")
        return
    from bench import run

    run.run(quick=args.quick)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tsforge", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    models = ["all", *SPECS]

    s = sub.add_parser("train", help="train a model and save its best checkpoint")
    s.add_argument("--model", choices=models, default="all")
    s.add_argument("--epochs", type=int, help="override the maximum number of epochs")
    s.set_defaults(func=cmd_train)

    runtimes = argparse.ArgumentParser(add_help=False)
    runtimes.add_argument(
        "--runtime",
        choices=["all", *FORMATS],
        default="all",
        help="export format and serving runtime: TorchScript (<name>.mar) or ONNX Runtime (<name>-onnx.mar)",
    )

    s = sub.add_parser("export", parents=[runtimes], help="TorchScript and ONNX export with parity and quality gates")
    s.add_argument("--model", choices=models, default="all")
    s.set_defaults(func=cmd_export)

    for verb, func, helptext in (
        ("archive", cmd_archive, "write model_store/<name>.mar from a gated export"),
        ("build", cmd_build, "train, export, gate and archive (skipped when up to date)"),
    ):
        s = sub.add_parser(verb, parents=[runtimes], help=helptext)
        s.add_argument("--model", choices=models, default="all")
        s.add_argument("--version", default="1.0", help="archive version (default 1.0)")
        if verb == "build":
            s.add_argument("--force", action="store_true", help="rebuild even if up to date")
            s.add_argument("--seed", type=int, help="training seed (default: the spec's, 42)")
            s.add_argument("--archive-name", help="archive file name, e.g. digits-v2 for a second version")
            s.add_argument(
                "--weights",
                help="package a model trained elsewhere: a state_dict checkpoint or .safetensors file (no training)",
            )
        s.set_defaults(func=func)

    s = sub.add_parser("serve", help="start, stop or inspect TorchServe")
    s.add_argument(
        "action",
        choices=["start", "stop", "status", "key", "run", "health"],
        help="run: start and hold in the foreground (containers); health: exit 0 when /ping answers",
    )
    s.add_argument(
        "--kind", default="inference", choices=["inference", "management", "API"], help="which key `key` prints"
    )
    s.set_defaults(func=cmd_serve)

    keys = argparse.ArgumentParser(add_help=False)
    keys.add_argument("--inference-key", help="default: read from TorchServe's key_file.json")
    keys.add_argument("--management-key", help="default: read from TorchServe's key_file.json")
    keys.add_argument("--api-key", help="renews expired keys (default: from key_file.json)")

    s = sub.add_parser("predict", help="send one file to a served model", parents=[keys])
    s.add_argument("--model", choices=build.SERVED, required=True)
    s.add_argument("--version", help="a specific model version")
    s.add_argument("input", help="a request body: a PNG/JPEG image or a JSON file (see examples/)")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("models", help="the model lifecycle over the management API")
    acts = s.add_subparsers(dest="action", required=True)
    a = acts.add_parser("register", parents=[keys], help="register an archive from the model store")
    a.add_argument("archive", help="file name in model_store/, e.g. digits.mar")
    a.add_argument("--batch-size", type=int, help="default: the archive's model-config.yaml")
    a.add_argument("--max-batch-delay", type=int, help="milliseconds; default: model-config.yaml")
    a.add_argument("--workers", type=int, default=1, help=f"initial workers, 1..{client.MAX_WORKERS} (default 1)")
    a.add_argument("--no-wait", action="store_true", help="return before the workers are up")
    acts.add_parser("list", parents=[keys], help="registered models")
    for verb, helptext in (
        ("describe", "status, workers and, with --card, the model card"),
        ("scale", "set the number of workers"),
        ("default", "make VERSION the default version"),
        ("unregister", "remove a model (or one VERSION of it)"),
    ):
        a = acts.add_parser(verb, parents=[keys], help=helptext)
        a.add_argument("name")
        a.add_argument("version", nargs="?" if verb != "default" else None)
        if verb == "describe":
            a.add_argument("--card", action="store_true", help="include the handler's model card")
        if verb == "scale":
            a.add_argument("--workers", type=int, required=True, help=f"1..{client.MAX_WORKERS}")
            a.add_argument("--max-workers", type=int)
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("bench", help="in-process limit vs served vs TorchServe defaults (writes bench/results/)")
    s.add_argument("--quick", action="store_true", help="about 1 s per point and no tuning sweep (smoke test)")
    s.add_argument(
        "--publish", metavar="RUN_DIR", help="copy a full run's results.json to bench/published/ and regenerate "
        "the README's figures from it (instead of running)",
    )  # fmt: skip
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("docker", help="build the images (local bases where no registry answers); wait for health")
    s.add_argument(
        "action", choices=["build", "wait", "models"], help="models: an image with the archives baked in (Swarm)"
    )
    s.add_argument(
        "--bases",
        choices=["local", "upstream"],
        default="local",
        help="local: Debian bases made here with debootstrap and a host wheelhouse (works offline); "
        "upstream: python:3.11-slim-bookworm, debian:bookworm-slim, prom/prometheus from Docker Hub",
    )
    s.add_argument("--service", default="torchserve", help="wait: the compose service")
    s.add_argument("--timeout", type=float, default=300.0, help="wait: seconds")
    s.add_argument("--tag", default="latest", help="models: the image tag (a model version)")
    s.add_argument("--store", default=str(MODEL_STORE), help="models: the archives to bake in")
    s.set_defaults(func=cmd_docker)

    s = sub.add_parser("demo", help="build everything, serve it and send one request per model")
    s.add_argument("--version", default="1.0")
    s.set_defaults(func=cmd_demo)
    return p


def cmd_docker(args: argparse.Namespace) -> None:
    if args.action == "build":
        images, seconds = containers.build_all(args.bases)
        for tag in images.env().values():
            took = f", built in {seconds[tag]:.0f} s" if tag in seconds else ""
            print(f"{tag}: {containers.image_size_mb(tag):,.0f} MiB{took}")
        print(f"compose variables written to {containers.ENV_FILE.relative_to(ROOT)}")
    elif args.action == "wait":
        containers.wait_healthy(args.service, args.timeout)
    elif args.action == "models":
        image = containers.models_image(args.tag, Path(args.store))
        print(f"{image}: the archives of {args.store} in {containers.image_size_mb(image):,.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except GateFailed as e:
        print(f"build stopped: {e}. No archive was written.", file=sys.stderr)
        return 2
    except (ExportFailed, WeightsError) as e:
        print(f"build stopped: {e}", file=sys.stderr)
        return 2
    except (serve.ServeError, client.ServerError, containers.DockerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # an argument the client refuses (worker counts, ...)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e.strerror}: {e.filename} (run the earlier step first, or `make demo`)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
