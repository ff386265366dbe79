"""What TestService.Echo does once it has decided to answer, shared by the
in-process servicer (tests/conftest.py, on grpc_green) and the grpcio peer
(tests/peers/grpcio_server.py), so interop tests compare the same behaviour.

``grpc`` is passed in: the module each side serves with.
"""

import testing_pb2


def metadata_to_headers(metadata):
    return [
        testing_pb2.Header(key=k, binary_value=v)
        if k.endswith("-bin")
        else testing_pb2.Header(key=k, value=v)
        for k, v in metadata
    ]


def headers_to_metadata(headers):
    return tuple((h.key, h.binary_value if h.key.endswith("-bin") else h.value) for h in headers)


def respond(grpc, request, context, metadata, peer, remaining):
    """Sends the requested metadata and status; returns the EchoResponse."""
    initial = list(headers_to_metadata(request.initial_metadata))
    trailing = list(headers_to_metadata(request.trailing_metadata))
    if request.echo_metadata:
        for key, value in metadata:
            if key.startswith("x-echo-"):
                initial.append(("initial-" + key, value))
                trailing.append(("trailing-" + key, value))
    if initial:
        context.send_initial_metadata(tuple(initial))
    if trailing:
        context.set_trailing_metadata(tuple(trailing))

    if request.raise_exception:
        raise RuntimeError(request.exception_message)
    if request.status_code:
        code = next(c for c in grpc.StatusCode if c.value[0] == request.status_code)
        if request.use_abort:
            context.abort(code, request.status_details)
        context.set_code(code)
        context.set_details(request.status_details)

    return testing_pb2.EchoResponse(
        payload=request.payload,
        message=request.message,
        has_time_remaining=remaining is not None,
        time_remaining=remaining if remaining is not None else 0.0,
        peer=peer,
        received_metadata=metadata_to_headers(metadata),
    )
