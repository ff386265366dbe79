"""A real grpcio client of grpc.health.v1.Health (always in its own process).

    python grpcio_health_client.py TARGET SERVICE

Prints, one line each: CHECK <status of SERVICE> (or CHECK <code name> when
the Check fails), then FIRST <status> (the first Watch response on SERVICE),
then waits for the next Watch response and prints SECOND <status>, then
CHECK_AFTER <status> from a Check of SERVICE, and exits 0. The test in the
other process changes SERVICE's status once it has read FIRST.
"""

import sys

import grpc  # real grpcio: this process is never patched
from grpc_health.v1 import health_pb2, health_pb2_grpc


def status_name(response):
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def main():
    target, service = sys.argv[1], sys.argv[2]
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            check = status_name(
                stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            )
        except grpc.RpcError as error:
            check = error.code().name
        print("CHECK", check, flush=True)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=service), timeout=30)
        print("FIRST", status_name(next(watch)), flush=True)
        print("SECOND", status_name(next(watch)), flush=True)
        watch.cancel()
        after = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        print("CHECK_AFTER", status_name(after), flush=True)


if __name__ == "__main__":
    main()
