"""`resnet-deploy` (predictions on images, bundles for boards, Triton repositories and a Triton
server, Ray Serve applications, Kubernetes manifests) and `resnet-eval` (accuracy on a folder of
labelled images), one module per command, with the options they share in `options`. Each command
parses its options, calls one library function (`Predictor.predict_each`, `write_bundle`,
`write_triton_model`, `write_ray_app`, `write_kubernetes`, `evaluate_model`) and prints what it
returns.

Each command imports what it runs (bundles, Triton, the server, Ray, evaluation) when it runs, so
that `resnet-deploy predict`, a board's cold start, loads only the Predictor."""

from __future__ import annotations

import click

from toolkit.cli import ToolkitGroup

from .bundle_command import bundle
from .eval_command import eval_main, format_evaluation
from .kubernetes_command import kubernetes
from .predict_command import cold_start_figures, format_prediction, predict, printable
from .ray_command import ray
from .serve_command import format_serving, serve
from .triton_command import triton


@click.group("resnet-deploy", cls=ToolkitGroup)
def main() -> None:
    """Run exported models on images, package them for a board, or serve them (Triton, Ray Serve, Kubernetes).

    \b
    resnet-deploy predict resnet50.onnx cat.jpg dog.png
    resnet-deploy bundle resnet50_fp16.onnx -o rn50-bundle --labels imagenet.txt
    resnet-deploy triton resnet50.onnx --repository models --name resnet50 --max-batch 64
    resnet-deploy triton resnet50.onnx --repository served --triton-backend python && resnet-deploy serve served
    resnet-deploy ray resnet50.onnx --app-dir rn50-ray --max-replicas 4
    resnet-deploy kubernetes models -o k8s --gpus 1 --max-replicas 8
    """


for _command in (predict, bundle, triton, serve, ray, kubernetes):
    main.add_command(_command)

if __name__ == "__main__":
    main()

__all__ = [
    "cold_start_figures",
    "eval_main",
    "format_evaluation",
    "format_prediction",
    "format_serving",
    "main",
    "printable",
]
