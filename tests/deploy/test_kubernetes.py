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
jsonschema = pytest.importorskip("jsonschema", reason="jsonschema comes with kubernetes-validate: pip install '.[dev]'")

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
                 "--max-replicas", 4, "--batch-requests", 8, "--http-port", 9100)  # fmt: skip
    assert result.exit_code == 0, result.output
    app = tmp_path / "app"
    assert sorted(p.name for p in app.iterdir()) == [
        "Dockerfile", "README.md", "app.py", "model.onnx", "rayservice.yaml", "serve_config.yaml",
    ]  # fmt: skip
    assert (app / "model.onnx").read_bytes() == digits_files["fp32"].read_bytes()
    config = yaml.safe_load((app / "serve_config.yaml").read_text())
    (application,) = config["applications"]
    assert application["import_path"] == "deploy.ray_serve.replica:build"
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


RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
                      "secret"}  # fmt: skip


def restricted_violations(pod: dict) -> list[str]:
    """The controls of Kubernetes' restricted Pod Security Standard (kubernetes.io/docs/concepts/
    security/pod-security-standards, "Restricted", with "Baseline" under it) that a pod spec breaks;
    the same checks the API server's PodSecurity admission makes at `enforce: restricted`."""
    problems = []
    pod_context = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(key)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']} is {kinds}")
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container.get("securityContext", {})
        if context.get("privileged"):
            problems.append("privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append("allowPrivilegeEscalation is not false")
        if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
            problems.append("runAsNonRoot is not true")
        if 0 in (context.get("runAsUser"), pod_context.get("runAsUser")):
            problems.append("runs as root (uid 0)")
        seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"seccomp profile {seccomp}")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []) or set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append("capabilities are not drop ALL")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            problems.append("host port")
    return problems


def test_the_deployment_meets_the_restricted_pod_security_standard(repository, tmp_path):
    """Issue 35, item 7: the Deployment had no security context. It meets the restricted standard
    (non-root as the image's triton-server user, no privilege escalation, no capabilities, the
    runtime's seccomp profile), mounts its root filesystem read-only with /tmp in an emptyDir,
    mounts no service-account token, and takes its requests and limits from options."""
    result = run("kubernetes", repository, "-o", tmp_path / "k8s", "--cpu-request", "500m", "--memory-limit", "3Gi")
    assert result.exit_code == 0, result.output
    deployment = next(yaml.safe_load_all((tmp_path / "k8s" / "triton.yaml").read_text()))
    kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
    pod = deployment["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] and pod["automountServiceAccountToken"] is False
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp", "/dev/shm"}
    assert container["resources"]["requests"]["cpu"] == "500m" and container["resources"]["limits"]["memory"] == "3Gi"
    service = yaml.safe_load((tmp_path / "k8s" / "inferenceservice.yaml").read_text())
    assert service["spec"]["predictor"]["model"]["resources"] == container["resources"]
    del pod["securityContext"]  # the check could fail: without it, the pod is not restricted
    assert restricted_violations(pod) == ["seccomp profile None"]


@pytest.mark.parametrize(
    "args, said",
    [
        (["--name", "0digits"], "--name must be lower-case letters, digits and '-', starting with a letter"),
        (["--name", ""], "--name must be lower-case letters"),
        (["--name", "a" * 51], "at most 50 characters"),
        (["--namespace", "Bad_NS"], "--namespace must be lower-case letters, digits and '-'"),
        (["--namespace", "ns\r"], "--namespace must be"),
        (["--storage-uri", "pvc:///sub"], "the claim of --storage-uri pvc://CLAIM[/PATH] must be"),
        (["--storage-uri", "pvc://Bad_Claim/../../etc"], "the claim of --storage-uri"),
        (["--storage-uri", "pvc://claim/../../etc"], "must stay inside the claim"),
        (["--storage-uri", "s3://bucket/a\rb"], "--storage-uri must be pvc://CLAIM"),
        (["--cpu-request", "two"], "--cpu-request must be a Kubernetes quantity"),
        (["--memory-limit", "8 GB"], "--memory-limit must be a Kubernetes quantity"),
    ],
)
def test_names_the_api_server_would_reject_are_refused_with_the_rule(args, said, repository, tmp_path):
    """Issue 35, item 7: each of these was written, for the API server to reject (or, with a
    carriage return, made the YAML unparsable; `..` reached outside the claim)."""
    result = run("kubernetes", repository, "-o", tmp_path / "k8s", *args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and said in lines[0], result.output
    assert not (tmp_path / "k8s").exists()


def test_a_model_name_that_is_no_kubernetes_name_asks_for_one(digits_files, tmp_path):
    assert run("triton", digits_files["fp32"], "--repository", tmp_path / "r", "--name", "0digits").exit_code == 0
    result = run("kubernetes", tmp_path / "r", "-o", tmp_path / "k8s")
    assert result.exit_code == 2 and "'0digits' gives no Kubernetes name" in result.output and "--name" in result.output
    assert run("kubernetes", tmp_path / "r", "-o", tmp_path / "k8s", "--name", "digits").exit_code == 0


def test_the_ray_service_takes_a_kubernetes_name_whole_gpus_and_a_gpu_image(digits_files, tmp_path):
    """Issue 35, item 7: `--name a_` gave the RayService `a-` (invalid), `--gpus-per-replica 0.5`
    wrote `nvidia.com/gpu: "0.5"` (the API server rejects a fractional extended resource), and the
    Dockerfile built on Ray's CPU image whatever the GPUs."""
    result = run("ray", digits_files["fp32"], "--app-dir", tmp_path / "app", "--name", "a_",
                 "--gpus-per-replica", 0.5)  # fmt: skip
    assert result.exit_code == 0, result.output
    service = yaml.safe_load((tmp_path / "app" / "rayservice.yaml").read_text())
    jsonschema.validate(service, custom_schema("rayservice"))
    assert service["metadata"]["name"] == "a"
    (worker,) = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert worker["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "FROM rayproject/ray:2.60.0-py311-gpu" in (tmp_path / "app" / "Dockerfile").read_text()
    serve_config = yaml.safe_load((tmp_path / "app" / "serve_config.yaml").read_text())
    assert serve_config["applications"][0]["deployments"][0]["ray_actor_options"]["num_gpus"] == 0.5


@pytest.mark.parametrize(
    "args, said",
    [
        (["--name", "a" * 200], "(of 200 characters), must start with a letter and be at most 50"),
        (["--name", "9lives"], "must start with a letter"),
        (["--http-host", "not a host!"], "--http-host must be an IP address or a host name"),
        (["--http-host", "0.0.0.0\r"], "--http-host must be an IP address or a host name"),
    ],
)
def test_ray_names_and_hosts_that_would_be_rejected_are_refused(args, said, digits_files, tmp_path):
    result = run("ray", digits_files["fp32"], "--app-dir", tmp_path / "app", *args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and said in lines[0], result.output
    assert not (tmp_path / "app").exists()


def test_an_existing_empty_folder_takes_the_app_with_force(digits_files, tmp_path):
    """Issue 35, item 7: an empty --app-dir (a mount point, say) was refused even with --force;
    without --force it still is, and a folder holding anything else is never replaced."""
    (tmp_path / "app").mkdir()
    assert run("ray", digits_files["fp32"], "--app-dir", tmp_path / "app").exit_code == 2
    result = run("ray", digits_files["fp32"], "--app-dir", tmp_path / "app", "--force")
    assert result.exit_code == 0 and (tmp_path / "app" / "serve_config.yaml").is_file(), result.output
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert run("ray", digits_files["fp32"], "--app-dir", tmp_path / "other", "--force").exit_code == 2
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_an_application_folder_written_before_the_move_is_still_run_and_replaced(digits_files, tmp_path):
    """Issue 36: serve configs written before each target got a folder name
    `deploy.serving.ray_app:build`; that path still gives the replica's builder, and `--force`
    still takes such a folder for the toolkit's."""
    pytest.importorskip("ray", reason="Ray Serve is not installed (pip install '.[ray]')")
    import deploy.ray_serve.replica as replica
    import deploy.serving.ray_app as old

    assert old.build is replica.build
    app = tmp_path / "app"
    assert run("ray", digits_files["fp32"], "--app-dir", app).exit_code == 0
    config = app / "serve_config.yaml"
    config.write_text(config.read_text().replace("deploy.ray_serve.replica:build", "deploy.serving.ray_app:build"))
    assert "deploy.serving.ray_app:build" in config.read_text()
    assert run("ray", digits_files["fp32"], "--app-dir", app, "--force").exit_code == 0
    assert "deploy.ray_serve.replica:build" in config.read_text()


def test_the_old_spelling_of_batch_requests_still_works_and_says_so(digits_files, tmp_path):
    """Issue 36: `resnet-deploy ray --max-batch` meant requests gathered into one run, unlike
    every other --max-batch (rows); it is `--batch-requests` now, the old spelling taken for one
    more release with a note. An app folder's config written before (`max_batch` in its args) is
    still read by the replica (deploy.ray_serve.replica)."""
    result = run("ray", digits_files["fp32"], "--app-dir", tmp_path / "app", "--max-batch", 8)
    assert result.exit_code == 0 and "--max-batch is now --batch-requests" in result.output, result.output
    config = yaml.safe_load((tmp_path / "app" / "serve_config.yaml").read_text())
    assert config["applications"][0]["args"]["batch_requests"] == 8
