"""Where serving lived before each target got a folder of its own: the paths written into users'
files (`deploy.serving.backend` in a Python-backend model.py, `deploy.serving.ray_app:build` in a
Serve config) and this package's names keep working; new code imports `deploy.triton` and
`deploy.ray_serve`."""

from ..triton.server import Endpoints, TritonServer, check_repository, server_files

__all__ = ["Endpoints", "TritonServer", "check_repository", "server_files"]
