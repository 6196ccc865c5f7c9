"""Schemathesis hooks for tests/it/camara_fuzz.rs.

A generated subscription whose `sink` is a valid https URL would make numguard deliver
CloudEvents (subscription-ended on delete) to whatever host Hypothesis invented. Tests
reach only loopback, so such a sink is pointed at NUMGUARD_TEST_SINK, an https URL on
127.0.0.1 where nothing listens; invalid sinks are left for numguard to refuse.
"""

import os

import schemathesis

SINK = os.environ["NUMGUARD_TEST_SINK"]


@schemathesis.hook
def map_body(context, body):
    if isinstance(body, dict) and str(body.get("sink", "")).startswith("https://"):
        body["sink"] = SINK
    return body
