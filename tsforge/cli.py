"""One command line, one verb per step:

tsforge train    --model digits      # fit, checkpoint, metrics.json, curves.png
tsforge export   --model digits      # TorchScript + parity and quality gates
tsforge archive  --model digits      # model_store/digits.mar
tsforge build    --model all         # the three above, skipped when up to date
tsforge serve start|stop|status|key  # TorchServe on config.properties
tsforge predict  --model digits examples/mnist-7.png
tsforge demo                         # all of it, then one request per model
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from training.gates import GateFailed
from training.specs import SPECS, get_spec
from tsforge import archive, build, client, serve
from tsforge.paths import EXAMPLES, MODEL_STORE, ROOT, RUN_DIR

DEMO_INPUTS = {"digits": EXAMPLES / "mnist-7.png", "diabetes": EXAMPLES / "diabetes.json"}


def _specs(name: str):
    return list(SPECS.values()) if name == "all" else [get_spec(name)]


def cmd_train(args: argparse.Namespace) -> None:
    from training.train import train

    for spec in _specs(args.model):
        cfg = spec.train if args.epochs is None else type(spec.train)(**{**vars(spec.train), "epochs": args.epochs})
        result = train(spec, build.artifacts_dir(spec), cfg)
        test = result.test_metrics[spec.gate_metric]
        print(
            f"{spec.name}: best epoch {result.best_epoch}, held-out {spec.gate_metric} {test:.4f} -> {build.artifacts_dir(spec)}"
        )


def cmd_export(args: argparse.Namespace) -> None:
    for spec in _specs(args.model):
        for gate in build.export_and_gate(spec, build.artifacts_dir(spec)):
            print(f"{spec.name}: gate {gate.gate} passed: {gate.detail}")


def cmd_archive(args: argparse.Namespace) -> None:
    for spec in _specs(args.model):
        out_dir = build.artifacts_dir(spec)
        gates = [build.GateResult(**g) for g in json.loads((out_dir / build.GATES).read_text())]
        card = build.model_card(spec, out_dir, args.version, gates)
        path = archive.build_archive(spec, out_dir / f"{spec.name}.pt", card, MODEL_STORE, args.version)
        print(f"{spec.name}: wrote {path}")


def cmd_build(args: argparse.Namespace) -> list[str]:
    rebuilt = []
    for spec in _specs(args.model):
        path, fresh = build.build(spec, version=args.version, force=args.force)
        print(f"{spec.name}: {'built' if fresh else 'up to date'} {path.relative_to(ROOT)}")
        if fresh:
            rebuilt.append(spec.name)
    return rebuilt


def _archives() -> list[str]:
    return sorted(f"{p.stem}={p.name}" for p in MODEL_STORE.glob("*.mar"))


def cmd_serve(args: argparse.Namespace) -> None:
    host = os.environ.get("TSFORGE_BIND_HOST")  # set by the Docker image only
    if args.action in ("start", "run") and not _archives():
        raise SystemExit(f"no archives in {MODEL_STORE}: run `make demo` or `tsforge build` first")
    if args.action == "start":
        _print_server(serve.start(_archives(), host=host))
    elif args.action == "run":
        raise SystemExit(serve.run_foreground(_archives(), host=host, announce=_print_server))
    elif args.action == "health":
        raise SystemExit(0 if serve.healthy() else 1)
    elif args.action == "stop":
        print("TorchServe stopped" if serve.stop() else "TorchServe was not running")
    elif args.action == "status":
        if not serve.is_running():
            raise SystemExit("TorchServe is not running (start it with `make serve`)")
        server = serve.server_for(RUN_DIR)
        serve.wait_ready(server, [], timeout=10)
        _print_server(server)
    elif args.action == "key":
        print(serve.server_for(RUN_DIR).keys()[args.kind])


def _print_server(server: serve.Server) -> None:
    print(
        f"TorchServe ready: inference {server.inference_url}, management {server.management_url}, metrics {server.metrics_url}"
    )
    print(f"  token keys: {server.key_file}  (expire after token_expiration_min; `tsforge serve key` prints one)")
    print(f"  logs:       {server.run_dir / 'logs'}")


def cmd_predict(args: argparse.Namespace) -> None:
    server = serve.server_for(RUN_DIR)
    print(client.pretty(client.predict_file(server, args.model, Path(args.input), args.version)))


def curl_command(server: serve.Server, model: str, path: Path) -> str:
    content_type = "image/png" if path.suffix == ".png" else "application/json"
    key = "$(.venv/bin/tsforge serve key)"
    return (
        f'curl -s -H "Authorization: Bearer {key}" -H "Content-Type: {content_type}" '
        f"--data-binary @{shlex.quote(str(path.relative_to(ROOT)))} {server.inference_url}/predictions/{model}"
    )


def cmd_demo(args: argparse.Namespace) -> None:
    args.model, args.force = "all", False
    rebuilt = cmd_build(args)
    if serve.is_running() and rebuilt:
        print(f"archives changed ({', '.join(rebuilt)}): restarting TorchServe")
        serve.stop()
    if serve.is_running():
        server = serve.server_for(RUN_DIR)
        serve.wait_ready(server, list(SPECS), timeout=60)
        print("TorchServe already running with up-to-date archives: reusing it")
    else:
        server = serve.start(_archives())
    _print_server(server)
    for model, path in DEMO_INPUTS.items():
        answer = client.predict_file(server, model, path)
        print(f"\n{model} <- {path.relative_to(ROOT)}\n{client.pretty(answer)}")
        print(f"again: {curl_command(server, model, path)}")
    print("\nTorchServe keeps running; `make stop` ends it.")


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

    s = sub.add_parser("export", help="TorchScript export with parity and quality gates")
    s.add_argument("--model", choices=models, default="all")
    s.set_defaults(func=cmd_export)

    for verb, func, helptext in (
        ("archive", cmd_archive, "write model_store/<name>.mar from a gated export"),
        ("build", cmd_build, "train, export, gate and archive (skipped when up to date)"),
    ):
        s = sub.add_parser(verb, help=helptext)
        s.add_argument("--model", choices=models, default="all")
        s.add_argument("--version", default="1.0", help="archive version (default 1.0)")
        if verb == "build":
            s.add_argument("--force", action="store_true", help="rebuild even if up to date")
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

    s = sub.add_parser("predict", help="send one file to a served model")
    s.add_argument("--model", choices=list(SPECS), required=True)
    s.add_argument("--version", help="a specific model version")
    s.add_argument("input", help="a PNG/JPEG image (digits) or a JSON file")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("demo", help="build everything, serve it and send one request per model")
    s.add_argument("--version", default="1.0")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except GateFailed as e:
        print(f"build stopped: {e}. No archive was written.", file=sys.stderr)
        return 2
    except (serve.ServeError, client.ServerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"error: {e.strerror}: {e.filename} (run the earlier step first, or `make demo`)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
