"""The C++ extension grpc_green._core: its sources, flags and libraries.

The package's metadata is in pyproject.toml.
"""

import glob
import os
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """An in-place build replaces grpc_green/_core*.so with a new file instead
    of rewriting the old one: processes still running with the old library
    mapped (a benchmark, a test server) keep it intact. The sources compile
    in parallel, one job per CPU, unless --parallel says otherwise."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def copy_file(self, infile, outfile, *args, **kwargs):
        if os.path.exists(outfile) and outfile.endswith(".so"):
            os.unlink(outfile)
        return super().copy_file(infile, outfile, *args, **kwargs)


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

# The same warnings as `make` (WARNINGS in the Makefile). -Werror only where
# the Makefile asks for it (GRPC_GREEN_WERROR=1: development and CI builds),
# never for someone building from source with another compiler.
compile_args = ["-std=c++17", "-Wall", "-Wextra", "-Wconversion", "-fvisibility=hidden"]
if os.environ.get("GRPC_GREEN_WERROR") == "1":
    compile_args.append("-Werror")
link_args = []
if debug or asan:
    compile_args += ["-O0", "-g3", "-UNDEBUG"]
else:
    compile_args += ["-O2", "-DNDEBUG"]
if asan:
    # Heap checks only: greenlet moves C stacks behind the sanitizer's back,
    # so stack redzones would go stale and report false errors.
    compile_args += ["-fsanitize=address", "-fno-omit-frame-pointer", "--param=asan-stack=0"]
    link_args += ["-fsanitize=address"]

# libev ships no pkg-config file on Debian; it lives in the default paths.
libs = pkg_config("--libs-only-l", "libnghttp2", ["-lnghttp2"]) + ["-lev"]
cflags = pkg_config("--cflags", "libnghttp2", [])

# csrc/engine: the engine, without Python; csrc: the hub and the bindings.
sources = sorted(glob.glob("csrc/engine/*.cpp") + glob.glob("csrc/*.cpp"))


def nghttp2_header_declares(symbol):
    """Debian backports API into 1.52 (the rapid-reset limit): look, don't guess."""
    for inc in [f[2:] for f in cflags if f.startswith("-I")] + [
        "/usr/include",
        "/usr/local/include",
    ]:
        path = os.path.join(inc, "nghttp2", "nghttp2.h")
        if os.path.exists(path):
            with open(path) as f:
                return symbol in f.read()
    return False


defines = []
if nghttp2_header_declares("nghttp2_option_set_stream_reset_rate_limit"):
    defines.append(("GRPC_GREEN_HAVE_STREAM_RESET_RATE_LIMIT", "1"))

core = Extension(
    "grpc_green._core",
    sources=sources,
    include_dirs=["csrc", "csrc/engine", greenlet_include()],
    extra_compile_args=compile_args + cflags,
    extra_link_args=link_args,
    libraries=[lib[2:] for lib in libs],
    define_macros=defines,
    language="c++",
    depends=glob.glob("csrc/*.hpp") + glob.glob("csrc/engine/*.hpp"),
)

setup(ext_modules=[core], cmdclass={"build_ext": BuildExt})
