"""`parley serve`: start the HTTP server; `parley train`: fine-tune a fused decoder; `parley eval`: score a server."""

import argparse

import uvicorn

from app import evaluation
from models import train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="parley", description="Parley dialogue service")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the HTTP server (settings from PARLEY_* variables)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    train.add_arguments(commands.add_parser("train", help="fine-tune a FusedSeq2Seq on a JSONL dialogue set"))
    evaluation.add_arguments(commands.add_parser("eval", help="score a running server on a JSONL dialogue set"))
    args = parser.parse_args(argv)
    if args.command == "train":
        train.run(args)
    elif args.command == "eval":
        evaluation.run(args)
    else:
        uvicorn.run("app.main:create_app", factory=True, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
