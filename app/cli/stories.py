"""`parley test STORIES...`: play conversation stories and score them (app/stories/format.py has the format).

By default the app runs in-process with the settings from PARLEY_* variables (the real default models unless
they say otherwise); `--base-url` plays against a running server instead. Prints a table, writes OUT.json and
OUT.md with `--out`, and exits 1 when a story fails (or, with --min-* options, when a score is below its floor).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from app.config import Settings
from app.stories.format import Story, StoryError, load_stories
from app.stories.media import MediaCache
from app.stories.metrics import markdown, report
from app.stories.runner import StoryOutcome, in_process_client, remote_client, run_stories

FLOORS = (("min_task_success", "task_success"), ("min_intent_accuracy", "intent_accuracy"),
          ("min_joint_goal_accuracy", "joint_goal_accuracy"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stories", nargs="+", type=Path, help="story YAML files or directories of them")
    parser.add_argument("--base-url", help="a running Parley server; default: the app in-process")
    parser.add_argument("--api-key", help="when the server has PARLEY_API_KEYS")
    parser.add_argument("--out", type=Path, help="report path without extension: writes OUT.json and OUT.md")
    parser.add_argument("--concurrency", type=int, default=4, help="stories played at once (default 4)")
    parser.add_argument("--note", default="", help="a paragraph to put at the top of the report")
    parser.add_argument("--only", help="play only stories whose name contains this text")
    for option, metric in FLOORS:
        parser.add_argument("--" + option.replace("_", "-"), type=float, metavar="RATIO", help=(
            f"pass when overall {metric.replace('_', ' ')} is at least RATIO (0..1) instead of requiring "
            "every story to pass; several floors must all hold"))


def run(args: argparse.Namespace) -> int:
    """The exit status: 0 when the run passes, 1 when it does not, 2 on a bad story file."""
    try:
        stories = load_stories(args.stories)
    except StoryError as error:
        print(f"parley test: {error}", file=sys.stderr)
        return 2
    if args.only:
        stories = [s for s in stories if args.only.lower() in s.name.lower()]
        if not stories:
            print(f"parley test: no story name contains {args.only!r}", file=sys.stderr)
            return 2
    target = args.base_url or "in-process app"
    outcomes = asyncio.run(_play(args, stories))
    result = report(outcomes, target=target, files=sorted({s.source for s in stories}), note=args.note)
    text = markdown(result)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
        args.out.with_suffix(".md").write_text(text)
        print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")
    return 0 if passes(result, args) else 1


def passes(result: dict, args: argparse.Namespace) -> bool:
    floors = [(getattr(args, option), metric) for option, metric in FLOORS if getattr(args, option) is not None]
    if not floors:
        return not result["failed"]
    return all((result["overall"][metric] or 0.0) >= floor for floor, metric in floors)


async def _play(args: argparse.Namespace, stories: list[Story]) -> list[StoryOutcome]:
    media = MediaCache()

    def progress(outcome: StoryOutcome) -> None:
        print(f"{'pass' if outcome.success else 'FAIL'}  {outcome.name}", file=sys.stderr, flush=True)

    if args.base_url:
        async with remote_client(args.base_url, args.api_key, media) as client:
            return await run_stories(client, stories, concurrency=args.concurrency, progress=progress)
    async with in_process_client(in_process_settings(), media) as client:
        return await run_stories(client, stories, concurrency=args.concurrency, progress=progress)


def in_process_settings() -> Settings:
    """Settings from the environment, without the rate limits (a story run is one busy client) and without
    spoken replies (stories never ask for them)."""
    return Settings().model_copy(update={"rate_limit_per_min": 0, "turn_rate_limit_per_min": 0, "tts": "off",
                                         "log_level": "WARNING"})
