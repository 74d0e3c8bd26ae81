"""The CUDA a runtime needs without PyTorch, from NVIDIA's own libraries through ctypes (as
Polygraphy does): whether a GPU is here and what it is (the driver API, `libcuda`), and device
memory, copies and a stream (the runtime API, `libcudart`) for TensorRT on a board that has no
PyTorch. Where PyTorch is already imported, `gpu` asks it instead, and the device runtimes that
time copies apart with CUDA events keep using its tensors.

Every call's status is checked: a failure is a `ToolkitError` naming the call and CUDA's own
name for the error (`cudaGetErrorName`, `cuGetErrorName`). Nothing here can run on a machine
without an NVIDIA driver; there the probes answer "no GPU" (`device_count() == 0`) and the
memory classes refuse with one sentence.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import sys

import numpy as np

from toolkit.errors import MissingDependencyError, ToolkitError

# cuda.h: CUdevice_attribute
COMPUTE_CAPABILITY_MAJOR, COMPUTE_CAPABILITY_MINOR = 75, 76
# cuda_runtime_api.h: cudaMemcpyKind
HOST_TO_DEVICE, DEVICE_TO_HOST = 1, 2


def _load(names: list[str]) -> ctypes.CDLL | None:
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


@functools.cache
def driver() -> ctypes.CDLL | None:
    """The CUDA driver library (installed with the NVIDIA driver), or None."""
    return _load(["libcuda.so.1", "libcuda.so"])


def _runtime_candidates() -> list[str]:
    """libcudart by its sonames, then inside NVIDIA's wheels (nvidia-cuda-runtime-cu12/13, which
    tensorrt and onnxruntime-gpu install) and the usual CUDA toolkit folders."""
    names = [f"libcudart.so.{major}" for major in (13, 12, 11)] + ["libcudart.so"]
    for folder in sys.path:
        names += sorted(glob.glob(os.path.join(folder, "nvidia", "cu*", "lib", "libcudart.so*")), reverse=True)
        names += sorted(glob.glob(os.path.join(folder, "nvidia", "cuda_runtime", "lib", "libcudart.so*")), reverse=True)
    return names + sorted(glob.glob("/usr/local/cuda*/lib64/libcudart.so*"), reverse=True)


@functools.cache
def runtime() -> ctypes.CDLL | None:
    """The CUDA runtime library, or None."""
    return _load(_runtime_candidates())


def _driver_check(status: int, call: str) -> None:
    if status != 0:
        name = ctypes.c_char_p()
        driver().cuGetErrorName(status, ctypes.byref(name))
        raise ToolkitError(f"CUDA's {call} failed: {(name.value or b'error %d' % status).decode()}")


def _check(status: int, call: str) -> None:
    if status != 0:
        library = runtime()
        library.cudaGetErrorName.restype = ctypes.c_char_p
        raise ToolkitError(f"CUDA's {call} failed: {library.cudaGetErrorName(status).decode()}")


@functools.cache
def device_count() -> int:
    """NVIDIA GPUs the driver shows this process (CUDA_VISIBLE_DEVICES applies); 0 without a driver."""
    library = driver()
    if library is None or library.cuInit(0) != 0:
        return 0
    count = ctypes.c_int(0)
    return count.value if library.cuDeviceGetCount(ctypes.byref(count)) == 0 else 0


def describe_device(index: int = 0) -> tuple[str, str, str]:
    """(name, compute capability "9.0", driver's CUDA version "13.0") of GPU `index`, from the driver."""
    library = driver()
    if device_count() <= index:
        raise MissingDependencyError("no NVIDIA GPU is visible here (the CUDA driver reports none)")
    device = ctypes.c_int()
    _driver_check(library.cuDeviceGet(ctypes.byref(device), index), "cuDeviceGet")
    name = ctypes.create_string_buffer(256)
    _driver_check(library.cuDeviceGetName(name, 256, device), "cuDeviceGetName")
    major, minor, version = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    _driver_check(
        library.cuDeviceGetAttribute(ctypes.byref(major), COMPUTE_CAPABILITY_MAJOR, device), "cuDeviceGetAttribute"
    )
    _driver_check(
        library.cuDeviceGetAttribute(ctypes.byref(minor), COMPUTE_CAPABILITY_MINOR, device), "cuDeviceGetAttribute"
    )
    _driver_check(library.cuDriverGetVersion(ctypes.byref(version)), "cuDriverGetVersion")
    cuda = f"{version.value // 1000}.{version.value % 1000 // 10}"
    return name.value.decode(), f"{major.value}.{minor.value}", cuda


def runtime_version() -> str:
    """The CUDA runtime library's version ("12.8"), or "" when there is none."""
    library = runtime()
    version = ctypes.c_int()
    if library is None or library.cudaRuntimeGetVersion(ctypes.byref(version)) != 0:
        return ""
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def _require_runtime() -> ctypes.CDLL:
    library = runtime()
    if library is None:
        raise MissingDependencyError(
            "the CUDA runtime library (libcudart) is not here: install NVIDIA's nvidia-cuda-runtime wheel "
            "(tensorrt and onnxruntime-gpu bring one) or the CUDA toolkit"
        )
    return library


def set_device(index: int) -> None:
    _check(_require_runtime().cudaSetDevice(index), "cudaSetDevice")


class Stream:
    """A CUDA stream (`handle` is what TensorRT's execute_async_v3 takes)."""

    def __init__(self) -> None:
        self._library = _require_runtime()
        handle = ctypes.c_void_p()
        _check(self._library.cudaStreamCreate(ctypes.byref(handle)), "cudaStreamCreate")
        self.handle = handle.value or 0

    def synchronize(self) -> None:
        _check(self._library.cudaStreamSynchronize(ctypes.c_void_p(self.handle)), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.handle:
            self._library.cudaStreamDestroy(ctypes.c_void_p(self.handle))
            self.handle = 0


class DeviceArray:
    """Device memory for an array of `shape` and `dtype` (the largest batch a runtime takes; a call
    uses its first rows), with copies from and to host arrays queued on a `Stream`."""

    def __init__(self, shape: tuple[int, ...], dtype) -> None:
        self._library = _require_runtime()
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        pointer = ctypes.c_void_p()
        _check(self._library.cudaMalloc(ctypes.byref(pointer), ctypes.c_size_t(self.nbytes)), "cudaMalloc")
        self.ptr = pointer.value or 0

    def copy_from(self, host: np.ndarray, stream: Stream) -> None:
        """Queue the copy of `host` (C-ordered, this dtype, at most this size) into the first rows."""
        host = np.ascontiguousarray(host, dtype=self.dtype)
        status = self._library.cudaMemcpyAsync(
            ctypes.c_void_p(self.ptr),
            host.ctypes.data_as(ctypes.c_void_p),
            ctypes.c_size_t(host.nbytes),
            HOST_TO_DEVICE,
            ctypes.c_void_p(stream.handle),
        )
        _check(status, "cudaMemcpyAsync")
        self._pending = host  # kept alive until the stream has read it

    def copy_to(self, host: np.ndarray, stream: Stream) -> None:
        """Queue the copy of the first `host.size` elements into `host` (valid after the stream syncs)."""
        status = self._library.cudaMemcpyAsync(
            host.ctypes.data_as(ctypes.c_void_p),
            ctypes.c_void_p(self.ptr),
            ctypes.c_size_t(host.nbytes),
            DEVICE_TO_HOST,
            ctypes.c_void_p(stream.handle),
        )
        _check(status, "cudaMemcpyAsync")

    def close(self) -> None:
        if self.ptr:
            self._library.cudaFree(ctypes.c_void_p(self.ptr))
            self.ptr = 0
