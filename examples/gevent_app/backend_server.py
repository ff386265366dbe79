"""The gRPC backend of the gevent_app example: an Inventory server on greenlets.

This process never imports gevent. grpc_green runs it on its own hub (a
libev loop of its own, the "native" hub) and every RPC on a greenlet, so a
handler that waits (here ``grpc_green.hub.sleep``, standing in for a slow
database) parks only its own RPC while the others go on.

    python backend_server.py [PORT]    (default 50051; 0 picks a free port)

Needs inventory_pb2.py / inventory_pb2_grpc.py next to it (run_demo.py
generates them) and grpc_green importable (installed, or the repository root
on PYTHONPATH).
"""

import logging
import sys

import grpc_green.hub
import grpc_green.monkey

grpc_green.monkey.patch_grpc()

import grpc  # noqa: E402  (grpc_green under grpcio's name)
import inventory_pb2  # noqa: E402
import inventory_pb2_grpc  # noqa: E402

# How long each GetItem takes: the lookup of a slow backend.
LOOKUP_SECONDS = 0.2

CATALOG = {
    "A-100": ("anvil", 12),
    "B-200": ("bucket", 40),
    "C-300": ("compass", 7),
    "D-400": ("drill", 3),
    "E-500": ("easel", 25),
}


def item(sku):
    name, stock = CATALOG[sku]
    return inventory_pb2.Item(sku=sku, name=name, stock=stock)


class Inventory(inventory_pb2_grpc.InventoryServicer):
    def GetItem(self, request, context):
        # Parks this RPC's greenlet only: the server goes on with the others.
        grpc_green.hub.sleep(LOOKUP_SECONDS)
        if request.sku not in CATALOG:
            context.abort(grpc.StatusCode.NOT_FOUND, "no item with SKU %r" % request.sku)
        return item(request.sku)

    def ListItems(self, request, context):
        for sku in CATALOG:
            yield item(sku)


def serve(port="50051"):
    # No executor: grpc_green runs every RPC on a greenlet.
    server = grpc.server()
    inventory_pb2_grpc.add_InventoryServicer_to_server(Inventory(), server)
    bound_port = server.add_insecure_port("[::]:" + port)
    server.start()
    print("Inventory backend listening on %d" % bound_port)
    print(
        "grpc_green runs it on the %s hub; gevent is %s"
        % (grpc_green.hub.kind(), "imported" if "gevent" in sys.modules else "not imported"),
        flush=True,
    )
    server.wait_for_termination()


if __name__ == "__main__":
    logging.basicConfig()
    serve(sys.argv[1] if len(sys.argv) > 1 else "50051")
