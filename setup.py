"""Build scalegmn_ext: the Python package plus the compiled op library `scalegmn_ext._C`.

Install with the torch you will run against already installed:

    pip install --no-build-isolation .        (or -e . for development)

Switches (environment variables):
    FORCE_CUDA=1       build the CUDA kernels even without a visible GPU (needs nvcc, CUDA torch)
    FORCE_ONLY_CPU=1   never build the CUDA kernels
    DEBUG=1            -O0 -g
    NVCC_FLAGS="..."   extra nvcc flags
    MAX_JOBS=N         parallel compile jobs (ninja)
"""

import glob
import os
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:  # pragma: no cover - build-time message
    sys.exit(
        "scalegmn_ext builds against the installed torch: install torch first "
        "(e.g. `pip install torch==2.13.0`), then `pip install --no-build-isolation .`"
    )

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str) -> bool:
    return os.getenv(name, "0").lower() in ("1", "true", "yes", "on")


def _want_cuda() -> bool:
    if _flag("FORCE_ONLY_CPU"):
        return False
    has_toolkit = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    if _flag("FORCE_CUDA"):
        if not has_toolkit:
            sys.exit(
                "FORCE_CUDA=1 needs a CUDA build of torch and a CUDA toolkit "
                f"(torch.version.cuda={torch.version.cuda}, CUDA_HOME={cpp_extension.CUDA_HOME})"
            )
        return True
    return has_toolkit and torch.cuda.is_available()


def get_extensions():
    with_cuda = _want_cuda()
    debug = _flag("DEBUG")
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/ops/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    cxx = ["-O0", "-g"] if debug else ["-O3"]
    cxx += ["-fopenmp"]  # without it at::parallel_for silently runs on one thread
    nvcc = (["-O0", "-g", "-G"] if debug else ["-O3", "-lineinfo"]) + ["--expt-relaxed-constexpr"]
    nvcc += os.getenv("NVCC_FLAGS", "").split()
    macros = [("Py_LIMITED_API", "0x030A0000")]
    ext_cls = cpp_extension.CppExtension
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        macros.append(("WITH_CUDA", None))
        ext_cls = cpp_extension.CUDAExtension
        if not os.getenv("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            # Without a GPU torch cannot infer the arch list; default to Hopper (H100/H200).
            os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
    print(
        f"[scalegmn_ext] building {'CPU+CUDA' if with_cuda else 'CPU-only'} extension "
        f"(torch {torch.__version__}, CUDA_HOME={cpp_extension.CUDA_HOME}, "
        f"TORCH_CUDA_ARCH_LIST={os.getenv('TORCH_CUDA_ARCH_LIST')}, debug={debug})",
        flush=True,
    )
    return [
        ext_cls(
            "scalegmn_ext._C",
            sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=macros,
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=["-fopenmp"],
            py_limited_api=True,
        )
    ]


setup(
    name="scalegmn_ext",
    version="0.1.0",
    description="Symmetry-aware learning on neural-network weights: ScaleGMN ops as C++/CUDA torch ops",
    packages=find_packages(include=["scalegmn_ext", "scalegmn_ext.*"]),
    python_requires=">=3.10",
    # pyyaml: reading the public ScaleGMN YAML configurations (scalegmn_ext.models.public)
    install_requires=["torch>=2.6", "numpy", "scipy", "pyyaml"],
    # plots: the PNG figures of the zoo commands (INR preview, CNN accuracy histogram)
    extras_require={"test": ["pytest"], "data": ["safetensors", "tqdm"], "plots": ["matplotlib>=3.6"]},
    ext_modules=get_extensions(),
    cmdclass={"build_ext": cpp_extension.BuildExtension},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
    entry_points={"console_scripts": ["scalegmn-ext=scalegmn_ext.cli:main"]},
    zip_safe=False,
)
