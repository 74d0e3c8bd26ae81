"""Manifests for beyond one machine, checked as far as this machine can: Kubernetes' own schemas for
the built-in kinds (`kubernetes-validate`, strict: an unknown field fails), and for the custom
resources (KServe's InferenceService, KubeRay's RayService) the fields their CRDs define, in the
subsets `tools/crd-subset` wrote into tests/data/schemas/ (each names the CRD it came from). No
cluster runs here (docs/deploy.md says so)."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from deploy.cli import main as deploy_main

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install '.[dev]'")
jsonschema = pytest.importorskip("jsonschema")

KUBERNETES = "1.37"  # the newest release kubernetes-validate 1.37 knows
SCHEMAS = __import__("pathlib").Path(__file__).parents[1] / "data" / "schemas"


def run(*args):
    return CliRunner().invoke(deploy_main, [str(a) for a in args])


@pytest.fixture(scope="module")
def repository(tmp_path_factory, digits_files):
    folder = tmp_path_factory.mktemp("k8s") / "models"
    assert run("triton", digits_files["fp32"], "--repository", folder, "--name", "digits").exit_code == 0
    return folder


def custom_schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.json").read_text())


def test_the_triton_manifests_are_valid_kubernetes_objects(repository, tmp_path):
    result = run("kubernetes", repository, "-o", tmp_path / "k8s", "--gpus", 2, "--min-replicas", 2, "--max-replicas", 6,
                 "--queue-time-us", 20000, "--storage-uri", "s3://bucket/models")  # fmt: skip
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all((tmp_path / "k8s" / "triton.yaml").read_text()))
    assert [d["kind"] for d in documents] == ["Deployment", "Service", "Service", "HorizontalPodAutoscaler"]
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES, strict=True)
    deployment, _, metrics, autoscaler = documents
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert "--model-repository=s3://bucket/models" in container["args"]  # Triton reads the bucket itself
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    closed = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in container["args"] if "restricted" in a}
    assert closed.keys() == {"--http-restricted-api", "--grpc-restricted-protocol"}  # issue 35, item 1
    for rule in closed.values():  # as serve closes them: a header name no request can carry
        apis, header = rule.split(":", 1)
        assert set(apis.split(",")) == {"model-repository", "shared-memory", "logging", "trace"}
        assert header.startswith("Closed\nby-") and "=" in header
    assert metrics["metadata"]["annotations"]["prometheus.io/port"] == "8002"
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert (autoscaler["spec"]["minReplicas"], autoscaler["spec"]["maxReplicas"]) == (2, 6)
    (metric,) = autoscaler["spec"]["metrics"]
    rules = yaml.safe_load((tmp_path / "k8s" / "prometheus-adapter-values.yaml").read_text())["rules"]["custom"]
    assert metric["pods"]["metric"]["name"] == rules[0]["name"]["as"]  # the adapter defines what the HPA reads
    assert metric["pods"]["target"]["averageValue"] == "20000"


def test_strict_validation_catches_a_misspelt_field(repository, tmp_path):
    """The check above could fail: one wrong key in a Deployment is refused."""
    assert run("kubernetes", repository, "-o", tmp_path / "k8s").exit_code == 0
    deployment = next(yaml.safe_load_all((tmp_path / "k8s" / "triton.yaml").read_text()))
    deployment["spec"]["replcas"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_the_inference_service_has_the_fields_kserves_crd_defines(repository, tmp_path):
    assert run("kubernetes", repository, "-o", tmp_path / "k8s", "--max-replicas", 3).exit_code == 0
    service = yaml.safe_load((tmp_path / "k8s" / "inferenceservice.yaml").read_text())
    jsonschema.validate(service, custom_schema("inferenceservice"))
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "triton"} and model["runtimeVersion"] == "26.06-py3"
    assert model["storageUri"] == "pvc://digits-models" and service["spec"]["predictor"]["maxReplicas"] == 3
    model["storageURI"] = model.pop("storageUri")  # a field the CRD does not have
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(service, custom_schema("inferenceservice"))


def test_the_ray_service_carries_the_serve_config_in_fields_kuberays_crd_defines(digits_files, tmp_path):
    result = run("ray", digits_files["fp32"], "--app-dir", tmp_path / "app", "--name", "digits", "--max-replicas", 3)
    assert result.exit_code == 0, result.output
    service = yaml.safe_load((tmp_path / "app" / "rayservice.yaml").read_text())
    jsonschema.validate(service, custom_schema("rayservice"))
    carried = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
    local = yaml.safe_load((tmp_path / "app" / "serve_config.yaml").read_text())["applications"]
    assert carried[0]["deployments"] == local[0]["deployments"]  # the same replicas, autoscaling, resources
    assert carried[0]["args"]["artifact"] == "/home/ray/app/model.onnx"  # where the Dockerfile puts it
    assert "COPY --chown=ray app /home/ray/app" in (tmp_path / "app" / "Dockerfile").read_text()
    worker = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert worker["maxReplicas"] == 3
    worker["maxReplica"] = worker.pop("maxReplicas")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(service, custom_schema("rayservice"))


@pytest.mark.parametrize(
    "args,message",
    [
        (["--min-replicas", 5, "--max-replicas", 2], "--max-replicas 2 is below --min-replicas 5"),
        (["--storage-uri", "/local/models"], "--storage-uri must be pvc://CLAIM"),
        (["--name", "Bad_Name"], "--name must be lower-case letters"),
    ],
)
def test_bad_kubernetes_options_are_one_sentence(repository, tmp_path, args, message):
    result = run("kubernetes", repository, "-o", tmp_path / "k8s", *args)
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "k8s").exists()


def test_a_python_backend_repository_is_refused_for_nvidias_container(digits_files, tmp_path):
    repository = tmp_path / "python"
    assert run("triton", digits_files["fp32"], "--repository", repository, "--triton-backend", "python").exit_code == 0
    result = run("kubernetes", repository, "-o", tmp_path / "k8s")
    assert result.exit_code == 2 and "Python backend" in result.output and "NVIDIA's container lacks" in result.output


def test_the_ray_application_files(digits_files, tmp_path):
    result = run("ray", digits_files["fp32"], "--app-dir", tmp_path / "app", "--name", "digits", "--min-replicas", 2,
                 "--max-replicas", 4, "--max-batch", 8, "--http-port", 9100)  # fmt: skip
    assert result.exit_code == 0, result.output
    app = tmp_path / "app"
    assert sorted(p.name for p in app.iterdir()) == [
        "Dockerfile", "README.md", "app.py", "model.onnx", "rayservice.yaml", "serve_config.yaml",
    ]  # fmt: skip
    assert (app / "model.onnx").read_bytes() == digits_files["fp32"].read_bytes()
    config = yaml.safe_load((app / "serve_config.yaml").read_text())
    (application,) = config["applications"]
    assert application["import_path"] == "deploy.serving.ray_app:build"
    assert application["args"]["artifact"] == str((app / "model.onnx").resolve())
    (deployment,) = application["deployments"]
    assert deployment["autoscaling_config"].items() >= {"min_replicas": 2, "max_replicas": 4}.items()
    assert deployment["max_ongoing_requests"] >= 8 and config["http_options"]["port"] == 9100
    compile((app / "app.py").read_text(), "app.py", "exec")  # Python that parses
    again = run("ray", digits_files["fp32"], "--app-dir", app)
    assert again.exit_code == 2 and "--force" in again.output
    assert run("ray", digits_files["fp32"], "--app-dir", app, "--force").exit_code == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--min-replicas", 3, "--max-replicas", 2], "--max-replicas 2 is below --min-replicas 3"),
        (["--precision", "bf16"], "add --backend openvino"),
        (["--backend", "openvino", "--gpus-per-replica", 1], "OpenVINO runs on the CPU"),
    ],
)
def test_bad_ray_options_are_one_sentence(digits_files, tmp_path, args, message):
    result = run("ray", digits_files["fp32"], "--app-dir", tmp_path / "app", *args)
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "app").exists()


def test_a_digest_pinned_image_gives_kserve_its_tag_not_the_digest(repository, tmp_path):
    """Issue 35, item 4: `--image repo:tag@sha256:...` gave KServe the digest as runtimeVersion.
    It gets the tag (the README says the digest pins triton.yaml only); a digest without a tag
    gives no runtimeVersion, and the README says so."""
    digest = "sha256:" + "ab" * 32
    for image, version in ((f"nvcr.io/nvidia/tritonserver:26.06-py3@{digest}", "26.06-py3"),
                           (f"nvcr.io/nvidia/tritonserver@{digest}", None)):  # fmt: skip
        result = run("kubernetes", repository, "-o", tmp_path / "k8s", "--image", image, "--force")
        assert result.exit_code == 0, result.output
        service = yaml.safe_load((tmp_path / "k8s" / "inferenceservice.yaml").read_text())
        jsonschema.validate(service, custom_schema("inferenceservice"))
        assert service["spec"]["predictor"]["model"].get("runtimeVersion") == version
        deployment = next(yaml.safe_load_all((tmp_path / "k8s" / "triton.yaml").read_text()))
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image  # pinned there
        assert digest in (tmp_path / "k8s" / "README.md").read_text()


def test_a_gpu_repository_is_refused_for_pods_without_gpus(repository, digits_files, tmp_path):
    """Issue 35, item 4: `--gpus 0` on a repository whose instance groups are KIND_GPU wrote pods
    that can't load their model. Refused, saying what to do; a repository written with --cpu goes."""
    config = (repository / "digits" / "config.pbtxt").read_text()
    assert "KIND_GPU" in config
    result = run("kubernetes", repository, "-o", tmp_path / "k8s", "--gpus", 0)
    assert result.exit_code == 2 and "puts its instances on GPUs (KIND_GPU" in result.output, result.output
    cpu = tmp_path / "cpu"
    assert run("triton", digits_files["fp32"], "--repository", cpu, "--name", "digits", "--cpu").exit_code == 0
    assert run("kubernetes", cpu, "-o", tmp_path / "k8s", "--gpus", 0).exit_code == 0


@pytest.mark.parametrize("manifest", ['{"environment": {}}', "[", '{"format": 1, ' * 2000, None])
def test_a_broken_engine_manifest_in_a_repository_is_one_sentence(manifest, tmp_path):
    """Issue 35, item 6: a TensorRT repository whose model.plan.json is `{"environment": {}}` or `[`
    was a KeyError or JSONDecodeError; deep JSON and a missing manifest too are one sentence."""
    model = tmp_path / "repo" / "m"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('name: "m"\nplatform: "tensorrt_plan"\nmax_batch_size: 8\n')
    (model / "1" / "model.plan").write_bytes(b"an engine")
    if manifest is not None:
        (model / "1" / "model.plan.json").write_text(manifest)
    result = run(
        "kubernetes", tmp_path / "repo", "-o", tmp_path / "k8s", "--image", "nvcr.io/nvidia/tritonserver:26.06-py3"
    )
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "model.plan" in lines[0], result.output
    assert not (tmp_path / "k8s").exists()
