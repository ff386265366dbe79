"""Build script for grpc_green and its C++ engine, grpc_green._core."""
import glob
import os
import subprocess
import sysconfig

from setuptools import Extension, setup


def pkg_config(flag, package, fallback):
    try:
        out = subprocess.check_output(["pkg-config", flag, package], stderr=subprocess.DEVNULL)
        return out.decode().split()
    except (OSError, subprocess.CalledProcessError):
        return fallback


def greenlet_include():
    import greenlet

    return os.path.dirname(greenlet.__file__)


debug = os.environ.get("GRPC_GREEN_DEBUG") == "1"
asan = os.environ.get("GRPC_GREEN_ASAN") == "1"

compile_args = ["-std=c++17", "-Wall", "-Werror", "-fvisibility=hidden"]
link_args = []
if debug or asan:
    compile_args += ["-O0", "-g3", "-UNDEBUG"]
else:
    compile_args += ["-O2", "-DNDEBUG"]
if asan:
    compile_args += ["-fsanitize=address", "-fno-omit-frame-pointer"]
    link_args += ["-fsanitize=address"]

# libev ships no pkg-config file on Debian; it lives in the default paths.
libs = pkg_config("--libs-only-l", "libnghttp2", ["-lnghttp2"]) + ["-lev"]
cflags = pkg_config("--cflags", "libnghttp2", [])

sources = sorted(p for p in glob.glob("csrc/*.cpp"))

core = Extension(
    "grpc_green._core",
    sources=sources,
    include_dirs=["csrc", greenlet_include()],
    extra_compile_args=compile_args + cflags,
    extra_link_args=link_args,
    libraries=[l[2:] for l in libs],
    language="c++",
    depends=glob.glob("csrc/*.hpp"),
)

setup(
    name="grpc_green",
    version="0.1.0",
    description="gRPC for greenlet and gevent applications, on nghttp2 and libev",
    packages=["grpc_green"],
    ext_modules=[core],
    python_requires=">=3.9",
    install_requires=["greenlet>=3.0", "protobuf>=4.21"],
)
