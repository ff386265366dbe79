"""Runs the route guide example end to end.

examples/demo_runner.py generates route_guide_pb2.py / route_guide_pb2_grpc.py
from route_guide.proto next to this file, starts route_guide_server.py, runs
route_guide_client.py against it (one RPC of each of the four kinds) and
stops the server; the answers the client must print are checked here. Exits
non-zero if any step fails or an expected answer is missing.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/, for demo_runner

import demo_runner  # noqa: E402

PROTO = HERE / "route_guide.proto"
COIT_TOWER = "'Coit Tower, 1 Telegraph Hill Boulevard, San Francisco, CA 94133, USA'"
# Lines route_guide_client.py prints for answers of each RPC.
EXPECTED = [
    # GetFeature
    "Feature called %s at (37.8024, -122.4058)" % COIT_TOWER,
    "Found no feature at (0.0000, 0.0000)",
    # ListFeatures
    "Feature called %s at (37.8024, -122.4058)" % COIT_TOWER,
    "ListFeatures returned 5 features",
    # RecordRoute
    "Finished trip with 8 points",
    "Passed 7 features",
]
# RouteChat: the earlier notes at the same place, in this order.
EXPECTED_CHAT = [
    "Received message 'Start at the Ferry Building' at (37.7955, -122.3937)",
    "Received message 'Climb to Coit Tower' at (37.8024, -122.4058)",
    "Received message 'Start at the Ferry Building' at (37.7955, -122.3937)",
    "Received message 'Back at the Ferry Building' at (37.7955, -122.3937)",
]


if __name__ == "__main__":
    check = demo_runner.lines_check(
        EXPECTED, "Received message ", EXPECTED_CHAT, "RouteChat answers were"
    )
    sys.exit(
        demo_runner.run(
            HERE,
            PROTO,
            "route_guide",
            check,
            "GetFeature, ListFeatures, RecordRoute and RouteChat answered",
        )
    )
