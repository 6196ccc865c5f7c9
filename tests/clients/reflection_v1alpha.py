"""Lists the services a server offers through gRPC reflection v1alpha (grpcio-reflection),
then resolves each one's descriptor, as reflection-driven tools (Postman, evans) do."""

import os

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

with grpc.insecure_channel(os.environ["NUMGUARD_SERVER"].removeprefix("http://")) as channel:
    database = ProtoReflectionDescriptorDatabase(channel)
    pool = DescriptorPool(database)
    for name in database.get_services():
        methods = [m.name for m in pool.FindServiceByName(name).methods]
        print(name, " ".join(methods))
