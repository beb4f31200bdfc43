"""Build hook of the kvtier Python SDK: generates the gRPC stubs at build time.

The stubs (kvtier/v1/kvtier_pb2.py, kvtier_pb2_grpc.py, kvtier_pb2.pyi) are generated from
kvtier/v1/kvtier.proto with the grpcio-tools that pyproject.toml pins for the build
(GRPCIO_TOOLS below), and are never committed. The proto is taken from $KVTIER_PROTO_DIR,
else from the copy an sdist ships in its proto/ folder, else from proto/ of this repository
(two directories up); `python -m build --sdist` copies it into the sdist, so an sdist builds
anywhere.

The generated code checks the runtimes it is imported with (protobuf >= its gencode version,
grpcio >= its generator's version), so the runtime requirements are fixed here to what
GRPCIO_TOOLS generates, and the build fails when the generated code would need more (a build
without isolation that uses another grpcio-tools).
"""

import os
import re
import shutil
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_FILE = "kvtier/v1/kvtier.proto"
GENERATED = ("kvtier_pb2.py", "kvtier_pb2_grpc.py", "kvtier_pb2.pyi")

# Keep in step with [build-system] requires in pyproject.toml. grpcio-tools 1.66.2 has
# wheels for CPython 3.10-3.13 and generates protobuf 5.27.2 gencode and grpc 1.66.2 stubs.
GRPCIO_TOOLS = "1.66.2"
PROTOBUF_GENCODE = (5, 27, 2)
GRPCIO_MIN = (1, 66, 2)
# protobuf runtimes refuse only gencode newer than themselves: 5.27.2 up to 7.x run these
# stubs (the SDK's tests pass on 5.27.2, 6.x and 7.x); 8 stays out until it is tried.
INSTALL_REQUIRES = [
    "grpcio>=" + ".".join(map(str, GRPCIO_MIN)),
    "protobuf>=" + ".".join(map(str, PROTOBUF_GENCODE)) + ",<8",
    "numpy>=1.22",
]


def _proto_root():
    candidates = [
        os.environ.get("KVTIER_PROTO_DIR"),
        os.path.join(HERE, "proto"),  # the copy an sdist ships
        os.path.join(HERE, "..", "..", "proto"),  # the repository
    ]
    for root in candidates:
        if root and os.path.isfile(os.path.join(root, PROTO_FILE)):
            return os.path.abspath(root)
    raise RuntimeError(
        f"cannot find {PROTO_FILE}: build from the kvtier repository "
        "(pip install ./client/python), from its sdist, or set KVTIER_PROTO_DIR to its "
        "proto/ directory")


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


def _check_generated(generated_dir):
    """RuntimeError unless the generated code runs with INSTALL_REQUIRES' lowest versions."""
    with open(os.path.join(generated_dir, "kvtier_pb2.py"), encoding="utf-8") as f:
        pb2 = f.read()
    with open(os.path.join(generated_dir, "kvtier_pb2_grpc.py"), encoding="utf-8") as f:
        grpc_py = f.read()
    hint = (f"; build with grpcio-tools=={GRPCIO_TOOLS} (pyproject.toml's build requirement, "
            "or install it before `pip install --no-build-isolation`)")
    m = re.search(r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*"
                  r"(\d+),\s*(\d+),\s*(\d+)", pb2)
    gencode = tuple(int(x) for x in m.groups()) if m else None
    if gencode is None or gencode[0] != PROTOBUF_GENCODE[0] or gencode > PROTOBUF_GENCODE:
        raise RuntimeError(f"the generated kvtier_pb2.py needs protobuf {gencode}, not "
                           f"{INSTALL_REQUIRES[1]}" + hint)
    m = re.search(r"GRPC_GENERATED_VERSION\s*=\s*'(\d+)\.(\d+)\.(\d+)", grpc_py)
    generated = tuple(int(x) for x in m.groups()) if m else None
    if generated is None or generated > GRPCIO_MIN:
        raise RuntimeError(f"the generated kvtier_pb2_grpc.py needs grpcio {generated}, not "
                           f"{INSTALL_REQUIRES[0]}" + hint)


_TMP = tempfile.mkdtemp(prefix="kvtier-stubs-")
_GENERATED_DIR = _generate(_TMP)
_check_generated(_GENERATED_DIR)


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


class SdistWithProto(sdist):
    """sdist that ships proto/kvtier/v1/kvtier.proto (which lives outside this folder in the
    repository), so that the sdist builds without the repository."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        target = os.path.join(base_dir, "proto", PROTO_FILE)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.exists(target):  # a hard link to the source: never write through it
            os.remove(target)
        shutil.copyfile(os.path.join(_proto_root(), PROTO_FILE), target)


try:
    setup(install_requires=INSTALL_REQUIRES,
          cmdclass={"build_py": BuildPyWithStubs, "sdist": SdistWithProto})
finally:
    shutil.rmtree(_TMP, ignore_errors=True)
