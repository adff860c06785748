"""`tsforge bench`: the benchmark, which is not installed (nor in the image): it runs from the
checkout's bench/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tsforge.paths import ROOT


def cmd_bench(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    if args.publish:
        from bench import publish

        print(f"published {publish.publish(Path(args.publish))}; README's generated blocks rewritten")
        return
    from bench import publish, run

    section = next((name for name in publish.PARTS if getattr(args, name)), None)
    if section:
        run.section_only(section)
        return
    run.run(quick=args.quick)
