"""Ray Serve applications: `resnet-deploy ray MODEL --app-dir DIR`.

    DIR/model.onnx (or model.plan with its manifest)   the artifact, as validated
    DIR/labels.txt                                     with --labels
    DIR/app.py                                         `serve run app:app` from DIR (development)
    DIR/serve_config.yaml                              `serve deploy serve_config.yaml --address http://HEAD:8265`
    DIR/rayservice.yaml                                KubeRay's RayService carrying the same application
    DIR/Dockerfile                                     the image that RayService runs: Ray, the toolkit, DIR
    DIR/README.md                                      the commands

The application is the toolkit's own (`deploy.serving.ray_app`, its builder named by
`import_path`), so every node needs the toolkit installed, as every Triton server needs it for the
Python backend; the config's `args` say which artifact it opens and how. `serve_config.yaml` names
the artifact by its absolute path here (a cluster on this machine, or machines that see DIR at
the same path); the RayService names it where the Dockerfile puts it in the image.
"""

from __future__ import annotations

import json
import math
import pprint
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.files import check_replaceable_folder, publish_folder
from toolkit.numbers import LIMITS, check_number
from toolkit.yaml_text import dump

from ..artifacts.labels import resolve_labels
from ..runtimes.choices import check_shipped_runtime
from ..shipping import kubernetes_names as names
from ..shipping.model import check_model_name, copy_artifact, read_shipped_model

CONFIG_NAME = "serve_config.yaml"
IMPORT_PATH = "deploy.ray_serve.replica:build"
OLD_IMPORT_PATHS = ("deploy.serving.ray_app:build",)  # what earlier releases wrote (a shim still answers it)
DEPLOYMENT = "ResNet"
RAY_VERSION = "2.60.0"  # the release the tests run; the image's Ray must be the cluster's
PROXY_LOCATIONS = ("EveryNode", "HeadOnly", "Disabled")
IMAGE_HOME = "/home/ray/app"  # where the Dockerfile puts the application in the image


@dataclass(frozen=True)
class RayOptions:
    """How Ray Serve runs the model: replicas and autoscaling, batching, resources per replica,
    what runs an ONNX file, and where Serve's HTTP proxy listens."""

    min_replicas: int = 1
    max_replicas: int = 2
    target_ongoing_requests: float = 2.0  # Ray's default
    upscale_delay_s: float = 30.0  # Ray's default
    downscale_delay_s: float = 600.0  # Ray's default
    look_back_s: float = 30.0  # Ray's default: the window the ongoing requests are averaged over
    batch_requests: int = 32  # requests a replica gathers into one run (serve.batch)
    batch_wait_ms: float = 5.0
    body_timeout_s: float = 30.0  # a request's whole body arrives within this (408 after)
    stalled_bodies: int = 4  # bodies arriving slowly that may keep a replica's slot (ray_app's docstring)
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    backend: str | None = None  # "openvino" runs an ONNX file in OpenVINO; None: the file's own
    precision: str = "fp32"  # with backend "openvino": fp32 or bf16
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    proxy_location: str = "EveryNode"  # "HeadOnly" where several nodes share one host
    ray_image: str | None = None  # None: Ray's image of RAY_VERSION for Python 3.11, its GPU build with GPUs

    def __post_init__(self) -> None:
        check_number(self.min_replicas, "--min-replicas", integer=True, low=0, high=10_000)
        check_number(self.max_replicas, "--max-replicas", integer=True, low=1, high=10_000)
        if self.max_replicas < self.min_replicas:
            raise ToolkitError(f"--max-replicas {self.max_replicas} is below --min-replicas {self.min_replicas}")
        check_number(self.target_ongoing_requests, "--target-ongoing-requests", low=0, low_open=True, high=10_000)
        check_number(self.upscale_delay_s, "--upscale-delay-s", limit="seconds")
        check_number(self.downscale_delay_s, "--downscale-delay-s", limit="seconds")
        check_number(self.look_back_s, "--look-back-s", low=1, high=LIMITS["seconds"][1])
        check_number(self.batch_requests, "--batch-requests", integer=True, low=1, high=4096)
        check_number(self.batch_wait_ms, "--batch-wait-ms", low=0, high=60_000)
        check_number(self.body_timeout_s, "--body-timeout-s", low=0.1, high=3600)
        check_number(self.stalled_bodies, "--stalled-bodies", integer=True, low=0, high=10_000)
        check_number(self.cpus_per_replica, "--cpus-per-replica", low=0, high=1024)
        check_number(self.gpus_per_replica, "--gpus-per-replica", low=0, high=64)
        check_number(self.http_port, "--http-port", integer=True, low=1, high=65535)
        names.host(self.http_host, "--http-host")
        if self.proxy_location not in PROXY_LOCATIONS:
            raise ToolkitError(
                f"--proxy-location must be one of {', '.join(PROXY_LOCATIONS)}, got {self.proxy_location!r}"
            )
        check_shipped_runtime(self.backend, self.precision, "a replica")
        if self.backend == "openvino" and self.gpus_per_replica:
            raise ToolkitError("OpenVINO runs on the CPU: --backend openvino takes no --gpus-per-replica")

    @property
    def device(self) -> str:
        return "cuda" if self.gpus_per_replica > 0 else "cpu"

    @property
    def image(self) -> str:
        """The Ray image the Dockerfile builds on: CUDA's build where replicas take GPUs."""
        return self.ray_image or f"rayproject/ray:{RAY_VERSION}-py311{'-gpu' if self.gpus_per_replica else ''}"


def serve_config(name: str, artifact: str, options: RayOptions, labels: str | None) -> dict:
    """Ray Serve's config file (`serve deploy`): the application, its args, its deployment's
    replicas, autoscaling, batching room and resources."""
    args = {
        "artifact": artifact,
        "name": name,
        "labels": labels,
        "backend": options.backend,
        "precision": options.precision,
        "device": options.device,
        "batch_requests": options.batch_requests,
        "batch_wait_ms": options.batch_wait_ms,
        "body_timeout_s": options.body_timeout_s,
        "stalled_bodies": options.stalled_bodies,
    }
    autoscaling = {
        "min_replicas": options.min_replicas,
        "initial_replicas": max(options.min_replicas, 1),
        "max_replicas": options.max_replicas,
        "target_ongoing_requests": options.target_ongoing_requests,
        "upscale_delay_s": options.upscale_delay_s,
        "downscale_delay_s": options.downscale_delay_s,
        "look_back_period_s": options.look_back_s,
    }
    deployment = {
        "name": DEPLOYMENT,
        # A replica takes more requests than its batch at once, or `serve.batch` never fills a batch;
        # and room for the slow bodies that keep their slots beside them (ray_app's docstring).
        "max_ongoing_requests": max(options.batch_requests, 2 * int(options.target_ongoing_requests) + 1)
        + options.stalled_bodies,
        "autoscaling_config": autoscaling,
        "ray_actor_options": {"num_cpus": options.cpus_per_replica, "num_gpus": options.gpus_per_replica},
    }
    application = {
        "name": name,
        "route_prefix": "/",
        "import_path": IMPORT_PATH,
        "args": {k: v for k, v in args.items() if v is not None},
        "deployments": [deployment],
    }
    return {
        "proxy_location": options.proxy_location,
        "http_options": {"host": options.http_host, "port": options.http_port},
        "applications": [application],
    }


def ray_service(name: str, config: dict, options: RayOptions) -> dict:
    """KubeRay's RayService (ray.io/v1) for the same application: `serveConfigV2` is the serve
    config (the artifact where the Dockerfile puts it), `rayClusterConfig` a head that runs no
    replicas and a worker group sized by the replica range, each worker the resources of one
    replica."""
    in_image = json.loads(json.dumps(config))
    args = in_image["applications"][0]["args"]
    args["artifact"] = f"{IMAGE_HOME}/{Path(args['artifact']).name}"
    if "labels" in args:
        args["labels"] = f"{IMAGE_HOME}/labels.txt"
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": ray_service_name(name)},
        "spec": {
            "serveConfigV2": dump({"applications": in_image["applications"]}),
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "enableInTreeAutoscaling": options.max_replicas > max(options.min_replicas, 1),
                "headGroupSpec": _head_group(image_name(name)),
                "workerGroupSpecs": [_worker_group(image_name(name), options)],
            },
        },
    }


def ray_service_name(name: str) -> str:
    """The RayService's name for an application `name` (letters, digits, '_', '.', '-'): lower case,
    '_' and '.' as '-', which KubeRay's Services must take (DNS-1035: a letter first, at most 50
    here, for the suffixes KubeRay adds); else one sentence asking for another --name."""
    derived = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not names.DNS_1035_LABEL.match(derived or "-") or len(derived) > 50:
        raise ToolkitError(
            f"the RayService's name, {derived[:60]!r} from --name (of {len(derived)} characters), must start with a letter "
            "and be at most 50 characters (KubeRay names Services after it): give another --name"
        )
    return derived


def _head_group(image: str) -> dict:
    ports = [(6379, "gcs-server"), (8265, "dashboard"), (10001, "client"), (8000, "serve")]
    container = {
        "name": "ray-head",
        "image": image,
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        "ports": [{"containerPort": port, "name": label} for port, label in ports],
    }
    # Replicas run on the workers (num-cpus 0 here).
    return {
        "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
        "template": {"spec": {"containers": [container]}},
    }


def _worker_group(image: str, options: RayOptions) -> dict:
    resources = {"cpu": _quantity(max(options.cpus_per_replica, 1)), "memory": "2Gi"}
    # a pod takes whole GPUs (an extended resource); Ray shares one among replicas of a fraction each
    gpus = {"nvidia.com/gpu": str(math.ceil(options.gpus_per_replica))} if options.gpus_per_replica else {}
    container = {"name": "ray-worker", "image": image, "resources": {"requests": resources, "limits": resources | gpus}}
    return {
        "groupName": "replicas",
        "replicas": max(options.min_replicas, 1),
        "minReplicas": max(options.min_replicas, 1),
        "maxReplicas": options.max_replicas,
        "rayStartParams": {},
        "template": {"spec": {"containers": [container]}},
    }


def image_name(name: str) -> str:
    """The image the Dockerfile builds and the RayService runs (image names are lower-case)."""
    return f"{name.lower()}-ray:latest"


def _quantity(value: float) -> str:
    """A Kubernetes quantity: "1", "0.5"."""
    return f"{value:g}"


def write_ray_app(
    model: str | Path,
    app_dir: str | Path,
    name: str | None = None,
    options: RayOptions = RayOptions(),
    *,
    labels: str | Path | Sequence[str] | None = None,
    force: bool = False,
) -> Path:
    """Write the application folder (see the module docstring) and return it. An existing folder
    is refused unless `force` and it is one this command wrote (it has a `serve_config.yaml`
    naming this toolkit's application)."""
    served = read_shipped_model(model)
    if name is not None and not name:
        raise ToolkitError("the application name is empty; give --name a name, or leave it out for the model's own")
    name = check_model_name(name or served.default_name)
    ray_service_name(name)  # before anything is written
    if served.platform == "tensorrt_plan" and options.gpus_per_replica <= 0:
        raise ToolkitError(f"{served.path.name} is a TensorRT engine, which runs on a GPU: give --gpus-per-replica 1")
    if served.platform == "tensorrt_plan" and options.backend == "openvino":
        raise ToolkitError(f"{served.path.name} is an engine: OpenVINO runs ONNX files")
    label_list = resolve_labels(labels, served.output.shape[-1])
    app_dir = Path(app_dir)
    inputs = [served.path] + ([labels] if isinstance(labels, (str, Path)) else [])
    check_replaceable_folder(app_dir, force=force, is_ours=_is_ray_app, what="Ray Serve application", inputs=inputs)
    final = app_dir.resolve()
    with publish_folder(app_dir, replace=_is_ray_app if app_dir.exists() else None) as folder:
        artifact = copy_artifact(served, folder)
        label_path = None
        if label_list is not None:
            (folder / "labels.txt").write_text("\n".join(label_list) + "\n", encoding="utf-8")
            label_path = str(final / "labels.txt")
        config = serve_config(name, str(final / artifact.name), options, label_path)
        (folder / CONFIG_NAME).write_text(
            "# Ray Serve config written by resnet-deploy ray: serve deploy serve_config.yaml --address http://HEAD:8265\n"
            + dump(config),
            encoding="utf-8",
        )
        (folder / "rayservice.yaml").write_text(dump(ray_service(name, config, options)), encoding="utf-8")
        (folder / "app.py").write_text(_app_py(config), encoding="utf-8")
        (folder / "Dockerfile").write_text(_dockerfile(name, options), encoding="utf-8")
        (folder / "README.md").write_text(_readme(name, options), encoding="utf-8")
    return app_dir


def _is_ray_app(folder: Path) -> bool:
    config = folder / CONFIG_NAME
    text = config.read_text(encoding="utf-8", errors="replace") if config.is_file() else ""
    return any(path in text for path in (IMPORT_PATH, *OLD_IMPORT_PATHS))


def _app_py(config: dict) -> str:
    application = config["applications"][0]
    args = dict(application["args"], artifact=Path(application["args"]["artifact"]).name)
    if "labels" in args:
        args["labels"] = "labels.txt"
    return f'''"""The Ray Serve application written by `resnet-deploy ray`: `serve run app:app` in this folder
serves the artifact beside this file (resnet-deploy-toolkit must be installed; Python
{sys.version_info.major}.{sys.version_info.minor} wrote it). `serve deploy serve_config.yaml` runs the same application
on a cluster, with the replicas and autoscaling that config gives."""

from pathlib import Path

from deploy.ray_serve.replica import build

HERE = Path(__file__).resolve().parent
ARGS = {pprint.pformat(args, sort_dicts=False)}
ARGS["artifact"] = str(HERE / ARGS["artifact"])
if "labels" in ARGS:
    ARGS["labels"] = str(HERE / ARGS["labels"])
app = build(ARGS)
'''


def _dockerfile(name: str, options: RayOptions) -> str:
    extras = ",".join(
        ["gpu" if options.gpus_per_replica else "cpu", "images"]
        + (["openvino"] if options.backend == "openvino" else [])
    )
    return f"""# The image rayservice.yaml runs ({image_name(name)}): Ray {RAY_VERSION}, the toolkit, this folder.
# Build it from a folder that holds this application as app/ and the toolkit as resnet-deploy-toolkit/:
#   docker build -t {image_name(name)} -f app/Dockerfile .
FROM {options.image}
COPY --chown=ray resnet-deploy-toolkit /home/ray/resnet-deploy-toolkit
RUN pip install --no-cache-dir '/home/ray/resnet-deploy-toolkit[{extras}]'
COPY --chown=ray app {IMAGE_HOME}
"""


def _readme(name: str, options: RayOptions) -> str:
    return f"""# {name} on Ray Serve

Written by `resnet-deploy ray`. Every node of the cluster needs resnet-deploy-toolkit installed
(`pip install '.[ray,cpu,images]'` from a copy of it) and this folder at the same path.

On one machine, for development: `serve run app:app` in this folder.

On a cluster:

    ray start --head --port 6379 --dashboard-host 0.0.0.0      # on the head machine
    ray start --address HEAD:6379                              # on each other machine
    serve deploy {CONFIG_NAME} --address http://HEAD:8265       # from anywhere that reaches the head

Then `POST http://HOST:{options.http_port}/v2/models/{name}/infer` (Open Inference Protocol, JSON
tensors) or `POST http://HOST:{options.http_port}/v2/models/{name}/classify` (one JPEG or PNG as the
body). Replicas: {options.min_replicas} to {options.max_replicas}, scaled on {options.target_ongoing_requests:g}
ongoing requests each.

On Kubernetes with KubeRay: build the image (Dockerfile), then `kubectl apply -f rayservice.yaml`.{_gpu_note(options)}
"""


def _gpu_note(options: RayOptions) -> str:
    fraction = options.gpus_per_replica
    if not fraction or float(fraction).is_integer():
        return ""
    return (
        f" A replica takes {fraction:g} GPU; a worker pod takes whole GPUs ({math.ceil(fraction)}), and Ray places "
        f"replicas on them by their fractions."
    )
