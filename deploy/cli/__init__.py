"""`resnet-deploy` (predictions on images, bundles for boards, Triton repositories and a Triton
server, Ray Serve applications, Kubernetes manifests) and `resnet-eval` (accuracy on a folder of
labelled images), one module per command, with the options they share in `options`. Each command
parses its options, calls one library function (`Predictor.predict_each`, `write_bundle`,
`write_triton_model`, `write_ray_app`, `write_kubernetes`, `evaluate_model`) and prints what it
returns.

Each command's module is imported when the command runs, and imports what it runs (bundles, Triton,
the server, Ray, evaluation) then, so that `resnet-deploy predict`, a board's cold start, loads only
the Predictor."""

from __future__ import annotations

import importlib

import click

from toolkit.cli import ToolkitGroup

# Each command's module, imported when the command runs (or its help is shown).
COMMANDS = {
    "predict": "predict_command",
    "bundle": "bundle_command",
    "triton": "triton_command",
    "serve": "serve_command",
    "ray": "ray_command",
    "kubernetes": "kubernetes_command",
}
# What else the package offers, from its command modules, imported on first use.
EXPORTS = {
    "cold_start_figures": "predict_command",
    "format_prediction": "predict_command",
    "printable": "predict_command",
    "eval_main": "eval_command",
    "format_evaluation": "eval_command",
    "format_serving": "serve_command",
}


class _Commands(ToolkitGroup):
    """The group of `COMMANDS`, each module imported only when its command is asked for."""

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, name: str):
        module = COMMANDS.get(name)
        return getattr(importlib.import_module(f".{module}", __name__), name) if module else None


@click.group("resnet-deploy", cls=_Commands)
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


def __getattr__(name: str):
    if name in EXPORTS:
        return getattr(importlib.import_module(f".{EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()

__all__ = ["main", *EXPORTS]
