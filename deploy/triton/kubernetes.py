"""Kubernetes manifests for NVIDIA's Triton container serving a repository `resnet-deploy triton`
wrote: `resnet-deploy kubernetes REPOSITORY -o DIR`.

    DIR/triton.yaml                     Deployment, Service (HTTP, gRPC), Service (metrics), HorizontalPodAutoscaler
    DIR/prometheus-adapter-values.yaml  the rule that turns Triton's counters into the HPA's metric
    DIR/inferenceservice.yaml           KServe's InferenceService: the same repository, KServe's way
    DIR/README.md                       the commands

The Deployment runs `tritonserver` from NVIDIA's image on the repository (a PersistentVolumeClaim
mounted read-only, or an object-store URI Triton reads itself), with `nvidia.com/gpu` limits,
readiness/liveness on Triton's `/v2/health/ready` and `/v2/health/live`, and Triton's model
repository, shared-memory, logging and trace APIs closed to every client (`deploy.triton.api`). The autoscaler scales
on the time a request waits in Triton's queue: the rate of `nv_inference_queue_duration_us` over
the rate of `nv_inference_request_success`, summed per pod, i.e. the queue time per request
weighted by each model's traffic (NVIDIA's chart divides per-model deltas and averages those, on
the removed `autoscaling/v2beta2`; Triton issue 8979 reports that it under-reports).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.files import check_replaceable_folder, publish_folder
from toolkit.numbers import check_number
from toolkit.yaml_text import dump, dump_all

from ..artifacts.manifest import read_manifest
from ..shipping import kubernetes_names as names
from .api import closed_api_arguments
from .config_text import instance_kinds, repository_configs, triton_backend

DEFAULT_IMAGE = "nvcr.io/nvidia/tritonserver:26.06-py3"
QUEUE_METRIC = "nv_inference_queue_duration_us"
SUCCESS_METRIC = "nv_inference_request_success"
HPA_METRIC = "triton_queue_time_per_request_us"
METRICS = (QUEUE_METRIC, SUCCESS_METRIC)  # what the rule reads from Triton's /metrics
MANIFEST = "triton.yaml"
TRITON_USER = 1000  # NVIDIA's Triton images: the user triton-server, uid and gid 1000 (their build checks it)


@dataclass(frozen=True)
class KubernetesOptions:
    """Where the repository lives, the image, GPUs per pod and the autoscaler's range and target."""

    name: str | None = None  # None: the model's name (the repository folder's, for several), as a DNS label
    storage_uri: str | None = None  # pvc://CLAIM[/PATH], s3://, gs://, as://; None: pvc://NAME-models
    image: str | None = None  # None: DEFAULT_IMAGE, unless engines need the release that built them
    gpus: int = 1
    min_replicas: int = 1
    max_replicas: int = 4
    queue_time_us: int = 50_000
    namespace: str | None = None
    cpu_request: str = "2"
    memory_request: str = "4Gi"
    cpu_limit: str = "4"
    memory_limit: str = "8Gi"

    def __post_init__(self) -> None:
        check_number(self.gpus, "--gpus", integer=True, low=0, high=64)
        check_number(self.min_replicas, "--min-replicas", integer=True, low=1, high=10_000)
        check_number(self.max_replicas, "--max-replicas", integer=True, low=1, high=10_000)
        if self.max_replicas < self.min_replicas:
            raise ToolkitError(f"--max-replicas {self.max_replicas} is below --min-replicas {self.min_replicas}")
        check_number(self.queue_time_us, "--queue-time-us", integer=True, low=1, high=3_600_000_000)
        if self.storage_uri is not None:
            _check_storage(self.storage_uri)
        if self.image is not None and (not self.image or not self.image.isprintable() or " " in self.image):
            raise ToolkitError(f"--image must name an image, got {self.image!r}")
        if self.name is not None:
            names.object_name(self.name, "--name", longest=50)
        if self.namespace is not None:
            names.namespace(self.namespace)
        for option, value in (("--cpu-request", self.cpu_request), ("--memory-request", self.memory_request),
                              ("--cpu-limit", self.cpu_limit), ("--memory-limit", self.memory_limit)):  # fmt: skip
            names.quantity(value, option)


def _check_storage(uri: str) -> None:
    """pvc://CLAIM[/PATH] (a claim's name, a path inside it), or an object store's URI Triton reads."""
    scheme, found, rest = uri.partition("://")
    if not found or scheme not in ("pvc", "s3", "gs", "as") or not rest or not uri.isprintable() or " " in uri:
        raise ToolkitError(
            f"--storage-uri must be pvc://CLAIM[/PATH], s3://, gs:// or as:// (where Triton or KServe read "
            f"the repository), got {uri!r}"
        )
    if scheme == "pvc":
        claim, _, path = rest.partition("/")
        names.claim_name(claim)
        names.claim_path(path)


@dataclass(frozen=True)
class RepositoryFacts:
    """What the manifests need of a repository: its models with their Triton backends, and the
    TensorRT release its engines were built with (None without engines)."""

    models: dict[str, str]
    tensorrt: str | None
    on_gpus: tuple[str, ...] = ()  # the models whose instance groups are KIND_GPU


def read_repository(repository: Path) -> RepositoryFacts:
    configs = repository_configs(repository)
    models = {name: triton_backend(config) for name, config in configs.items()}
    python = [name for name, backend in models.items() if backend == "python"]
    if python:
        raise ToolkitError(
            f"model {python[0]} runs on Triton's Python backend with this toolkit inside, which NVIDIA's container "
            "lacks; write the repository with the platform backend (resnet-deploy triton MODEL --repository DIR)"
        )
    releases = set()
    for name, backend in models.items():
        if backend == "tensorrt":
            for engine in (repository / name).glob("*/model.plan"):
                manifest = read_manifest(engine)
                if manifest is None:
                    raise ToolkitError(
                        f"{engine} has no manifest (model.plan.json): the TensorRT release it needs is unknown; "
                        "write the repository with resnet-deploy triton from an engine resnet-build made"
                    )
                releases.add(manifest.environment.tensorrt_version)
    if len(releases) > 1:
        raise ToolkitError(
            f"the repository's engines were built with TensorRT {', '.join(sorted(releases))}; one Triton "
            "release runs one TensorRT: rebuild them with one"
        )
    on_gpus = tuple(name for name, config in configs.items() if "KIND_GPU" in instance_kinds(config))
    return RepositoryFacts(models, next(iter(releases), None), on_gpus)


def _image(facts: RepositoryFacts, options: KubernetesOptions) -> str:
    if options.image is not None:
        return options.image
    if facts.tensorrt is not None:
        raise ToolkitError(
            f"the repository's engines were built with TensorRT {facts.tensorrt}, and run only in the Triton "
            "release that ships it: give --image nvcr.io/nvidia/tritonserver:<release>-py3 of that release "
            "(NVIDIA's Frameworks Support Matrix lists each release's TensorRT)"
        )
    return DEFAULT_IMAGE


def triton_objects(name: str, facts: RepositoryFacts, options: KubernetesOptions, image: str) -> list[dict]:
    """The Deployment, the two Services and the HorizontalPodAutoscaler."""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "triton"}
    metadata = {"name": name, "labels": labels} | ({"namespace": options.namespace} if options.namespace else {})
    return [
        _deployment(metadata, labels, options, image),
        *_services(metadata, labels),
        _autoscaler(metadata, options),
    ]


def _repository_volume(options: KubernetesOptions, name: str) -> tuple[list[dict], list[dict], str]:
    """(volumes, mounts, the path or URI tritonserver reads): a claim mounted read-only at
    /models, or an object store Triton reads itself; /dev/shm in memory for its tensors."""
    storage = options.storage_uri or f"pvc://{name}-models"
    volumes, mounts, repository = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}], [], storage
    if storage.startswith("pvc://"):
        claim, _, sub = storage.removeprefix("pvc://").partition("/")
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": "models", "mountPath": "/models", "readOnly": True})
        sub = names.claim_path(sub)
        repository = "/models" + (f"/{sub}" if sub else "")
    # the root filesystem is read-only: what Triton and its backends write goes to /tmp
    volumes.append({"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}})
    mounts += [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}]
    return volumes, mounts, repository


def _deployment(metadata: dict, labels: dict, options: KubernetesOptions, image: str) -> dict:
    volumes, mounts, repository = _repository_volume(options, metadata["name"])
    probe = {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3}
    container = {
        "name": "tritonserver",
        "image": image,
        "command": ["tritonserver"],
        # the models load at start; the APIs that would load others (any code), map shared memory or
        # change logging and tracing are closed to every client of the Service (deploy.triton.api)
        "args": [
            f"--model-repository={repository}",
            "--strict-readiness=true",
            "--allow-metrics=true",
            *closed_api_arguments("closed"),
        ],
        "ports": [
            {"name": "http", "containerPort": 8000},
            {"name": "grpc", "containerPort": 8001},
            {"name": "metrics", "containerPort": 8002},
        ],
        "startupProbe": probe | {"failureThreshold": 60},  # loading models may take minutes
        "readinessProbe": probe,
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": _resources(options),
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
    }
    pod = {
        "automountServiceAccountToken": False,  # Triton calls no Kubernetes API
        "securityContext": {  # the restricted Pod Security Standard
            "runAsNonRoot": True,
            "runAsUser": TRITON_USER,
            "runAsGroup": TRITON_USER,
            "fsGroup": TRITON_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": options.min_replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def _resources(options: KubernetesOptions) -> dict:
    limits = {"cpu": options.cpu_limit, "memory": options.memory_limit}
    return {
        "requests": {"cpu": options.cpu_request, "memory": options.memory_request},
        "limits": limits | ({"nvidia.com/gpu": str(options.gpus)} if options.gpus else {}),
    }


def _services(metadata: dict, labels: dict) -> list[dict]:
    """HTTP and gRPC; metrics apart, annotated for Prometheus' scraping."""
    ports = [{"name": "http", "port": 8000, "targetPort": "http"}, {"name": "grpc", "port": 8001, "targetPort": "grpc"}]
    scrape = {"prometheus.io/scrape": "true", "prometheus.io/port": "8002", "prometheus.io/path": "/metrics"}
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": {"selector": labels, "ports": ports}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata | {"name": f"{metadata['name']}-metrics", "annotations": scrape},
            "spec": {"selector": labels, "ports": [{"name": "metrics", "port": 8002, "targetPort": "metrics"}]},
        },
    ]


def _autoscaler(metadata: dict, options: KubernetesOptions) -> dict:
    target = {"type": "AverageValue", "averageValue": str(options.queue_time_us)}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": metadata["name"]},
            "minReplicas": options.min_replicas,
            "maxReplicas": options.max_replicas,
            "metrics": [{"type": "Pods", "pods": {"metric": {"name": HPA_METRIC}, "target": target}}],
        },
    }


def adapter_rule() -> dict:
    """prometheus-adapter's custom-metrics rule (its Helm chart's `rules.custom`) for the HPA's
    metric: per pod, the queue time per request, weighted by traffic (see the module docstring)."""
    matchers = "<<.LabelMatchers>>"
    query = (
        f"sum(rate({QUEUE_METRIC}{{{matchers}}}[1m])) by (<<.GroupBy>>) / "
        f"clamp_min(sum(rate({SUCCESS_METRIC}{{{matchers}}}[1m])) by (<<.GroupBy>>), 0.001)"
    )
    return {
        "rules": {
            "custom": [
                {
                    "seriesQuery": f'{QUEUE_METRIC}{{namespace!="",pod!=""}}',
                    "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
                    "name": {"matches": QUEUE_METRIC, "as": HPA_METRIC},
                    "metricsQuery": query,
                }
            ]
        }
    }


def image_tag(image: str) -> str | None:
    """The tag of an image reference (`REPO[:TAG][@sha256:DIGEST]`): "latest" for a bare repository,
    None for one pinned by digest alone (a digest is no tag, and KServe's runtimeVersion takes a tag)."""
    reference, _, digest = image.partition("@")
    last = reference.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return None if digest else "latest"


def inference_service(name: str, options: KubernetesOptions, image: str) -> dict:
    """KServe's InferenceService (serving.kserve.io/v1beta1) of the same repository: the `triton`
    model format, the repository's URI, the runtime version of the image's tag."""
    tag = image_tag(image)
    metadata = {"name": name} | ({"namespace": options.namespace} if options.namespace else {})
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {
            "predictor": {
                "minReplicas": options.min_replicas,
                "maxReplicas": options.max_replicas,
                "model": {
                    "modelFormat": {"name": "triton"},
                    **({"runtimeVersion": tag} if tag else {}),
                    "storageUri": options.storage_uri or f"pvc://{name}-models",
                    "resources": _resources(options),
                },
            }
        },
    }


def write_kubernetes(
    repository: str | Path, output: str | Path, options: KubernetesOptions = KubernetesOptions(), *, force: bool = False
) -> Path:
    """Write the manifests for `repository` into `output` (see the module docstring); an existing
    folder is refused unless `force` and this command wrote it."""
    repository, output = Path(repository), Path(output)
    facts = read_repository(repository)
    if options.gpus == 0 and "tensorrt" in facts.models.values():
        raise ToolkitError("the repository holds TensorRT engines, which run on GPUs: give --gpus 1 or more")
    if options.gpus == 0 and facts.on_gpus:
        raise ToolkitError(
            f"model {facts.on_gpus[0]} puts its instances on GPUs (KIND_GPU in its config.pbtxt), which a pod without "
            "GPUs can't load: give --gpus 1 or more, or write it for CPU pods (resnet-deploy triton MODEL --repository "
            "DIR --cpu --force)"
        )
    own = next(iter(facts.models)) if len(facts.models) == 1 else repository.resolve().name  # one model: its name
    name = options.name or re.sub(r"[^a-z0-9-]+", "-", own.lower()).strip("-")
    if options.name is None and not names.DNS_1035_LABEL.match(name or "-"):
        raise ToolkitError(f"{own!r} gives no Kubernetes name (a letter first): give --name")
    names.object_name(name, "--name", longest=50)
    image = _image(facts, options)
    check_replaceable_folder(
        output, force=force, is_ours=_is_ours, what="set of Kubernetes manifests", inputs=[repository]
    )
    with publish_folder(output, replace=_is_ours if output.exists() else None) as folder:
        (folder / MANIFEST).write_text(
            _header(facts) + dump_all(triton_objects(name, facts, options, image)), encoding="utf-8"
        )
        (folder / "prometheus-adapter-values.yaml").write_text(dump(adapter_rule()), encoding="utf-8")
        (folder / "inferenceservice.yaml").write_text(dump(inference_service(name, options, image)), encoding="utf-8")
        (folder / "README.md").write_text(_readme(name, facts, options, image), encoding="utf-8")
    return output


def _is_ours(folder: Path) -> bool:
    manifest = folder / MANIFEST
    return manifest.is_file() and manifest.read_text(errors="replace").startswith(
        "# Written by resnet-deploy kubernetes"
    )


def _header(facts: RepositoryFacts) -> str:
    engines = f"; engines built with TensorRT {facts.tensorrt}" if facts.tensorrt else ""
    return f"# Written by resnet-deploy kubernetes: models {', '.join(sorted(facts.models))}{engines}\n"


def _readme(name: str, facts: RepositoryFacts, options: KubernetesOptions, image: str) -> str:
    storage = options.storage_uri or f"pvc://{name}-models"
    tag = image_tag(image)
    pinned = ""
    if "@" in image:
        pinned = (
            f" KServe names the runtime by its tag ({tag}), not by the digest `{image}` pins: pin the digest in "
            "KServe's ServingRuntime for Triton."
            if tag
            else f" KServe names the runtime by a tag, and `{image}` has none: the InferenceService runs the "
            "ServingRuntime's own Triton image; pin the digest there."
        )
    return f"""# {name}: Triton on Kubernetes

Written by `resnet-deploy kubernetes` for the models {", ".join(sorted(facts.models))}. Not run here:
the manifests are checked against Kubernetes' schemas (and KServe's CRD) by the toolkit's tests.

1. Put the repository where the pods read it ({storage}): a PersistentVolumeClaim holding the
   repository folder, or an object store Triton reads itself (s3://, gs://, as://).
2. `kubectl apply -f {MANIFEST}`: the Deployment (NVIDIA's Triton container, {options.gpus} GPU(s) a pod),
   Services `{name}` (HTTP 8000, gRPC 8001) and `{name}-metrics` (8002, scraped by Prometheus),
   and the HorizontalPodAutoscaler ({options.min_replicas} to {options.max_replicas} pods, on {options.queue_time_us} us of
   queue time per request).
3. The autoscaler's metric comes from prometheus-adapter:
   `helm upgrade --install prometheus-adapter prometheus-community/prometheus-adapter -f prometheus-adapter-values.yaml`.

Or, with KServe instead of steps 2 and 3: `kubectl apply -f inferenceservice.yaml`.{pinned}
"""
