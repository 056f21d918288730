"""`parley serve`: start the HTTP server; `parley train`: fine-tune a fused decoder; `parley eval`: score a server;
`parley test`: play conversation stories and score them."""

import argparse
import os

# Read once by torch's libgomp when torch loads (below, through models.train): once Whisper's own OpenMP
# runtime has run in the process, the default wait policy lets torch's workers sleep between the hundreds of
# small parallel regions of a decoding step, and every step took ~1.5x longer (35 vs 23 ms at batch 1 here).
# Workers that spin keep steps at full speed (bench/RESULTS.md). An operator's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")

import uvicorn

from app.cli import evaluate, stories
from app.config import Settings
from app.observability.logs import logging_config
from app.store.embedded import EmbeddedRedis
from models import train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="parley", description="Parley dialogue service")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the HTTP server (settings from PARLEY_* variables)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--workers", type=int, default=1, help=(
        "worker processes on one port; each loads its own models (see README for memory per replica) "
        "and they share sessions through Redis, so PARLEY_REDIS_URL must name a Redis server"))
    train.add_arguments(commands.add_parser("train", help="fine-tune a FusedSeq2Seq on a JSONL dialogue set"))
    evaluate.add_arguments(commands.add_parser("eval", help="score a running server on a JSONL dialogue set"))
    stories.add_arguments(commands.add_parser("test", help="play conversation stories (YAML) and score them"))
    args = parser.parse_args(argv)
    if args.command == "test":
        raise SystemExit(stories.run(args))
    if args.command == "train":
        train.run(args)
    elif args.command == "eval":
        evaluate.run(args)
    else:
        if args.workers < 1:
            parser.error("--workers must be >= 1")
        _serve(args)


def _serve(args: argparse.Namespace) -> None:
    embedded = None
    settings = Settings()
    if args.workers > 1 and settings.redis_url is None:
        # One embedded Redis for all workers (each would otherwise start its own and see other sessions
        # vanish); they find it through the environment they inherit.
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        os.environ["PARLEY_REDIS_URL"] = embedded.url
    # One log format for the whole process (PARLEY_LOG_FORMAT, json by default); the app logs one access line
    # per request itself (with its request id, route template and duration), so uvicorn's is off.
    log_config = logging_config(settings.log_format, args.log_level)
    try:
        uvicorn.run("app.main:create_app", factory=True, host=args.host, port=args.port,
                    log_level=args.log_level, workers=args.workers, log_config=log_config, access_log=False,
                    # uvicorn would take X-Forwarded-For from any 127.0.0.1 peer as the client address; Parley
                    # decides that itself from PARLEY_TRUSTED_PROXIES (app/security/client_address.py).
                    proxy_headers=False)
    finally:
        if embedded is not None:
            embedded.close()
