#!/usr/bin/env python3
"""Follow a tenant's alerts, one JSON line each, resuming where it left off.

    python watch_alerts.py --cursor-file alerts.cursor

Each alert's cursor is saved (in --cursor-file) once the alert has been printed. After a
dropped connection, a server restart or a restart of this program, the stream resumes after
the saved cursor: numguard replays exactly what was missed, then continues live, with no gap
and no repeat. Needs a key with the `watch` scope.
"""

import argparse
import json
import os
import sys
import time

import grpc

from numguard_client import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    RETRYABLE,
    alerts_pb2,
    alerts_pb2_grpc,
    backoff,
    check_pb2,
    connect,
    events_pb2,
    fail,
    metadata,
    sleep_before_retry,
)

# A connection that worked this long resets the back-off: it was not a crash loop.
HEALTHY_SECONDS = 30
# Give up after this long without a working connection (0: never).
GIVE_UP_SECONDS = float(os.environ.get("NUMGUARD_GIVE_UP_SECONDS", "0"))


def load_cursor(path):
    """The saved cursor, or None before the first stream (which then starts from now)."""
    try:
        with open(path, encoding="utf-8") as file:
            return int(file.read().strip())
    except FileNotFoundError:
        return None


def save_cursor(path, cursor):
    # Written aside and renamed, so a crash never leaves half a number.
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(f"{cursor}\n")
    os.replace(temporary, path)


def alert_json(alert):
    check = alert.check
    return json.dumps(
        {
            "cursor": alert.cursor,
            "customer_refs": list(alert.customer_refs),
            "phone_number": alert.phone_number,
            "kind": events_pb2.EventKind.Name(alert.event.kind).removeprefix("EVENT_KIND_"),
            "occurred_at": alert.event.occurred_at.ToJsonString(),
            "verdict": check_pb2.Verdict.Name(check.verdict).removeprefix("VERDICT_"),
        },
        ensure_ascii=False,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cursor-file", required=True, help="where the last cursor is kept")
    parser.add_argument("--max-alerts", type=int, default=0, help="stop after this many")
    args = parser.parse_args()

    seen = 0
    attempt = 0
    unavailable_since = None
    with connect() as channel:
        stub = alerts_pb2_grpc.AlertsStub(channel)
        while True:
            cursor = load_cursor(args.cursor_file)
            connected_at = time.monotonic()
            try:
                if cursor is None:
                    request = alerts_pb2.WatchAlertsRequest(start=alerts_pb2.ALERTS_START_NOW)
                else:
                    request = alerts_pb2.WatchAlertsRequest(
                        resume_after=cursor, start=alerts_pb2.ALERTS_START_AFTER_CURSOR
                    )
                stream = stub.WatchAlerts(request, metadata=metadata())
                if cursor is None:
                    # Where "now" was: a reconnect before the first alert resumes there.
                    start = dict(stream.initial_metadata()).get("numguard-start-cursor")
                    save_cursor(args.cursor_file, int(start))
                for alert in stream:
                    print(alert_json(alert), flush=True)
                    save_cursor(args.cursor_file, alert.cursor)
                    unavailable_since = None
                    seen += 1
                    if seen == args.max_alerts:
                        return EXIT_OK
                # The server ended the stream (it is shutting down): reconnect.
                attempt += 1
                time.sleep(backoff(attempt))
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE and error.code() != grpc.StatusCode.CANCELLED:
                    return fail(error)
                if time.monotonic() - connected_at > HEALTHY_SECONDS:
                    attempt = 0
                unavailable_since = unavailable_since or time.monotonic()
                if GIVE_UP_SECONDS and time.monotonic() - unavailable_since > GIVE_UP_SECONDS:
                    fail(error)
                    return EXIT_UNAVAILABLE
                attempt += 1
                sleep_before_retry(attempt, error)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(EXIT_OK)
