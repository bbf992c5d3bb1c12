"""`mnistlab serve`: the draw-a-digit page and the JSON prediction API for a trained run."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return port


def register(subparsers) -> None:
    """Add the `serve` command."""
    serve = subparsers.add_parser(
        "serve", help="serve a run's model: a draw-a-digit page and a JSON API",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve a trained run's model over HTTP: open the address it prints to "
                    "draw a digit and watch the prediction change while you draw, or POST "
                    "images to /api/predict (see docs/api.md). Stop with Ctrl-C.",
        epilog="examples:\n"
               "  mnistlab serve runs/forest100\n"
               "  mnistlab serve runs/forest100 --port 8080 --access-log\n"
               "  curl -s --data-binary @digit.png -H 'Content-Type: image/png' "
               "http://127.0.0.1:8000/api/predict")
    serve.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                       help="a completed run directory (from `mnistlab train`)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1, this machine only; "
                            "0.0.0.0 opens it to the network, without any authentication)")
    serve.add_argument("--port", type=_port, default=8000,
                       help="port to listen on (default 8000; 0 picks a free one)")
    serve.add_argument("--access-log", action="store_true",
                       help="log one line per request to stderr (default: only errors)")
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """`mnistlab serve`: bind the port, load the model, print the address, serve until Ctrl-C."""
    from mnistlab.serve import make_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    # uvicorn's start and stop messages repeat what is printed here; its warnings stay.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    server = make_server(args.run_dir, host=args.host, port=args.port,
                         access_log=args.access_log)
    predictor = server.predictor
    print(f"serving {predictor.run_dir} ({predictor.model_name}) at {server.url}", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {args.host}; anyone who can reach this machine can use it",
              flush=True)
    print(f"API documentation at {server.url}docs; press Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass  # uvicorn stopped gracefully on Ctrl-C, then passed the interrupt on
    finally:
        server.server_close()
    print("stopped", flush=True)
    return 0
