"""Generated gRPC stubs of kvtier.v1 (kvtier_pb2, kvtier_pb2_grpc), created from
proto/kvtier/v1/kvtier.proto when the package is built; not in the source tree."""
