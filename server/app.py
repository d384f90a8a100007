"""`bashlsp serve`: start the language server (what editors run).

    bashlsp serve --stdio                      # editors: JSON-RPC on stdin/stdout
    bashlsp serve --tcp --port 2087 [--host]   # one client over TCP
Options that name the model (--checkpoint, --store, --device) are the defaults; the editor's
settings (initializationOptions, didChangeConfiguration) override them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..model.device import DEVICE_CHOICES


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run the bashlsp language server.")
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="talk JSON-RPC on stdin/stdout (the default)")
    transport.add_argument("--tcp", action="store_true", help="listen on a TCP port for one client")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on with --tcp (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=2087, help="port to listen on with --tcp (default 2087)")
    parser.add_argument(
        "--checkpoint",
        help="serve this checkpoint (directory, store id or 'default'); "
        "default: follow the store's current checkpoint, else the bundled model",
    )
    parser.add_argument("--store", help="checkpoint store directory (default: $BASHLSP_STORE or the platform data dir)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, help="where the model runs (default auto)")
    parser.add_argument(
        "--request-timeout",
        type=float,
        metavar="SECONDS",
        help="answer any request still running after SECONDS with an error (default: a bound per feature)",
    )
    parser.add_argument("--log-file", help="write the server's log here (default: stderr)")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return parser


def settings_from_args(args: argparse.Namespace) -> dict:
    """The command line as an editor settings object (see settings.py)."""
    settings: dict = {}
    if args.checkpoint:
        settings["checkpoint"] = args.checkpoint
    if args.store:
        settings["store"] = args.store
    if args.device:
        settings["device"] = args.device
    return settings


def setup_logging(log_file: str | None, level: str) -> None:
    handler = logging.FileHandler(log_file, encoding="utf-8") if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    # pygls logs every message it sends at INFO (formatting whole documents): keep it quiet.
    logging.getLogger("pygls").setLevel(max(logging.WARNING, root.level))


def create_server(settings: dict, request_timeout: float | None = None):
    from . import handlers
    from .cli import package_version
    from .language_server import BashLanguageServer

    server = BashLanguageServer(settings, version=package_version(), request_timeout=request_timeout)
    handlers.register(server)
    return server


def main(argv: list[str] | None = None, prog: str = "bashlsp serve") -> int:
    args = build_parser(prog).parse_args(argv)
    setup_logging(args.log_file, args.log_level)
    if args.request_timeout is not None and not args.request_timeout > 0:
        print("bashlsp serve: error: --request-timeout must be a positive number of seconds", file=sys.stderr)
        return 2
    server = create_server(settings_from_args(args), args.request_timeout)
    if args.tcp:
        server.start_tcp(args.host, args.port)
    else:
        server.start_io()
    # The session is over: leave now. Interpreter shutdown would join the worker threads, and
    # one may be in the middle of loading a checkpoint (seconds) that nobody will use.
    logging.shutdown()
    sys.stderr.flush()
    os._exit(server.exit_code)


if __name__ == "__main__":
    sys.exit(main())
