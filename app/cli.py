"""`parley serve`: start the HTTP server."""

import argparse

import uvicorn

from app.config import Settings
from app.logs import logging_config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="parley", description="Parley dialogue service")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the HTTP server (settings from PARLEY_* variables)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    # One log format for the whole process (PARLEY_LOG_FORMAT, json by default); the app logs one access line
    # per request itself (with its request id, route template and duration), so uvicorn's is off.
    log_config = logging_config(Settings().log_format, args.log_level)
    uvicorn.run("app.main:create_app", factory=True, host=args.host, port=args.port, log_level=args.log_level,
                log_config=log_config, access_log=False)


if __name__ == "__main__":
    main()
