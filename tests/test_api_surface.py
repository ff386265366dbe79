"""Tests of grpc_green's pure, engine-independent API surface.

Nothing here opens a socket. Anything that imports the real grpcio, or that
changes ``sys.modules['grpc']``, runs in a subprocess so this test process
stays free of grpcio and unpatched.
"""

import inspect
import json
import os
import subprocess
import sys
import textwrap

import pytest

from grpc_green import _api, _handlers, _utilities, experimental, monkey
from grpc_green._version import __version__ as GREEN_VERSION

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.filterwarnings("ignore::grpc_green.experimental.ExperimentalApiWarning")

# grpc-status codes as defined by the gRPC protocol (doc/statuscodes.md).
PROTOCOL_STATUS_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


def run_python(script, *path_entries, cwd=None):
    """Run ``script`` in a fresh interpreter with the repo on sys.path;
    return its stdout, failing the test with stderr on a non-zero exit."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [REPO_ROOT, *map(str, path_entries)]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env.pop("PYTHONSTARTUP", None)
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    # LD_PRELOAD is kept: under `make asan` grpc_green._core needs libasan.
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=str(cwd or REPO_ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (
        "subprocess failed (exit %d)\n--- stdout ---\n%s\n--- stderr ---\n%s"
        % (proc.returncode, proc.stdout, proc.stderr)
    )
    return proc.stdout


# ------------------------------------------------------------------ enums ---


def test_status_code_values_match_protocol():
    assert [m.name for m in _api.StatusCode] == list(PROTOCOL_STATUS_CODES)
    for name, code in PROTOCOL_STATUS_CODES.items():
        member = _api.StatusCode[name]
        assert member.value == (code, name.lower().replace("_", " "))
        assert _api._INT_TO_STATUS[code] is member
    assert len(_api._INT_TO_STATUS) == len(PROTOCOL_STATUS_CODES)


def test_connectivity_and_compression_values():
    assert [(m.name, m.value) for m in _api.ChannelConnectivity] == [
        ("IDLE", (0, "idle")),
        ("CONNECTING", (1, "connecting")),
        ("READY", (2, "ready")),
        ("TRANSIENT_FAILURE", (3, "transient failure")),
        ("SHUTDOWN", (4, "shutdown")),
    ]
    assert _api.Compression.NoCompression == 0
    assert _api.Compression.Deflate == 1
    assert _api.Compression.Gzip == 2
    assert isinstance(_api.Compression.Gzip, int)


# ------------------------------------------------------------- interfaces ---


def test_all_lists_existing_public_names():
    assert len(set(_api.__all__)) == len(_api.__all__)
    for name in _api.__all__:
        assert not name.startswith("_")
        assert hasattr(_api, name), name
    assert set(_handlers.__all__) == {
        "unary_unary_rpc_method_handler",
        "unary_stream_rpc_method_handler",
        "stream_unary_rpc_method_handler",
        "stream_stream_rpc_method_handler",
        "method_handlers_generic_handler",
    }


def test_exceptions():
    for exc in (_api.RpcError, _api.FutureTimeoutError, _api.FutureCancelledError):
        assert issubclass(exc, Exception)


@pytest.mark.parametrize(
    "cls",
    [
        _api.Future,
        _api.RpcContext,
        _api.Call,
        _api.ServicerContext,
        _api.Channel,
        _api.Server,
        _api.UnaryUnaryMultiCallable,
        _api.UnaryStreamMultiCallable,
        _api.StreamUnaryMultiCallable,
        _api.StreamStreamMultiCallable,
        _api.GenericRpcHandler,
        _api.ServiceRpcHandler,
        _api.ServerInterceptor,
        _api.UnaryUnaryClientInterceptor,
        _api.UnaryStreamClientInterceptor,
        _api.StreamUnaryClientInterceptor,
        _api.StreamStreamClientInterceptor,
    ],
)
def test_interfaces_are_abstract(cls):
    assert cls.__abstractmethods__
    with pytest.raises(TypeError):
        cls()


def test_servicer_context_defaults():
    abstract = _api.ServicerContext.__abstractmethods__
    assert {"abort", "abort_with_status", "set_code", "set_details"} <= abstract
    optional = (
        "set_compression",
        "disable_next_message_compression",
        "code",
        "details",
        "trailing_metadata",
    )
    assert not abstract & set(optional)
    namespace = {name: (lambda self, *a: None) for name in abstract}
    context = type("Context", (_api.ServicerContext,), namespace)()
    assert isinstance(context, _api.RpcContext)
    with pytest.raises(NotImplementedError):
        context.set_compression(_api.Compression.Gzip)
    for name in optional[1:]:
        with pytest.raises(NotImplementedError):
            getattr(context, name)()


def test_server_defaults():
    namespace = {name: (lambda self, *a: None) for name in _api.Server.__abstractmethods__}
    server = type("FakeServer", (_api.Server,), namespace)()
    assert server.add_registered_method_handlers("pkg.Svc", {}) is None
    with pytest.raises(NotImplementedError):
        server.wait_for_termination()


def test_credentials_holders_and_status():
    for cls in (_api.ChannelCredentials, _api.CallCredentials, _api.ServerCredentials):
        assert cls("payload")._credentials == "payload"
    creds = experimental.insecure_channel_credentials()
    assert isinstance(creds, _api.ChannelCredentials)
    assert experimental.insecure_channel_credentials() is creds

    import collections

    class MyStatus(
        collections.namedtuple("MyStatus", ("code", "details", "trailing_metadata")),
        _api.Status,
    ):
        pass

    status = MyStatus(_api.StatusCode.NOT_FOUND, "gone", ())
    assert isinstance(status, _api.Status)
    assert status.code is _api.StatusCode.NOT_FOUND


def test_handler_call_details_is_structural():
    class Details:
        method = "/pkg.Svc/M"
        invocation_metadata = ()

    assert isinstance(Details(), _api.HandlerCallDetails)
    assert not isinstance(object(), _api.HandlerCallDetails)


# --------------------------------------------------------------- handlers ---


def _behavior(request, context):
    return request


@pytest.mark.parametrize(
    "factory, request_streaming, response_streaming, slot",
    [
        (_handlers.unary_unary_rpc_method_handler, False, False, "unary_unary"),
        (_handlers.unary_stream_rpc_method_handler, False, True, "unary_stream"),
        (_handlers.stream_unary_rpc_method_handler, True, False, "stream_unary"),
        (_handlers.stream_stream_rpc_method_handler, True, True, "stream_stream"),
    ],
)
def test_rpc_method_handler_constructors(factory, request_streaming, response_streaming, slot):
    handler = factory(_behavior, request_deserializer=bytes.upper, response_serializer=bytes.lower)
    assert isinstance(handler, _utilities.RpcMethodHandler)
    assert isinstance(handler, _api.RpcMethodHandler)
    assert handler.request_streaming is request_streaming
    assert handler.response_streaming is response_streaming
    assert handler.request_deserializer is bytes.upper
    assert handler.response_serializer is bytes.lower
    for name in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        assert getattr(handler, name) is (_behavior if name == slot else None)

    bare = factory(_behavior)
    assert bare.request_deserializer is None and bare.response_serializer is None

    wrapped = experimental.wrap_server_method_handler(lambda b: "wrapped", handler)
    assert getattr(wrapped, slot) == "wrapped"
    assert wrapped.request_streaming is request_streaming
    assert experimental.wrap_server_method_handler(lambda b: b, None) is None


def test_rpc_method_handler_fields():
    assert _utilities.RpcMethodHandler._fields == (
        "request_streaming",
        "response_streaming",
        "request_deserializer",
        "response_serializer",
        "unary_unary",
        "unary_stream",
        "stream_unary",
        "stream_stream",
    )


class _Details:
    def __init__(self, method):
        self.method = method
        self.invocation_metadata = ()


def test_dictionary_generic_handler_lookup():
    say = _handlers.unary_unary_rpc_method_handler(_behavior)
    chat = _handlers.stream_stream_rpc_method_handler(_behavior)
    generic = _handlers.method_handlers_generic_handler(
        "demo.v1.Greeter", {"Say": say, "Chat": chat}
    )
    assert isinstance(generic, _utilities.DictionaryGenericHandler)
    assert isinstance(generic, _api.ServiceRpcHandler)
    assert isinstance(generic, _api.GenericRpcHandler)
    assert generic.service_name() == "demo.v1.Greeter"

    assert generic.service(_Details("/demo.v1.Greeter/Say")) is say
    assert generic.service(_Details("/demo.v1.Greeter/Chat")) is chat
    assert generic.service(_Details(b"/demo.v1.Greeter/Say")) is say
    for miss in (
        "/demo.v1.Greeter/Missing",
        "/demo.v1.Other/Say",
        "/demo.v1.Greeter/say",
        "demo.v1.Greeter/Say",
        "/Say",
        "",
    ):
        assert generic.service(_Details(miss)) is None, miss


# ---------------------------------------------------------------- versions --


@pytest.mark.parametrize(
    "version, generated, lower",
    [
        ("1.60.0", "1.85.1", True),
        ("1.85.0", "1.85.1", True),
        ("1.9.0", "1.10.0", True),  # numeric, not lexicographic
        ("0.99.99", "1.0.0", True),
        ("1.85.1", "1.85.1", False),
        ("1.85.2", "1.85.1", False),
        ("1.100.0", "1.85.1", False),
        ("2.0.0", "1.85.1", False),
        ("1.60.1", "1.60.1.dev0", True),  # grpcio: fewer parts is lower
        ("1.60.1.dev0", "1.60.1", False),
        ("1.60.x", "1.85.1", False),  # unparsable -> not lower
        ("1.85.1", "1.85.x", False),
    ],
)
def test_first_version_is_lower(version, generated, lower):
    assert _utilities.first_version_is_lower(version, generated) is lower


@pytest.mark.parametrize("generated", ["0.0.1", "1.60.0", "1.85.1", "99.0.0", "2.0.0.dev0"])
def test_own_version_is_never_lower(generated):
    assert _utilities.first_version_is_lower(GREEN_VERSION, generated) is False


def test_own_version_would_be_lower_by_number():
    # The exemption is what makes generated files from grpcio-tools >= 1.x
    # importable: grpc_green's own number is below every grpcio release.
    assert GREEN_VERSION == "0.1.0"
    assert _utilities.first_version_is_lower("0.1.0.x", "1.85.1") is True


# ------------------------------------------------------------ experimental --


class _FakeCall:
    def __init__(self, responses=(), error=None):
        self._responses = iter(responses)
        self._error = error
        self.cancelled_flag = False

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._responses)
        except StopIteration:
            if self._error is not None:
                raise self._error from None
            raise

    def code(self):
        return _api.StatusCode.OK

    def cancel(self):
        self.cancelled_flag = True
        return True


class _FakeMultiCallable:
    def __init__(self, channel, kind, method, kwargs):
        self.channel, self.kind, self.method, self.kwargs = channel, kind, method, kwargs

    def __call__(self, request, **call_kwargs):
        self.channel.calls.append((self.kind, self.method, self.kwargs, request, call_kwargs))
        if self.kind.endswith("_unary"):
            if self.channel.fail_with is not None:
                raise self.channel.fail_with
            return ("response", request)
        return _FakeCall(self.channel.responses, self.channel.fail_with)


class _FakeChannel:
    def __init__(self, target, options, kwargs, responses, fail_with):
        self.target, self.options, self.kwargs = target, options, kwargs
        self.responses, self.fail_with = responses, fail_with
        self.calls = []
        self.closed = 0

    def close(self):
        self.closed += 1

    def __getattr__(self, kind):
        if kind not in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            raise AttributeError(kind)
        return lambda method, **kwargs: _FakeMultiCallable(self, kind, method, kwargs)


@pytest.fixture
def fake_channels(monkeypatch):
    import grpc_green

    opened = []
    behaviour = {"responses": ("a", "b"), "fail_with": None}

    def insecure_channel(target, options=None, compression=None, **kwargs):
        if compression is not None:
            kwargs["compression"] = compression
        channel = _FakeChannel(target, options, kwargs, **behaviour)
        opened.append(channel)
        return channel

    monkeypatch.setattr(grpc_green, "insecure_channel", insecure_channel, raising=False)
    return opened, behaviour


def test_experimental_unary_unary(fake_channels):
    opened, _ = fake_channels
    response = experimental.unary_unary(
        "req",
        "localhost:1",
        "/pkg.Svc/M",
        str.encode,
        bytes.decode,
        options=(("k", "v"),),
        timeout=3,
        metadata=(("a", "b"),),
        _registered_method=True,
    )
    assert response == ("response", "req")
    (channel,) = opened
    assert channel.target == "localhost:1" and channel.options == (("k", "v"),)
    assert channel.closed == 1
    kind, method, kwargs, request, call_kwargs = channel.calls[0]
    assert (kind, method, request) == ("unary_unary", "/pkg.Svc/M", "req")
    assert kwargs == {
        "request_serializer": str.encode,
        "response_deserializer": bytes.decode,
        "_registered_method": True,
    }
    assert call_kwargs["timeout"] == 3
    assert call_kwargs["metadata"] == (("a", "b"),)
    assert call_kwargs["wait_for_ready"] is True  # grpcio's default here
    assert call_kwargs["credentials"] is None


def test_experimental_unary_response_failure_closes_channel(fake_channels):
    opened, behaviour = fake_channels
    behaviour["fail_with"] = _api.RpcError("boom")
    with pytest.raises(_api.RpcError):
        experimental.stream_unary(iter(["x"]), "t", "/pkg.Svc/M", wait_for_ready=False)
    assert opened[0].closed == 1
    assert opened[0].calls[0][4]["wait_for_ready"] is False


@pytest.mark.parametrize("function", [experimental.unary_stream, experimental.stream_stream])
def test_experimental_streaming_closes_channel_when_exhausted(fake_channels, function):
    opened, _ = fake_channels
    responses = function("req", "t", "/pkg.Svc/M", compression=_api.Compression.Gzip)
    (channel,) = opened
    assert channel.kwargs == {"compression": _api.Compression.Gzip}
    assert isinstance(responses, _api.Call)
    assert channel.closed == 0
    assert next(responses) == "a"
    assert channel.closed == 0
    assert list(responses) == ["b"]
    assert channel.closed == 1
    assert responses.code() is _api.StatusCode.OK


def test_experimental_streaming_closes_channel_on_error_and_cancel(fake_channels):
    opened, behaviour = fake_channels
    behaviour["fail_with"] = _api.RpcError("stream broke")
    responses = experimental.unary_stream("req", "t", "/pkg.Svc/M")
    with pytest.raises(_api.RpcError):
        list(responses)
    assert opened[0].closed == 1

    behaviour["fail_with"] = None
    responses = experimental.stream_stream(iter(()), "t", "/pkg.Svc/M")
    assert responses.cancel() is True
    assert opened[1].closed == 1


def test_experimental_insecure_and_credentials_are_exclusive(fake_channels):
    opened, _ = fake_channels
    with pytest.raises(ValueError):
        experimental.unary_unary(
            "r",
            "t",
            "/p.S/M",
            insecure=True,
            channel_credentials=experimental.insecure_channel_credentials(),
        )
    assert opened == []
    assert experimental.unary_unary(
        "r", "t", "/p.S/M", channel_credentials=experimental.insecure_channel_credentials()
    ) == ("response", "r")


def test_experimental_api_warning_is_a_warning():
    assert issubclass(experimental.ExperimentalApiWarning, Warning)


# ------------------------------------------------- comparison with grpcio ---


def test_surface_matches_grpcio():
    """Names, enum values, base classes, abstractness and signatures agree
    with the installed grpcio (imported only in a subprocess)."""
    out = run_python(
        """
        import inspect, json, sys
        from grpc_green import _api, _handlers, _utilities, experimental
        assert "grpc" not in sys.modules, "grpc_green imported grpcio"
        import grpc, grpc.experimental, grpc._utilities

        problems = []
        real_classes = {n for n in grpc.__all__ if inspect.isclass(getattr(grpc, n))}
        if set(_api.__all__) != real_classes:
            problems.append(("class names", sorted(set(_api.__all__) ^ real_classes)))

        for enum_name in ("StatusCode", "ChannelConnectivity", "Compression",
                          "LocalConnectionType"):
            ours = [(m.name, m.value) for m in getattr(_api, enum_name)]
            real = [(m.name, m.value) for m in getattr(grpc, enum_name)]
            if ours != real:
                problems.append((enum_name, ours, real))

        def bare(signature):
            # Parameter names, kinds, order and defaults; not annotations
            # (grpcio's abstract classes have none, grpc_green's have them).
            return signature.replace(
                parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
                return_annotation=signature.empty)

        def members(cls):
            result = {}
            for name, value in vars(cls).items():
                if name.startswith("__") and name not in ("__call__", "__enter__", "__exit__"):
                    continue
                if inspect.isfunction(value):
                    result[name] = str(bare(inspect.signature(value)))
            return result

        for name in sorted(real_classes & set(_api.__all__)):
            ours, real = getattr(_api, name), getattr(grpc, name)
            if [b.__name__ for b in ours.__bases__] != [b.__name__ for b in real.__bases__]:
                problems.append((name, "bases"))
            if members(ours) != members(real):
                problems.append((name, "methods", members(ours), members(real)))
            if set(getattr(ours, "__abstractmethods__", ())) != set(
                    getattr(real, "__abstractmethods__", ())):
                problems.append((name, "abstract"))

        for name in _handlers.__all__:
            ours, real = getattr(_handlers, name), getattr(grpc, name)
            if bare(inspect.signature(ours)) != bare(inspect.signature(real)):
                problems.append((name, "signature"))

        if _utilities.RpcMethodHandler._fields != grpc._utilities.RpcMethodHandler._fields:
            problems.append("RpcMethodHandler fields")

        for name in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            ours = inspect.signature(getattr(experimental, name)).parameters
            real = inspect.signature(getattr(grpc.experimental, name)).parameters
            if list(ours) != list(real):
                problems.append((name, "experimental parameters"))
            for p in ours:
                if p != "timeout" and ours[p].default != real[p].default:
                    problems.append((name, p, "default"))
        print(json.dumps(problems, default=str))
        """
    )
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_pure_modules_do_not_import_grpcio():
    run_python(
        """
        import sys
        import grpc_green._api, grpc_green._utilities, grpc_green._handlers
        import grpc_green.experimental, grpc_green.monkey, grpc_green._version
        leaked = [m for m in sys.modules if m == "grpc" or m.startswith("grpc.")]
        assert not leaked, leaked
        """
    )


# ------------------------------------------------------------ monkey patch --


PROTO = """\
syntax = "proto3";
package demo.v1;
message HelloRequest { string name = 1; }
message HelloReply { string message = 1; }
service Greeter {
  rpc SayHello (HelloRequest) returns (HelloReply);
  rpc SayHellos (HelloRequest) returns (stream HelloReply);
  rpc Collect (stream HelloRequest) returns (HelloReply);
  rpc Chat (stream HelloRequest) returns (stream HelloReply);
}
"""


@pytest.fixture(scope="module")
def generated_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    (out / "demo.proto").write_text(PROTO)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            str(out),
            "--python_out",
            str(out),
            "--grpc_python_out",
            str(out),
            str(out / "demo.proto"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "demo_pb2_grpc.py").exists()
    return out


def test_patch_grpc_basics():
    run_python(
        """
        import sys
        from grpc_green import monkey
        import grpc_green
        assert not monkey.is_grpc_patched()
        first = monkey.patch_grpc()
        assert first is grpc_green and monkey.is_grpc_patched()
        snapshot = (dict(sys.modules), list(sys.meta_path))
        assert monkey.patch_grpc() is first          # idempotent ...
        assert (dict(sys.modules), list(sys.meta_path)) == snapshot  # ... no-op

        import grpc
        import grpc._utilities
        import grpc.experimental
        from grpc._utilities import first_version_is_lower
        assert grpc is grpc_green
        assert grpc._utilities is grpc_green._utilities
        assert grpc.experimental is grpc_green.experimental
        assert first_version_is_lower is grpc_green._utilities.first_version_is_lower
        assert not first_version_is_lower(grpc.__version__, "1.85.1")

        # Other grpc_green modules alias to the same object, never a copy.
        import grpc._handlers, grpc.monkey
        assert grpc._handlers is sys.modules["grpc_green._handlers"]
        assert grpc.monkey is monkey
        try:
            import grpc.aio
        except ModuleNotFoundError:
            pass
        else:
            raise AssertionError("grpc.aio should not exist")
        for name, module in sys.modules.items():
            if name == "grpc" or name.startswith("grpc."):
                assert module.__name__.startswith("grpc_green"), name
        print("ok")
        """
    )


def test_patch_grpc_after_real_grpcio():
    run_python(
        """
        import sys, warnings
        import grpc as real_grpc
        import grpc.experimental
        assert "grpc._cython" in sys.modules
        from grpc_green import monkey
        import grpc_green
        assert not monkey.is_grpc_patched()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            monkey.patch_grpc()
        assert any(issubclass(w.category, RuntimeWarning) for w in caught), caught
        assert monkey.is_grpc_patched()
        import grpc
        assert grpc is grpc_green and real_grpc is not grpc_green
        assert sys.modules["grpc.experimental"] is grpc_green.experimental
        mixed = [n for n, m in sys.modules.items()
                 if n.startswith("grpc.") and not m.__name__.startswith("grpc_green")]
        assert not mixed, mixed
        # The old reference keeps pointing at grpcio: documented behaviour.
        assert real_grpc.RpcError is not grpc_green.RpcError
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            monkey.patch_grpc()  # second call: no-op, no new warning
        """
    )


def test_generated_code_runs_on_grpc_green(generated_dir):
    run_python(
        """
        import sys
        from grpc_green import monkey
        monkey.patch_grpc()
        import grpc_green
        import demo_pb2, demo_pb2_grpc

        assert demo_pb2_grpc.grpc is grpc_green
        assert demo_pb2_grpc.GRPC_VERSION == grpc_green.__version__

        class FakeChannel:
            def __init__(self):
                self.created = []
            def _make(kind):
                def make(self, method, request_serializer=None,
                         response_deserializer=None, _registered_method=False):
                    self.created.append((kind, method, _registered_method))
                    return (kind, method)
                return make
            unary_unary = _make("unary_unary")
            unary_stream = _make("unary_stream")
            stream_unary = _make("stream_unary")
            stream_stream = _make("stream_stream")

        channel = FakeChannel()
        stub = demo_pb2_grpc.GreeterStub(channel)
        assert channel.created == [
            ("unary_unary", "/demo.v1.Greeter/SayHello", True),
            ("unary_stream", "/demo.v1.Greeter/SayHellos", True),
            ("stream_unary", "/demo.v1.Greeter/Collect", True),
            ("stream_stream", "/demo.v1.Greeter/Chat", True),
        ], channel.created
        assert stub.SayHello == ("unary_unary", "/demo.v1.Greeter/SayHello")

        class FakeServer:
            generic = registered = None
            def add_generic_rpc_handlers(self, handlers):
                self.generic = tuple(handlers)
            def add_registered_method_handlers(self, service, handlers):
                self.registered = (service, handlers)

        server = FakeServer()
        servicer = demo_pb2_grpc.GreeterServicer()
        demo_pb2_grpc.add_GreeterServicer_to_server(servicer, server)
        (generic,) = server.generic
        assert isinstance(generic, grpc_green._utilities.DictionaryGenericHandler)
        assert isinstance(generic, grpc_green.GenericRpcHandler)
        assert generic.service_name() == "demo.v1.Greeter"
        service, handlers = server.registered
        assert service == "demo.v1.Greeter"
        assert sorted(handlers) == ["Chat", "Collect", "SayHello", "SayHellos"]
        flags = {
            "SayHello": (False, False), "SayHellos": (False, True),
            "Collect": (True, False), "Chat": (True, True),
        }
        class Details:
            invocation_metadata = ()
        for name, (req, resp) in flags.items():
            handler = handlers[name]
            assert isinstance(handler, grpc_green._utilities.RpcMethodHandler)
            assert (handler.request_streaming, handler.response_streaming) == (req, resp)
            assert handler.request_deserializer == demo_pb2.HelloRequest.FromString
            assert handler.response_serializer == demo_pb2.HelloReply.SerializeToString
            details = Details()
            details.method = "/demo.v1.Greeter/" + name
            assert generic.service(details) is handler

        # The servicer's default implementation uses grpc_green's StatusCode.
        class Context:
            def set_code(self, code):
                self.code = code
            def set_details(self, details):
                self.details = details
        context = Context()
        try:
            servicer.SayHello(demo_pb2.HelloRequest(), context)
        except NotImplementedError:
            pass
        assert context.code is grpc_green.StatusCode.UNIMPLEMENTED

        # The experimental class routes through grpc_green.experimental.
        seen = []
        def fake_unary_unary(*args, **kwargs):
            seen.append((args, kwargs))
            return "reply"
        grpc_green.experimental.unary_unary = fake_unary_unary
        assert demo_pb2_grpc.Greeter.SayHello(demo_pb2.HelloRequest(), "t") == "reply"
        assert seen[0][0][2] == "/demo.v1.Greeter/SayHello"
        assert seen[0][1] == {"_registered_method": True}

        leaked = [n for n, m in sys.modules.items()
                  if (n == "grpc" or n.startswith("grpc.") or n.startswith("grpc_tools"))
                  and not m.__name__.startswith("grpc_green")]
        assert not leaked, leaked
        print("ok")
        """,
        generated_dir,
        cwd=generated_dir,
    )


def test_monkey_module_api():
    assert set(monkey.__all__) == {"patch_grpc", "is_grpc_patched"}
    assert "before importing generated" in monkey.__doc__
    assert len(inspect.signature(monkey.patch_grpc).parameters) == 0
