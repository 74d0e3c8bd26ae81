"""`resnet-deploy kubernetes`: manifests for NVIDIA's Triton container on a repository (`deploy.kubernetes`)."""

from __future__ import annotations

import click

from toolkit.cli import ToolkitCommand
from toolkit.numbers import Number


@click.command("kubernetes", cls=ToolkitCommand)
@click.argument("repository", type=click.Path(file_okay=False))
@click.option(
    "--output", "-o", type=click.Path(file_okay=False), required=True, help="The folder of manifests to write."
)
@click.option(
    "--name",
    default=None,
    help="Name of the Kubernetes objects. [default: the model's; with several, the repository folder's]",
)
@click.option(
    "--storage-uri",
    default=None,
    help="Where the pods read the repository: pvc://CLAIM[/PATH], s3://, gs:// or as://. [default: pvc://NAME-models]",
)
@click.option(
    "--image",
    default=None,
    help="Triton's image, nvcr.io/nvidia/tritonserver:<release>-py3 (with engines: the release of their TensorRT). "
    "[default: nvcr.io/nvidia/tritonserver:26.06-py3 for ONNX models]",
)
@click.option("--gpus", type=Number(integer=True, low=0, high=64), default=1, show_default=True, help="GPUs per pod.")
@click.option("--min-replicas", type=Number(integer=True, low=1, high=10_000), default=1, show_default=True)
@click.option("--max-replicas", type=Number(integer=True, low=1, high=10_000), default=4, show_default=True)
@click.option(
    "--queue-time-us",
    type=Number(integer=True, low=1, high=3_600_000_000),
    default=50_000,
    show_default=True,
    help="The autoscaler's target: microseconds a request waits in Triton's queue, per pod.",
)
@click.option("--namespace", default=None, help="The objects' namespace. [default: kubectl's]")
@click.option("--cpu-request", default="2", show_default=True, help="CPUs a pod asks for (a Kubernetes quantity).")
@click.option("--memory-request", default="4Gi", show_default=True, help="Memory a pod asks for.")
@click.option("--cpu-limit", default="4", show_default=True, help="CPUs a pod may use.")
@click.option("--memory-limit", default="8Gi", show_default=True, help="Memory a pod may use.")
@click.option("--force", is_flag=True, help="Replace a folder of manifests this command wrote.")
def kubernetes(
    repository,
    output,
    name,
    storage_uri,
    image,
    gpus,
    min_replicas,
    max_replicas,
    queue_time_us,
    namespace,
    cpu_request,
    memory_request,
    cpu_limit,
    memory_limit,
    force,
) -> int:
    """Write Kubernetes manifests that serve REPOSITORY (resnet-deploy triton's) with NVIDIA's Triton container.

    \b
    resnet-deploy triton resnet50_fp16.plan --repository models
    resnet-deploy kubernetes models -o k8s --image nvcr.io/nvidia/tritonserver:26.06-py3 --max-replicas 8

    OUTPUT gets triton.yaml (Deployment under the restricted Pod Security Standard, with Triton's
    model-repository, shared-memory, logging and trace APIs closed; Services; HorizontalPodAutoscaler
    on Triton's queue time per request), prometheus-adapter-values.yaml (the rule that defines that metric), inferenceservice.yaml
    (KServe's alternative) and a README. Nothing here runs them: they are written and checked.
    """
    from ..triton.kubernetes import KubernetesOptions, write_kubernetes

    options = KubernetesOptions(
        name=name,
        storage_uri=storage_uri,
        image=image,
        gpus=gpus,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        queue_time_us=queue_time_us,
        namespace=namespace,
        cpu_request=cpu_request,
        memory_request=memory_request,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
    )
    folder = write_kubernetes(repository, output, options, force=force)
    click.echo(f"{folder}: " + ", ".join(sorted(p.name for p in folder.iterdir() if p.is_file())))
    click.echo(f"  apply it: kubectl apply -f {folder}/triton.yaml (see {folder}/README.md)")
    return 0
