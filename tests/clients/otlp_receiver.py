#!/usr/bin/env python3
"""An OTLP/gRPC trace receiver: prints its port, then one JSON line per span received
(with --count, only the number of spans received so far, once a second, for benchmarks).

Built on the OpenTelemetry project's generated TraceService (opentelemetry-proto), so what
numguard exports is read exactly as a collector reads it.
"""

import json
import sys
import time
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class Counter(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self):
        self.spans = 0

    def Export(self, request, context):
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.spans += len(scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        for resource_spans in request.resource_spans:
            resource = {a.key: value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    line = {
                        "service": resource.get("service.name"),
                        "name": span.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "attributes": {a.key: value(a.value) for a in span.attributes},
                    }
                    print(json.dumps(line), flush=True)
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    counting = "--count" in sys.argv[1:]
    receiver = Counter() if counting else Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    while counting:
        time.sleep(1)
        print(receiver.spans, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    sys.exit(main())
