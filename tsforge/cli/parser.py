"""One command line, one verb per step:

tsforge train    --model digits      # fit, checkpoint, metrics.json, curves.png
tsforge export   --model digits      # TorchScript and ONNX, each with parity and quality gates
tsforge archive  --model digits      # model_store/digits.mar (shipped runtime), digits-torchscript.mar
tsforge build    --model all         # the three above, skipped when up to date
                 --runtime onnx      # (export, archive, build) one format only
tsforge serve start|stop|status|key  # TorchServe on config.properties
tsforge predict  --model digits-torchscript examples/mnist-7.png
tsforge verify   [URL]               # each archive's held-out sample replayed live, compared
tsforge demo                         # all of it, then one request per model
tsforge docker build|wait|models     # images without a registry; compose health; archives baked in
tsforge monitor [--plot drift.png]   # drift, confidence, errors, traffic per model, from Prometheus
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence

from tsforge.paths import MODEL_STORE
from tsforge.server.client import MAX_WORKERS


class Deferred(Sequence[str]):
    """Choices computed on first use (checking a value, or that verb's --help): listing the
    models imports every model, which only the verbs that take one should pay for."""

    def __init__(self, load: Callable[[], list[str]]) -> None:
        self._load, self._items = load, None

    def _all(self) -> list[str]:
        if self._items is None:
            self._items = list(self._load())
        return self._items

    def __contains__(self, value: object) -> bool:
        return value in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __getitem__(self, index):  # noqa: ANN001 (Sequence's int or slice)
        return self._all()[index]


def _models() -> list[str]:
    from models.registry import SPECS

    return ["all", *SPECS]


def _runtimes() -> list[str]:
    from training.export import FORMATS

    return ["all", *FORMATS]


def _served() -> list[str]:
    from tsforge.packaging.build import SERVED

    return SERVED


MODELS, RUNTIMES, SERVED = Deferred(_models), Deferred(_runtimes), Deferred(_served)
# A metavar keeps argparse from listing the choices while it builds the parser; the help lists
# them, expanded only when that verb's help is printed.
MODEL_HELP = "one of %(choices)s (default: all)"


KEY_OPTIONS = ("--inference-key", "--management-key", "--api-key")


def glue_key_values(argv: list[str]) -> list[str]:
    """`--inference-key -Xa1b2c3` -> `--inference-key=-Xa1b2c3`. TorchServe's keys are URL-safe
    base64, so one in 64 starts with "-", which argparse would take for an option and refuse."""
    glued: list[str] = []
    args = iter(argv)
    for arg in args:
        value = next(args, None) if arg in KEY_OPTIONS else None
        glued.append(arg if value is None else f"{arg}={value}")
    return glued


def parser() -> argparse.ArgumentParser:
    """Each verb's arguments and `verb`: (module in tsforge/cli/, function), imported only when run."""
    p = argparse.ArgumentParser(
        prog="tsforge", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    road_verbs(sub)
    serving_verbs(sub)
    other_verbs(sub)
    return p


def road_verbs(sub) -> None:  # noqa: ANN001 (argparse's private _SubParsersAction)
    runtimes = argparse.ArgumentParser(add_help=False)
    runtimes.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="all",
        metavar="RUNTIME",
        help="export format and serving runtime, one of %(choices)s: the shipped one (models/tuned.json) is "
        "<name>.mar, the others <name>-<runtime>.mar",
    )

    s = sub.add_parser("train", help="train a model and save its best checkpoint")
    s.add_argument("--model", choices=MODELS, default="all", metavar="MODEL", help=MODEL_HELP)
    s.add_argument("--epochs", type=int, help="override the maximum number of epochs")
    s.set_defaults(verb=("road", "cmd_train"))

    s = sub.add_parser("export", parents=[runtimes], help="TorchScript and ONNX export with parity and quality gates")
    s.add_argument("--model", choices=MODELS, default="all", metavar="MODEL", help=MODEL_HELP)
    s.set_defaults(verb=("road", "cmd_export"))

    for name, verb, helptext in (
        ("archive", ("road", "cmd_archive"), "write model_store/<name>.mar from a gated export"),
        ("build", ("road", "cmd_build"), "train, export, gate and archive (skipped when up to date)"),
    ):
        s = sub.add_parser(name, parents=[runtimes], help=helptext)
        s.add_argument("--model", choices=MODELS, default="all", metavar="MODEL", help=MODEL_HELP)
        s.add_argument("--version", default="1.0", help="archive version (default 1.0)")
        if name == "build":
            s.add_argument("--force", action="store_true", help="rebuild even if up to date")
            s.add_argument("--seed", type=int, help="training seed (default: the spec's, 42)")
            s.add_argument("--archive-name", help="archive file name, e.g. digits-v2 for a second version")
            s.add_argument(
                "--weights",
                help="package a model trained elsewhere: a state_dict checkpoint or .safetensors file (no training)",
            )
        s.set_defaults(verb=verb)

    s = sub.add_parser("demo", help="build everything, serve it and send one request per model")
    s.add_argument("--version", default="1.0")
    s.set_defaults(verb=("road", "cmd_demo"))


def serving_verbs(sub) -> None:  # noqa: ANN001
    s = sub.add_parser("serve", help="start, stop or inspect TorchServe")
    s.add_argument(
        "action",
        choices=["start", "stop", "status", "key", "run", "health"],
        help="run: start and hold in the foreground (containers); health: exit 0 when /ping answers",
    )
    s.add_argument(
        "--kind", default="inference", choices=["inference", "management", "API"], help="which key `key` prints"
    )
    s.set_defaults(verb=("serving", "cmd_serve"))

    keys = argparse.ArgumentParser(add_help=False)
    keys.add_argument("--inference-key", help="default: read from TorchServe's key_file.json")
    keys.add_argument("--management-key", help="default: read from TorchServe's key_file.json")
    keys.add_argument("--api-key", help="renews expired keys (default: from key_file.json)")

    s = sub.add_parser("predict", help="send one file to a served model", parents=[keys])
    s.add_argument("--model", choices=SERVED, required=True, metavar="ARCHIVE", help="one of %(choices)s")
    s.add_argument("--version", help="a specific model version")
    s.add_argument("input", help="a request body: a PNG/JPEG image or a JSON file (see examples/)")
    s.set_defaults(verb=("serving", "cmd_predict"))

    s = sub.add_parser("models", help="the model lifecycle over the management API")
    acts = s.add_subparsers(dest="action", required=True)
    a = acts.add_parser("register", parents=[keys], help="register an archive from the model store")
    a.add_argument("archive", help="file name in model_store/, e.g. digits.mar")
    a.add_argument("--batch-size", type=int, help="default: the archive's model-config.yaml")
    a.add_argument("--max-batch-delay", type=int, help="milliseconds; default: model-config.yaml")
    a.add_argument("--workers", type=int, default=1, help=f"initial workers, 1..{MAX_WORKERS} (default 1)")
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
            a.add_argument("--workers", type=int, required=True, help=f"1..{MAX_WORKERS}")
            a.add_argument("--max-workers", type=int)
    s.set_defaults(verb=("serving", "cmd_models"))

    s = sub.add_parser(
        "verify", help="replay each archive's held-out sample through a running endpoint; exit 1 on a disagreement"
    )
    s.add_argument("url", nargs="?", help="the inference endpoint, e.g. the compose gateway (default: `make serve`'s)")
    s.add_argument(
        "--store", default=str(MODEL_STORE), help="the archives whose samples to replay (default: model_store/)"
    )
    s.add_argument("--model", action="append", help="only this served model, e.g. digits-torchscript (repeatable)")
    s.add_argument("--inference-key", help="default: the local TorchServe's key_file.json")
    s.set_defaults(verb=("serving", "cmd_verify"))


def other_verbs(sub) -> None:  # noqa: ANN001
    s = sub.add_parser("bench", help="in-process limit vs served vs TorchServe defaults (writes bench/results/)")
    s.add_argument("--quick", action="store_true", help="about 1 s per point and no tuning sweep (smoke test)")
    s.add_argument(
        "--publish", metavar="RUN_DIR", help="copy a full run's results.json to bench/published/ and regenerate "
        "the README's figures from it (instead of running)",
    )  # fmt: skip
    s.add_argument("--monitoring", action="store_true", help="only the monitoring cost (its own results.json)")
    s.add_argument("--provenance", action="store_true", help="only signing and verifying (its own results.json)")
    s.add_argument("--deployments", action="store_true", help="only the compose and Swarm gateways against the "
                   "host (builds the images, starts compose and a swarm)")  # fmt: skip
    s.add_argument("--limits", action="store_true", help="only each archive's budget costs and, per input kind, "
                   "small requests' latency beside the largest accepted ones")  # fmt: skip
    s.add_argument("--tune", dest="tuning", action="store_true", help="each model's and LitServe's settings by "
                   "sweep; writes models/tuned.json, which the next build ships")  # fmt: skip
    s.add_argument("--speech", action="store_true", help="only the speech model's gates, points and worst cases")
    s.add_argument(
        "--recommendation", action="store_true", help="only the recommender's gates, HR/NDCG, points and worst cases"
    )
    s.set_defaults(verb=("benchmark", "cmd_bench"))

    s = sub.add_parser("monitor", help="drift, confidence, errors and traffic per model, from Prometheus")
    s.add_argument("action", nargs="?", choices=["status", "rules", "demo"], default="status",
                   help="status (default): print, and with --plot draw; rules: write the Prometheus rules; "
                        "demo: see drift alerts fire on a local TorchServe and Prometheus (about 2 minutes)")  # fmt: skip
    s.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus's URL (compose publishes 9090)")
    s.add_argument("--plot", metavar="PNG", help="status: draw reference against live shares per signal")
    s.add_argument("--model", help="status --plot: one model only")
    s.add_argument("--out", default="docker/prometheus/rules.yml", help="rules: the file to write")
    s.add_argument("--out-dir", default=".serve/monitor-demo", help="demo: where demo.json and drift.png go")
    s.add_argument("--publish", action="store_true", help="demo: also to bench/published/drift/ and the README")
    # Defaults live in tsforge.monitoring.rules.Thresholds (importing it here would slow every verb).
    s.add_argument("--window", help="rules: the span of drift scores and rates, e.g. 15m (default 15m)")
    s.add_argument("--hold", help="rules: how long a condition lasts before its alert fires (default 5m)")
    s.add_argument("--psi", type=float, help="rules: the drift alerts' PSI threshold (default 0.25)")
    s.add_argument("--min-rows", type=int, help="rules: rows in the window before a drift score counts (default 100)")
    s.set_defaults(verb=("monitor", "cmd_monitor"))

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
    s.set_defaults(verb=("docker", "cmd_docker"))
