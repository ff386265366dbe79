"""The Python implementation of the gRPC route guide server, on grpc_green.

Written against grpcio's API: after grpc_green.monkey.patch_grpc(),
``import grpc`` (here and inside the generated route_guide_pb2_grpc) is
grpc_green, and every RPC, streaming or not, runs on a greenlet.

    python route_guide_server.py [PORT]    (default 50051; 0 picks a free port)

Needs route_guide_pb2.py / route_guide_pb2_grpc.py next to it (run_demo.py
generates them), route_guide_db.json next to it, and grpc_green importable
(installed, or the repository root on PYTHONPATH).
"""

import json
import logging
import math
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc_green.monkey

grpc_green.monkey.patch_grpc()

import grpc  # noqa: E402  (grpc_green under grpcio's name)
import route_guide_pb2  # noqa: E402
import route_guide_pb2_grpc  # noqa: E402

DB_PATH = Path(__file__).resolve().parent / "route_guide_db.json"
EARTH_RADIUS_METERS = 6371000
E7 = 1e7


def load_features(path=DB_PATH):
    """Reads the feature database: a JSON list of {"name", "location"} objects."""
    with open(path) as f:
        return [
            route_guide_pb2.Feature(
                name=item["name"],
                location=route_guide_pb2.Point(
                    latitude=item["location"]["latitude"],
                    longitude=item["location"]["longitude"],
                ),
            )
            for item in json.load(f)
        ]


def find_feature(features, point):
    """The database entry at `point`, or None."""
    for feature in features:
        if feature.location == point:
            return feature
    return None


def distance_meters(start, end):
    """Great-circle distance between two points (haversine formula)."""
    lat1 = math.radians(start.latitude / E7)
    lat2 = math.radians(end.latitude / E7)
    dlat = lat2 - lat1
    dlon = math.radians((end.longitude - start.longitude) / E7)
    a = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_METERS * math.atan2(math.sqrt(a), math.sqrt(1 - a))


class RouteGuideServicer(route_guide_pb2_grpc.RouteGuideServicer):
    def __init__(self, features):
        self.features = features

    def GetFeature(self, request, context):
        feature = find_feature(self.features, request)
        if feature is None:
            return route_guide_pb2.Feature(name="", location=request)
        return feature

    def ListFeatures(self, request, context):
        left = min(request.lo.longitude, request.hi.longitude)
        right = max(request.lo.longitude, request.hi.longitude)
        bottom = min(request.lo.latitude, request.hi.latitude)
        top = max(request.lo.latitude, request.hi.latitude)
        for feature in self.features:
            location = feature.location
            if (
                feature.name
                and left <= location.longitude <= right
                and bottom <= location.latitude <= top
            ):
                yield feature

    def RecordRoute(self, request_iterator, context):
        point_count = 0
        feature_count = 0
        distance = 0.0
        previous = None
        start_time = time.monotonic()
        for point in request_iterator:
            point_count += 1
            feature = find_feature(self.features, point)
            if feature is not None and feature.name:
                feature_count += 1
            if previous is not None:
                distance += distance_meters(previous, point)
            previous = point
        return route_guide_pb2.RouteSummary(
            point_count=point_count,
            feature_count=feature_count,
            distance=int(distance),
            elapsed_time=int(time.monotonic() - start_time),
        )

    def RouteChat(self, request_iterator, context):
        notes = []
        for new_note in request_iterator:
            for note in notes:
                if note.location == new_note.location:
                    yield note
            notes.append(new_note)


def serve(port="50051"):
    # grpcio runs handlers on this pool; grpc_green accepts it for
    # compatibility and runs every RPC on a greenlet instead (no threads).
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    route_guide_pb2_grpc.add_RouteGuideServicer_to_server(
        RouteGuideServicer(load_features()), server
    )
    bound_port = server.add_insecure_port("[::]:" + port)
    server.start()
    print("Server started, listening on %d" % bound_port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    logging.basicConfig()
    serve(sys.argv[1] if len(sys.argv) > 1 else "50051")
