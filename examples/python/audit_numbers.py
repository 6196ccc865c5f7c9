#!/usr/bin/env python3
"""Audit a customer list: every row through AuditNumbers, a CSV report in input order.

    python audit_numbers.py customers.csv --out report.csv

The input has a header with customer_ref and phone_number, and optionally region and
owner_since (YYYY-MM-DD). The report has one line per input row: customer_ref,
phone_number (E.164), verdict, sim_swap, ownership, reasons, error. A row the server cannot
read gets its error in the report and the audit goes on. If the connection fails, the audit
resumes after the last row answered, so the report has each row exactly once.
"""

import argparse
import csv
import itertools
import sys

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from numguard_client import (
    EXIT_OK,
    RETRYABLE,
    check_pb2,
    check_pb2_grpc,
    connect,
    fail,
    header_problem,
    metadata,
    sleep_before_retry,
)

MAX_ATTEMPTS = 5
HEADER = ["customer_ref", "phone_number", "verdict", "sim_swap", "ownership", "reasons", "error"]


def read_rows(path, skip):
    """Yields AuditRows from the input, after its first `skip` rows."""
    with open(path, newline="", encoding="utf-8") as file:
        for row in itertools.islice(csv.DictReader(file), skip, None):
            yield check_pb2.AuditRow(
                customer_ref=row["customer_ref"],
                phone_number=row["phone_number"],
                region=row.get("region") or "",
                owner_since_date=row.get("owner_since") or "",
            )


def name(enum, value, prefix):
    return enum.Name(value).removeprefix(prefix)


def report_line(result):
    if result.WhichOneof("outcome") == "error":
        return [result.customer_ref, "", "", "", "", "", result.error.message]
    check = result.check
    reasons = ";".join(name(check_pb2.ReasonCode, r.code, "REASON_CODE_") for r in check.reasons)
    return [
        result.customer_ref,
        check.phone_number,
        name(check_pb2.Verdict, check.verdict, "VERDICT_"),
        name(check_pb2.SimSwapStatus, check.sim_swap, "SIM_SWAP_STATUS_"),
        name(check_pb2.OwnershipStatus, check.ownership, "OWNERSHIP_STATUS_"),
        reasons,
        "",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="CSV customer list")
    parser.add_argument("--out", required=True, help="CSV report to write")
    args = parser.parse_args()

    problem = header_problem(args.file, ["customer_ref", "phone_number"])
    if problem is not None:
        return problem

    answered = 0
    verdicts = {}
    with connect() as channel, open(args.out, "w", newline="", encoding="utf-8") as out:
        stub = check_pb2_grpc.NumberCheckStub(channel)
        report = csv.writer(out, lineterminator="\n")
        report.writerow(HEADER)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            first = answered
            try:
                # Rows are sent as the server reads them, results arrive as they are
                # answered: neither side holds the whole list.
                for result in stub.AuditNumbers(read_rows(args.file, first), metadata=metadata()):
                    if result.index != answered - first:
                        raise RuntimeError(f"result {result.index} out of order")
                    line = report_line(result)
                    report.writerow(line)
                    verdicts[line[2] or "ERROR"] = verdicts.get(line[2] or "ERROR", 0) + 1
                    answered += 1
                break
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE or attempt == MAX_ATTEMPTS:
                    return fail(error)
                out.flush()
                sleep_before_retry(attempt, error)

    summary = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
    print(f"audited {answered} rows: {summary}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
