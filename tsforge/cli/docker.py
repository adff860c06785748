"""`tsforge docker`: the images, the compose health wait, and an image with archives baked in."""

from __future__ import annotations

import argparse
from pathlib import Path

from tsforge.deploy import containers
from tsforge.paths import ROOT


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
