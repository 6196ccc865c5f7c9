"""Sends an audit list and reads no answer for a while: the server must pace it with flow
control, not close the connection. Usage: late_reader.py ROWS SECONDS"""

import os
import sys
import threading

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../examples/python/gen"))
from numguard.v1 import check_pb2, check_pb2_grpc  # noqa: E402

rows, seconds = int(sys.argv[1]), float(sys.argv[2])
server = os.environ["NUMGUARD_SERVER"].removeprefix("http://")
metadata = [("authorization", "Bearer " + os.environ["NUMGUARD_API_KEY"])]
requests = (
    check_pb2.AuditRow(customer_ref=f"c{i}", phone_number=f"+8190{10_000_000 + i}")
    for i in range(rows)
)
with grpc.insecure_channel(server) as channel:
    answers = check_pb2_grpc.NumberCheckStub(channel).AuditNumbers(requests, metadata=metadata)
    threading.Event().wait(seconds)
    count = 0
    for answer in answers:
        assert answer.index == count and answer.customer_ref == f"c{count}", answer
        count += 1
    print(f"results {count}")
