"""Build hook of the kvtier Python SDK: generates the gRPC stubs at build time.

The stubs (kvtier/v1/kvtier_pb2.py, kvtier_pb2_grpc.py, kvtier_pb2.pyi) are generated from
proto/kvtier/v1/kvtier.proto of this repository (two directories up, or $KVTIER_PROTO_DIR)
with the grpcio-tools of the build environment, and are never committed. The generated code
checks the protobuf and grpcio runtimes it is imported with, so the runtime requirements are
read back from what was generated: protobuf >= the generator's version within its major
version, grpcio >= the generator's grpc version.
"""

import os
import re
import shutil
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_FILE = "kvtier/v1/kvtier.proto"
GENERATED = ("kvtier_pb2.py", "kvtier_pb2_grpc.py", "kvtier_pb2.pyi")


def _proto_root():
    candidates = [os.environ.get("KVTIER_PROTO_DIR"), os.path.join(HERE, "..", "..", "proto")]
    for root in candidates:
        if root and os.path.isfile(os.path.join(root, PROTO_FILE)):
            return os.path.abspath(root)
    raise RuntimeError(
        f"cannot find {PROTO_FILE}: build from the kvtier repository "
        "(pip install ./client/python) or set KVTIER_PROTO_DIR to its proto/ directory")


def _generate(out_dir):
    """Runs grpc_tools.protoc on kvtier.proto into out_dir/kvtier/v1/."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{_proto_root()}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        PROTO_FILE,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("grpc_tools.protoc failed on " + PROTO_FILE)
    return os.path.join(out_dir, "kvtier", "v1")


def _runtime_requirements(generated_dir):
    """protobuf and grpcio requirements that match the generated code."""
    with open(os.path.join(generated_dir, "kvtier_pb2.py"), encoding="utf-8") as f:
        pb2 = f.read()
    with open(os.path.join(generated_dir, "kvtier_pb2_grpc.py"), encoding="utf-8") as f:
        grpc_py = f.read()
    # protobuf >= 5.26 gencode: ValidateProtobufRuntimeVersion(Domain.PUBLIC, MAJOR, MINOR,
    # PATCH, ...) refuses an older runtime or another major version (one newer only warns).
    m = re.search(r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*"
                  r"(\d+),\s*(\d+),\s*(\d+)", pb2)
    if m:
        major, minor, patch = (int(x) for x in m.groups())
        protobuf = f"protobuf>={major}.{minor}.{patch},<{major + 1}"
    else:  # older generators: the runtime of the build environment's major version
        from google.protobuf import __version__ as pb_version

        major = int(pb_version.split(".")[0])
        protobuf = f"protobuf>={pb_version},<{major + 1}"
    m = re.search(r"GRPC_GENERATED_VERSION\s*=\s*'([0-9.]+)'", grpc_py)
    if m:
        grpcio = f"grpcio>={m.group(1)}"
    else:
        import grpc_tools

        grpcio = f"grpcio>={getattr(grpc_tools, '__version__', '1.62.0')}"
    return [grpcio, protobuf, "numpy>=1.22"]


_TMP = tempfile.mkdtemp(prefix="kvtier-stubs-")
_GENERATED_DIR = _generate(_TMP)
INSTALL_REQUIRES = _runtime_requirements(_GENERATED_DIR)


class BuildPyWithStubs(build_py):
    """build_py that adds the generated stubs to kvtier/v1 (in the build tree; in the source
    tree for an editable install, where .gitignore keeps them out of git)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            target = os.path.join(HERE, "kvtier", "v1")
        else:
            target = os.path.join(self.build_lib, "kvtier", "v1")
        os.makedirs(target, exist_ok=True)
        for name in GENERATED:
            shutil.copyfile(os.path.join(_GENERATED_DIR, name), os.path.join(target, name))

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        target = os.path.join(self.build_lib, "kvtier", "v1")
        return outputs + [os.path.join(target, name) for name in GENERATED]


try:
    setup(install_requires=INSTALL_REQUIRES, cmdclass={"build_py": BuildPyWithStubs})
finally:
    shutil.rmtree(_TMP, ignore_errors=True)
