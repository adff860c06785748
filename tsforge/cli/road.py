"""The road's verbs: train, export, archive, build (all three, skipped when up to date) and demo."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import replace
from pathlib import Path

from models.registry import SPECS, get_spec
from tsforge.cli.serving import archives, print_server
from tsforge.packaging import build
from tsforge.paths import ARTIFACTS, EXAMPLES, MODEL_STORE, RUN_DIR, shown
from tsforge.server import client, torchserve, verify


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
            print(f"{spec.name} ({runtime}): wrote {shown(path)}")


def cmd_archive(args: argparse.Namespace) -> None:
    for spec in _specs(args.model):
        for runtime in _runtimes(args.runtime, spec):
            out_dir = build.artifacts_dir(spec)
            gates = build.load_gates(out_dir, runtime)
            path = build.archive_export(spec, out_dir, runtime, gates, MODEL_STORE, args.version)
            print(f"{spec.name} ({runtime}): wrote {shown(path)}")


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
            print(f"{spec.name} ({runtime}): {'built' if fresh else 'up to date'} {shown(path)}")
            if fresh:
                rebuilt.append(path.stem)
                for gate in build.load_gates(ARTIFACTS / (args.archive_name or spec.name), runtime):
                    print(f"  gate {gate.gate} passed: {gate.detail}")
    return rebuilt


def curl_command(server: torchserve.Server, model: str, path: Path) -> str:
    content_type = client.CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    key = "$(.venv/bin/tsforge serve key)"
    return (
        f'curl -s -H "Authorization: Bearer {key}" -H "Content-Type: {content_type}" '
        f"--data-binary @{shlex.quote(str(shown(path)))} {server.inference_url}/predictions/{model}"
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
    if torchserve.is_running() and rebuilt:
        print(f"archives changed ({', '.join(rebuilt)}): restarting TorchServe")
        torchserve.stop()
    if torchserve.is_running():
        server = torchserve.server_for(RUN_DIR)
        torchserve.wait_ready(server, build.SERVED, timeout=60)
        print("TorchServe already running with up-to-date archives: reusing it")
    else:
        server = torchserve.start(archives())
    print_server(server)
    for spec in SPECS.values():
        path = EXAMPLES / spec.example
        for model in (build.served_name(spec, fmt) for fmt in spec.formats):
            answer = client.Client(server).predict_file(model, path)
            if isinstance(answer, dict) and "embedding" in answer:  # 384 floats: show the first few
                vector = answer["embedding"]
                answer = {**answer, "embedding": [*vector[:4], f"... {len(vector)} floats"]}
            print(f"\n{model} <- {shown(path)}\n{client.pretty(answer)}")
            print(f"again: {curl_command(server, model, path)}")
    print("\nEach archive's held-out sample, replayed live (`tsforge verify`):")
    verify.report(server.inference_url, MODEL_STORE, client.Client(server).key("inference"))
    print("\nTorchServe keeps running; `make stop` ends it.")
