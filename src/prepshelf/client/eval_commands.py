"""Parsers of `prepshelf eval run|list|diff` and `prepshelf schedules` (client commands)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prepshelf.client.commands import _common, _run


def cmd_eval(args: argparse.Namespace) -> int:
    from prepshelf.client import evals

    if args.action == "run":
        return _run(
            args,
            evals.run,
            eval_name=args.eval,
            questions=args.questions,
            store=args.store,
            run_name=args.name,
            hybrid=args.hybrid,
            wait=not args.no_wait,
        )
    if args.action == "list":
        return _run(args, evals.list_evals, eval_name=args.eval, limit=args.limit)
    return _run(
        args, evals.diff, eval_name=args.eval, run_id=args.run, base_id=args.base, show_all=args.all
    )


def cmd_schedules(args: argparse.Namespace) -> int:
    from prepshelf.client import schedules

    if args.action == "list":
        return _run(args, schedules.list_schedules, limit=args.limit)
    return _run(args, schedules.act, schedule_id=args.schedule, action=args.action)


def add_eval_commands(sub: Any) -> None:
    ev = sub.add_parser("eval", help="retrieval evaluations: run, list, diff (client)")
    actions = ev.add_subparsers(dest="action", required=True)

    run = actions.add_parser("run", help="run an eval (created from --questions if new)")
    run.add_argument("eval", help="eval name or id")
    run.add_argument("--questions", type=Path, help="JSONL or CSV eval set (creates the eval)")
    run.add_argument("--store", help="vector store name or id (default: the eval's)")
    run.add_argument("--name", help="a name for this run")
    run.add_argument(
        "--hybrid", action="store_true", help="new eval: also measure hybrid search side by side"
    )
    run.add_argument("--no-wait", action="store_true", help="queue the run and return")
    _common(run)

    ls = actions.add_parser("list", help="list evals, or one eval's runs with their figures")
    ls.add_argument("eval", nargs="?", help="eval name or id: list its runs")
    ls.add_argument("--limit", type=int, default=20, help="how many, newest first [20]")
    _common(ls)

    diff = actions.add_parser(
        "diff", help="per-question difference of two runs (exit 1 when any got worse)"
    )
    diff.add_argument("eval", help="eval name or id")
    diff.add_argument("run", nargs="?", help="run id (default: the latest completed)")
    diff.add_argument("--base", help="run to compare with (default: the completed run before)")
    diff.add_argument("--all", action="store_true", help="also list unchanged questions")
    _common(diff)
    ev.set_defaults(func=cmd_eval)

    sc = sub.add_parser("schedules", help="list, pause, resume or run schedules (client)")
    verbs = sc.add_subparsers(dest="action", required=True)
    listing = verbs.add_parser("list", help="every schedule with its next run")
    listing.add_argument("--limit", type=int, default=50)
    _common(listing)
    for verb, text in (
        ("pause", "pause a schedule"),
        ("resume", "resume a schedule"),
        ("run", "start a schedule's run now"),
    ):
        one = verbs.add_parser(verb, help=text)
        one.add_argument("schedule", help="schedule id (sched_...)")
        _common(one)
    sc.set_defaults(func=cmd_schedules)
