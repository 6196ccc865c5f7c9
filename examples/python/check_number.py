#!/usr/bin/env python3
"""Ask numguard before sending an OTP: CheckNumber for one number.

    python check_number.py +819012345678
    python check_number.py 090-1234-5678 --region JP --owner-since 2026-03-01 --json

Prints the verdict (ALLOW, STEP_UP or BLOCK), its reasons and, per question, which
sources cover it since when; exit code 0 when answered.
"""

import argparse
import json
import sys

import grpc
from google.protobuf.json_format import MessageToDict

from numguard_client import EXIT_OK, check_pb2, check_pb2_grpc, connect, fail, metadata

# Long enough for a look-up the server makes to the operator's API, short enough for a
# login page.
DEADLINE_SECONDS = 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phone_number", help="E.164, or national format with --region")
    parser.add_argument("--region", default="", help="ISO 3166 region for national format")
    parser.add_argument("--max-age-hours", type=int, default=0, help="SIM-swap window")
    parser.add_argument("--owner-since", default="", help="date the owner was last verified")
    parser.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    args = parser.parse_args()

    request = check_pb2.CheckNumberRequest(
        phone_number=args.phone_number,
        region=args.region,
        max_age_hours=args.max_age_hours,
        owner_since_date=args.owner_since,
    )
    with connect() as channel:
        stub = check_pb2_grpc.NumberCheckStub(channel)
        try:
            answer = stub.CheckNumber(request, timeout=DEADLINE_SECONDS, metadata=metadata())
        except grpc.RpcError as error:
            return fail(error)

    if args.json:
        print(json.dumps(MessageToDict(answer), ensure_ascii=False))
        return EXIT_OK
    verdict = check_pb2.Verdict.Name(answer.verdict).removeprefix("VERDICT_")
    print(f"{answer.phone_number} {verdict}")
    for reason in answer.reasons:
        code = check_pb2.ReasonCode.Name(reason.code).removeprefix("REASON_CODE_")
        print(f"  {code}: {reason.detail}")
    for coverage in answer.coverage:
        question = check_pb2.CoverageQuestion.Name(coverage.question)
        question = question.removeprefix("COVERAGE_QUESTION_").lower()
        if coverage.HasField("covered_since"):
            # An answer names each source once; each question refers to them by position.
            names = ", ".join(answer.sources[i] for i in coverage.source_indexes)
            since = coverage.covered_since.ToJsonString()
            print(f"  {question} covered by {names} since {since}")
        else:
            print(f"  {question} not covered now: {coverage.gap}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
