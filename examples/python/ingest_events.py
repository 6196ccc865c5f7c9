#!/usr/bin/env python3
"""Feed events from a CSV file into numguard: one IngestEvents stream, one event per message.

    python ingest_events.py events.csv --source docomo-feed

The CSV has a header and the columns
    source_event_id,phone_number,kind,occurred_at,from_carrier,to_carrier
with kind one of SIM_SWAP, PORT, DISCONNECT, REASSIGN, DEVICE_SWAP and occurred_at in
RFC 3339 (2026-05-02T10:00:00Z). Lines the server refuses are reported with their line
numbers. If the connection fails, the whole file is sent again: numguard ignores an event
it already has (same source and source_event_id), so nothing is stored twice.
"""

import argparse
import array
import csv
import sys

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from numguard_client import (
    EXIT_OK,
    EXIT_REFUSED,
    RETRYABLE,
    connect,
    events_pb2,
    events_pb2_grpc,
    fail,
    header_problem,
    metadata,
    sleep_before_retry,
)

MAX_ATTEMPTS = 5
KINDS = {
    name.removeprefix("EVENT_KIND_"): value
    for name, value in events_pb2.EventKind.items()
    if value != events_pb2.EVENT_KIND_UNSPECIFIED
}
COLUMNS = ["source_event_id", "phone_number", "kind", "occurred_at", "from_carrier", "to_carrier"]


def read_events(path, source, sent_lines, local_errors):
    """Yields one Event per good line; records each sent line's number (to name the lines
    the server refuses) and the lines that cannot be read."""
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        for row in reader:
            line = reader.line_num
            kind = KINDS.get(row["kind"].strip().upper())
            if kind is None:
                local_errors.append((line, f"{row['kind']!r} is not an event kind"))
                continue
            occurred_at = Timestamp()
            try:
                occurred_at.FromJsonString(row["occurred_at"].strip())
            except ValueError:
                local_errors.append((line, f"{row['occurred_at']!r} is not an RFC 3339 time"))
                continue
            sent_lines.append(line)
            yield events_pb2.Event(
                source=source,
                source_event_id=row["source_event_id"],
                phone_number=row["phone_number"],
                kind=kind,
                occurred_at=occurred_at,
                from_carrier=row.get("from_carrier") or "",
                to_carrier=row.get("to_carrier") or "",
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="CSV file of events")
    parser.add_argument("--source", required=True, help="name of a registered source")
    args = parser.parse_args()

    problem = header_problem(args.file, COLUMNS[:4])
    if problem is not None:
        return problem

    with connect() as channel:
        stub = events_pb2_grpc.EventsStub(channel)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            sent_lines = array.array("Q")
            local_errors = []
            try:
                events = read_events(args.file, args.source, sent_lines, local_errors)
                # No deadline: a large file takes as long as it takes; flow control paces
                # the stream to what the server can store.
                summary = stub.IngestEvents(events, metadata=metadata())
                break
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE or attempt == MAX_ATTEMPTS:
                    return fail(error)
                sleep_before_retry(attempt, error)

    for line, reason in local_errors:
        print(f"line {line}: {reason}", file=sys.stderr)
    for error in summary.errors:
        print(f"line {sent_lines[error.index]}: {error.reason}", file=sys.stderr)
    rejected = summary.rejected + len(local_errors)
    print(
        f"accepted {summary.accepted}, duplicates {summary.duplicates}, rejected {rejected}"
    )
    return EXIT_OK if rejected == 0 else EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
