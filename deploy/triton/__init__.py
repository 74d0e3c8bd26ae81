"""Triton, the deployment target: model repositories (`repository`: `write_triton_model`,
`TritonOptions`; each folder's marker and SLA records in `records`), the Python-backend models
those repositories import (`python_model`), Triton's config text read without tritonclient
(`config_text`), its admin APIs closed (`api`), the server `nvidia-pytriton` ships started,
watched and restarted (`server`, `supervision`), and the Kubernetes manifests of NVIDIA's
container serving a repository (`kubernetes`)."""

from .repository import TritonOptions, write_triton_model
from .server import Endpoints, TritonServer, check_repository, server_files

__all__ = ["Endpoints", "TritonOptions", "TritonServer", "check_repository", "server_files", "write_triton_model"]
