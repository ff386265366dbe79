"""The Python implementation of the gRPC route guide client, on grpc_green.

Written against grpcio's API: after grpc_green.monkey.patch_grpc(),
``import grpc`` (here and inside the generated route_guide_pb2_grpc) is
grpc_green. It calls each of the four RPCs once and prints what it received:

    GetFeature    unary               a request, a response
    ListFeatures  server streaming    a request, a stream of responses
    RecordRoute   client streaming    a stream of requests, a response
    RouteChat     bidi streaming      a stream each way

    python route_guide_client.py [TARGET]    (default localhost:50051)
"""

import logging
import sys

import grpc_green.monkey

grpc_green.monkey.patch_grpc()

import grpc  # noqa: E402  (grpc_green under grpcio's name)
import route_guide_pb2  # noqa: E402
import route_guide_pb2_grpc  # noqa: E402

E7 = 10**7


def make_point(latitude, longitude):
    """A Point from degrees."""
    return route_guide_pb2.Point(latitude=round(latitude * E7), longitude=round(longitude * E7))


def format_point(point):
    return "(%.4f, %.4f)" % (point.latitude / E7, point.longitude / E7)


FERRY_BUILDING = make_point(37.7955, -122.3937)
COIT_TOWER = make_point(37.8024, -122.4058)
GOLDEN_GATE_BRIDGE = make_point(37.8199, -122.4783)

# A walk along the northern waterfront; one point on it has no feature.
ROUTE = [
    FERRY_BUILDING,
    COIT_TOWER,
    make_point(37.8021, -122.4187),  # Lombard Street
    make_point(37.8050, -122.4250),  # no feature here
    make_point(37.8066, -122.4310),  # Fort Mason
    make_point(37.8029, -122.4484),  # Palace of Fine Arts
    make_point(37.8039, -122.4640),  # Crissy Field
    GOLDEN_GATE_BRIDGE,
]

NOTES = [
    ("Start at the Ferry Building", FERRY_BUILDING),
    ("Climb to Coit Tower", COIT_TOWER),
    ("Back at the Ferry Building", FERRY_BUILDING),
    ("Ride to the Golden Gate Bridge", GOLDEN_GATE_BRIDGE),
    ("Coit Tower again", COIT_TOWER),
    ("Ferry Building, one last time", FERRY_BUILDING),
]


def guide_get_feature(stub):
    for point in (COIT_TOWER, make_point(0, 0)):
        feature = stub.GetFeature(point, timeout=10)
        if feature.name:
            print("Feature called %r at %s" % (feature.name, format_point(feature.location)))
        else:
            print("Found no feature at %s" % format_point(feature.location))


def guide_list_features(stub):
    rectangle = route_guide_pb2.Rectangle(
        lo=make_point(37.7800, -122.4300), hi=make_point(37.8100, -122.3900)
    )
    print(
        "Looking for features between %s and %s"
        % (format_point(rectangle.lo), format_point(rectangle.hi))
    )
    count = 0
    for feature in stub.ListFeatures(rectangle, timeout=10):
        count += 1
        print("Feature called %r at %s" % (feature.name, format_point(feature.location)))
    print("ListFeatures returned %d features" % count)


def generate_route():
    for point in ROUTE:
        print("Visiting point %s" % format_point(point))
        yield point


def guide_record_route(stub):
    summary = stub.RecordRoute(generate_route(), timeout=10)
    print("Finished trip with %d points" % summary.point_count)
    print("Passed %d features" % summary.feature_count)
    print("Travelled %d meters" % summary.distance)
    print("It took %d seconds" % summary.elapsed_time)


def say(line):
    # One write per line: the request iterator runs in a thread of its own
    # (as with grpcio) while this thread prints the responses, and print()
    # writes the text and the newline separately.
    sys.stdout.write(line + "\n")


def generate_notes():
    for message, location in NOTES:
        say("Sending %r at %s" % (message, format_point(location)))
        yield route_guide_pb2.RouteNote(message=message, location=location)


def guide_route_chat(stub):
    for note in stub.RouteChat(generate_notes(), timeout=10):
        say("Received message %r at %s" % (note.message, format_point(note.location)))


def run(target="localhost:50051"):
    with grpc.insecure_channel(target) as channel:
        stub = route_guide_pb2_grpc.RouteGuideStub(channel)
        print("-------------- GetFeature --------------")
        guide_get_feature(stub)
        print("-------------- ListFeatures --------------")
        guide_list_features(stub)
        print("-------------- RecordRoute --------------")
        guide_record_route(stub)
        print("-------------- RouteChat --------------")
        guide_route_chat(stub)


if __name__ == "__main__":
    logging.basicConfig()
    run(sys.argv[1] if len(sys.argv) > 1 else "localhost:50051")
