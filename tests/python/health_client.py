"""The grpcio side of tests/grpc.rs: grpc.health.v1.Health called by gRPC C-core.

tests/grpc.rs starts the `grpc_server` example, runs this script with the
dependencies of requirements.txt beside it, and compares what an
implementation independent of tonic sees with what it expects.

    python health_client.py 127.0.0.1:50051 < cases.json

stdin is a JSON list of cases, `{"method": "Check" | "Watch", "token": str |
null}`; a token is sent as `authorization: Bearer TOKEN`. stdout is one JSON
list with a result per case, in order:

    {"code": "OK" | "UNAUTHENTICATED" | ...,   # grpc.StatusCode name
     "details": str | null,                    # null when empty
     "www_authenticate": str | null,           # from the trailing metadata
     "status": "SERVING" | ... | null}         # first response; OK only

Watch never ends by itself: its first response is read and the call is then
cancelled, so an OK Watch has no trailing metadata to report.
"""

import json
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEADLINE = 10.0  # seconds, for Check and for Watch's first response
REQUEST = health_pb2.HealthCheckRequest(service="")
SERVING_STATUS = health_pb2.HealthCheckResponse.ServingStatus


def result(code, details=None, trailing=None, response=None):
    challenge = next((v for k, v in trailing or () if k == "www-authenticate"), None)
    status = SERVING_STATUS.Name(response.status) if response is not None else None
    return {"code": code.name, "details": details or None,
            "www_authenticate": challenge, "status": status}


def failure(error):
    return result(error.code(), error.details(), error.trailing_metadata())


def check(stub, metadata):
    try:
        response, call = stub.Check.with_call(REQUEST, metadata=metadata, timeout=DEADLINE)
    except grpc.RpcError as e:
        return failure(e)
    return result(call.code(), call.details(), call.trailing_metadata(), response)


def watch(stub, metadata):
    call = stub.Watch(REQUEST, metadata=metadata, timeout=DEADLINE)
    try:
        first = next(call, None)
    except grpc.RpcError as e:
        return failure(e)
    finally:
        call.cancel()
    if first is None:  # the stream ended without a response
        return result(call.code(), call.details(), call.trailing_metadata())
    return result(grpc.StatusCode.OK, response=first)


METHODS = {"Check": check, "Watch": watch}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: health_client.py HOST:PORT < cases.json")
    cases = json.load(sys.stdin)
    results = []
    with grpc.insecure_channel(sys.argv[1]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for case in cases:
            token = case.get("token")
            metadata = [("authorization", "Bearer " + token)] if token is not None else []
            results.append(METHODS[case["method"]](stub, metadata))
    json.dump(results, sys.stdout)
    print()


if __name__ == "__main__":
    main()
