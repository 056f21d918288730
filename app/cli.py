"""`parley serve`: start the HTTP server."""

import argparse

import uvicorn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="parley", description="Parley dialogue service")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the HTTP server (settings from PARLEY_* variables)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    uvicorn.run("app.main:create_app", factory=True, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
