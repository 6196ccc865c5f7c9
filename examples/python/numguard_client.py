"""What every example shares: the channel, the API key, retries and exit codes.

Settings come from the environment, as the numguard CLI reads them:
  NUMGUARD_SERVER   host:port, or https://host:port for TLS (default 127.0.0.1:50051)
  NUMGUARD_API_KEY  the key, sent as `authorization: Bearer <key>` (not needed with serve --dev)
  NUMGUARD_CA_CERT  PEM file of the CA that signed the server's certificate (TLS only)
"""

import csv
import json
import os
import random
import sys
import time
from pathlib import Path

import grpc

# The generated modules (see generate.sh) live in gen/.
sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))

from numguard.v1 import (  # noqa: E402
    alerts_pb2,
    alerts_pb2_grpc,
    check_pb2,
    check_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
)

__all__ = [
    "alerts_pb2",
    "alerts_pb2_grpc",
    "check_pb2",
    "check_pb2_grpc",
    "events_pb2",
    "events_pb2_grpc",
]

# Unary calls are retried by gRPC itself when the server is briefly unreachable. Streams
# are retried by each program, which knows what is safe to send again.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "numguard.v1.NumberCheck", "method": "CheckNumber"}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

# Codes worth another try after a pause: the server is away, busy or rate-limiting.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}

# Exit codes a script can tell apart.
EXIT_OK = 0
EXIT_REFUSED = 1  # the server answered, but refused some or all of the input
EXIT_USAGE = 2  # bad arguments or input file
EXIT_AUTH = 3  # missing, unknown or under-scoped API key
EXIT_UNAVAILABLE = 4  # the server could not be reached, or gave up


def header_problem(path: str, columns: list[str]) -> int | None:
    """Checks, before anything is sent, that `path` is a readable CSV file whose header
    names `columns`; reports a problem on stderr and returns its exit code."""
    try:
        with open(path, newline="", encoding="utf-8") as file:
            header = csv.DictReader(file).fieldnames or []
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    missing = [column for column in columns if column not in header]
    if missing:
        print(f"error: {path}: the header lacks {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    return None


def connect() -> grpc.Channel:
    server = os.environ.get("NUMGUARD_SERVER", "127.0.0.1:50051")
    options = [
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        # Notice a dead connection on a long-lived stream (WatchAlerts) within a minute.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
    ]
    if server.startswith("https://"):
        ca = os.environ.get("NUMGUARD_CA_CERT")
        root = Path(ca).read_bytes() if ca else None
        creds = grpc.ssl_channel_credentials(root_certificates=root)
        return grpc.secure_channel(server.removeprefix("https://"), creds, options)
    return grpc.insecure_channel(server.removeprefix("http://"), options)


def metadata() -> list[tuple[str, str]]:
    key = os.environ.get("NUMGUARD_API_KEY")
    return [("authorization", f"Bearer {key}")] if key else []


def backoff(attempt: int, cap: float = 10.0) -> float:
    """Seconds to wait before try `attempt` (1, 2, ...): exponential, capped, jittered."""
    return random.uniform(0, min(cap, 0.25 * 2**attempt))


def exit_code(error: grpc.RpcError) -> int:
    code = error.code()
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return EXIT_AUTH
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return EXIT_REFUSED
    if code in RETRYABLE:
        return EXIT_UNAVAILABLE
    return EXIT_REFUSED


def fail(error: grpc.RpcError) -> int:
    """Reports a final error on stderr and returns the exit code for it."""
    print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
    return exit_code(error)


def sleep_before_retry(attempt: int, error: grpc.RpcError) -> None:
    pause = backoff(attempt)
    print(
        f"{error.code().name}: {error.details()}; retrying in {pause:.1f}s",
        file=sys.stderr,
    )
    time.sleep(pause)
