"""`tsforge monitor`: drift, confidence, errors and traffic from Prometheus; `monitor rules` renders the rules."""

from __future__ import annotations

import argparse
from pathlib import Path

from tsforge.monitoring import rules, watch


def cmd_monitor(args: argparse.Namespace) -> None:
    if args.action == "rules":
        given = {k: getattr(args, k) for k in ("window", "hold", "psi", "min_rows") if getattr(args, k) is not None}
        thresholds = rules.Thresholds(**given)
        print(f"rules written to {rules.write(Path(args.out), thresholds)}")
        return
    if args.action == "demo":
        from tsforge.monitoring import demo

        out = Path(args.out_dir)
        result = demo.run(out)
        print(demo.readme_block(result))
        print(f"written: {out / 'demo.json'}, {out / 'drift.png'}")
        if args.publish:
            print(f"published to {demo.publish(out)}; the README's drift block rewritten")
        return
    print(watch.report(watch.statuses(args.prometheus)))
    if args.plot:
        print(f"reference against live shares: {watch.plot(args.prometheus, Path(args.plot), args.model)}")
