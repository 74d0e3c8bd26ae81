"""The Open Inference Protocol's REST form as the Ray application reads it (`deploy.ray_serve.rest`),
without a cluster: every hostile request of issue 35 (items 4 and 6) is a status and one sentence,
decided before the model runs; well-formed requests give their tensor. tests/deploy/test_ray.py
sends the same through a real cluster."""

import json

import numpy as np
import pytest

from deploy.ray_serve.rest import RequestError, infer_answer, read_infer_request, shown, split_body, whole_number


def request(**fields) -> bytes:
    tensor = {"name": "input", "shape": [1, 3, 2, 2], "datatype": "FP32", "data": [0.5] * 12}
    tensor |= fields.pop("tensor", {})
    return json.dumps({"inputs": [tensor]} | fields).encode()


def read(text: bytes, binary: bytes = b""):
    return read_infer_request(text, binary, "input", np.dtype(np.float32), "logits")


def test_a_well_formed_request_gives_its_tensor_and_what_it_asks():
    asked = read(request(outputs=[{"name": "logits", "parameters": {"binary_data": True}}], id="r1"))
    assert asked.array.shape == (1, 3, 2, 2) and asked.array.dtype == np.float32 and asked.binary_output
    assert asked.id == "r1"
    data = np.arange(12, dtype="<f4")
    head = json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 2, 2], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 48}}]}).encode()  # fmt: skip
    text, binary = split_body(head + data.tobytes(), str(len(head)))
    assert np.array_equal(read(text, binary).array.ravel(), data)
    nested = read(request(tensor={"data": [[[[0.5] * 2] * 2] * 3]}))
    assert nested.array.shape == (1, 3, 2, 2)


@pytest.mark.parametrize(
    "body, said",
    [
        (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deep"),
        (b'{"inputs": [], "x": NaN}', "holds NaN, which JSON does not allow"),
        (b'{"inputs": "\xff"}', "not UTF-8"),
        (b"[1]", "must be a JSON object"),
        (request(tensor={"shape": [True, 3, 2, 2]}), "must be a list of sizes, got [true, 3, 2, 2]"),
        (request(tensor={"shape": [10**3000, 3, 2, 2]}), "must be a list of sizes, got [1000000"),
        (request(tensor={"shape": [-1, 3, 2, 2]}), "must be a list of sizes"),
        (request(outputs={"a": 1}), '"outputs" must be a list of objects'),
        (request(outputs=5), '"outputs" must be a list of objects'),
        (request(outputs=[1]), '"outputs" must be a list of objects'),
        (request(outputs=[{"name": "logits", "parameters": "x"}]), "parameters of output 'logits' must be an object"),
        (request(parameters="x"), '"parameters" must be an object'),
        (request(id=["x"]), '"id" must be a string'),
        (request(id="x" * 1000), '"id" must be a string of at most 256'),
        (json.dumps({"inputs": [1]}).encode(), "one tensor"),
        (request(tensor={"parameters": "x"}), "parameters of input must be an object"),
        (request(outputs=[{"name": "probabilities"}]), 'gives no output "probabilities"'),
        (request(tensor={"data": ["0.5"] * 12}), "must be numbers"),
        (request(tensor={"data": [True] * 12}), "must be numbers"),
        (request(tensor={"data": [0.5] * 11 + [True]}), "must be numbers"),
        (request(tensor={"data": [[0.5] * 6, [0.5] * 5]}), "must be"),
        (request(tensor={"data": [1e39] * 12}), "NaN or infinite"),
        (request(tensor={"data": [10**400] * 12}), "too large for its type"),
        (request(tensor={"datatype": ["FP32"]}), "this model takes FP32"),
        (request(tensor={"name": "x" * 60_000}), "this model takes 'input'"),
    ],
)
def test_a_hostile_request_is_a_400_in_one_short_sentence(body, said):
    with pytest.raises(RequestError) as refused:
        read(body)
    assert refused.value.status == 400 and said in str(refused.value), str(refused.value)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 300


@pytest.mark.parametrize("header", ["\u00b2", "-1", "1e3", "9" * 30, "100"])
def test_a_header_or_query_number_is_ascii_digits_that_fit(header):
    with pytest.raises(RequestError) as refused:
        split_body(b"{}", header)  # "100" does not fit a body of 2 bytes
    assert refused.value.status == 400
    assert whole_number("12", "top_k") == 12 and whole_number(None, "top_k") is None


def test_a_non_finite_output_is_a_422_not_a_500():
    asked = read(request())
    with pytest.raises(RequestError) as refused:
        infer_answer("m", "logits", np.array([[np.inf, 0.0]], np.float32), asked, {})
    assert refused.value.status == 422 and "not finite" in str(refused.value)
    answer, data = infer_answer("m", "logits", np.zeros((1, 2), np.float32), asked, {"batch_size": 1})
    assert answer["outputs"][0]["data"] == [0.0, 0.0] and data == b""
    assert shown("m" * 60_000).endswith("...") and len(shown("m" * 60_000)) == 60


def test_a_gathered_batch_reports_the_runs_it_was_split_into(digits_files):
    """Issue 35, item 4: a Ray answer reported the whole gathered batch as the batch it ran in, even
    when the runtime ran it in smaller pieces. `ServedArtifact.runs` says, row by row, the size of
    the run each row was in (padding included): the answer's `batch_size` is its first row's."""
    from deploy.shipping.served import ServedArtifact, ServingOptions

    batch = np.random.default_rng(0).standard_normal((10, 3, 32, 32), dtype=np.float32)
    limited = ServedArtifact(digits_files["fp32"], ServingOptions(largest_run=4), name="d")
    logits, sizes = limited.runs(batch)
    assert sizes.tolist() == [4] * 8 + [2] * 2
    assert np.allclose(logits, limited.runtime.run(batch), atol=1e-5)
    fixed = ServedArtifact(digits_files["static"], ServingOptions(largest_run=16), name="d")  # takes batches of 4 only
    logits, sizes = fixed.runs(batch)
    assert sizes.tolist() == [4] * 10 and logits.shape == (10, 10)  # the last piece of 2, padded to 4
    assert np.allclose(logits, limited.runtime.run(batch), atol=1e-5)
