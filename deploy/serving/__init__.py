"""Serving for real: the Triton Python-backend models a `--triton-backend python` repository runs
(`backend`) and the Triton server this toolkit starts on a repository (`server`: the one PyPI's
`nvidia-pytriton` ships). `resnet-deploy serve` is the command; the load generator is in
`benchmark.serving`."""

from .server import Endpoints, TritonServer, check_repository, server_files

__all__ = ["Endpoints", "TritonServer", "check_repository", "server_files"]
