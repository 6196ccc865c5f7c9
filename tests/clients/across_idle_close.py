"""Checks a number, waits past the server's connection idle timeout, and checks again on
the same channel: a server that closes idle connections must not fail the next call.
Usage: across_idle_close.py SECONDS"""

import os
import sys
import time

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../examples/python/gen"))
from numguard.v1 import check_pb2, check_pb2_grpc  # noqa: E402

seconds = float(sys.argv[1])
server = os.environ["NUMGUARD_SERVER"].removeprefix("http://")
metadata = [("authorization", "Bearer " + os.environ["NUMGUARD_API_KEY"])]
with grpc.insecure_channel(server) as channel:
    stub = check_pb2_grpc.NumberCheckStub(channel)
    for i in range(2):
        if i:
            time.sleep(seconds)
        stub.CheckNumber(check_pb2.CheckNumberRequest(phone_number="+819012345678"),
                         metadata=metadata, timeout=10)
print("checks 2")
