"""The HTTP front end of the gevent_app example: a gevent WSGI server calling gRPC.

``monkey.patch_all(grpc=True)`` makes the process cooperative and also makes
``import grpc`` (here and in the generated inventory_pb2_grpc) grpc_green,
which then runs on gevent's hub. gevent.pywsgi serves each HTTP request on a
greenlet of its own; a gRPC call parks only that greenlet, so the server keeps
accepting and answering other requests while calls are in flight. All
requests share one channel (one HTTP/2 connection to the backend).

    python frontend.py BACKEND [PORT]    (e.g. localhost:50051 8080; 0 picks a free port)

Routes (JSON answers):

    GET /items         every item (Inventory.ListItems, server streaming)
    GET /items/<sku>   one item (Inventory.GetItem, unary); 404 if unknown
"""

from gevent import monkey

monkey.patch_all(grpc=True)  # first: before anything imports socket, threading or grpc

import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

import grpc  # noqa: E402  (grpc_green, on gevent's hub)

if grpc.__name__ != "grpc_green":
    # gevent ignores grpc=True when no plugin claims it.
    sys.exit(
        "frontend.py: grpc is still grpcio: gevent did not find grpc_green's "
        "patch_all plugin (install grpc_green, or put the directory holding "
        "grpc_green.egg-info on PYTHONPATH)"
    )

import inventory_pb2  # noqa: E402
import inventory_pb2_grpc  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

import grpc_green.hub  # noqa: E402

RPC_TIMEOUT = 10  # seconds
# An HTTP status for each gRPC status the backend may answer with; anything
# else is the backend failing: 502 Bad Gateway.
HTTP_STATUS = {
    grpc.StatusCode.NOT_FOUND: "404 Not Found",
    grpc.StatusCode.UNAVAILABLE: "503 Service Unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "504 Gateway Timeout",
}


def as_dict(item):
    return {"sku": item.sku, "name": item.name, "stock": item.stock}


class Frontend:
    """The WSGI application: one route a gRPC method, one stub for all requests."""

    def __init__(self, channel):
        self.stub = inventory_pb2_grpc.InventoryStub(channel)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        try:
            if environ["REQUEST_METHOD"] != "GET":
                status, body = "405 Method Not Allowed", {"error": "only GET is served"}
            elif path == "/items":
                items = self.stub.ListItems(inventory_pb2.ListRequest(), timeout=RPC_TIMEOUT)
                status, body = "200 OK", {"items": [as_dict(item) for item in items]}
            elif path.startswith("/items/"):
                request = inventory_pb2.ItemRequest(sku=path[len("/items/") :])
                item = self.stub.GetItem(request, timeout=RPC_TIMEOUT)
                status, body = "200 OK", as_dict(item)
            else:
                status, body = "404 Not Found", {"error": "no route for %s" % path}
        except grpc.RpcError as error:
            status = HTTP_STATUS.get(error.code(), "502 Bad Gateway")
            body = {"error": error.details(), "grpc_status": error.code().name}
        payload = json.dumps(body).encode("utf-8")
        start_response(
            status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        )
        return [payload]


def main(backend, port="8080"):
    with grpc.insecure_channel(backend) as channel:
        server = WSGIServer(("127.0.0.1", int(port)), Frontend(channel), log=None)
        server.start()
        print("HTTP front end listening on %d, calling %s" % (server.server_port, backend))
        print("grpc is %s, on the %s hub" % (grpc.__name__, grpc_green.hub.kind()), flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:  # Ctrl-C
            server.stop()


if __name__ == "__main__":
    logging.basicConfig()
    if len(sys.argv) < 2:
        sys.exit("usage: python frontend.py BACKEND [PORT]")
    main(*sys.argv[1:3])
