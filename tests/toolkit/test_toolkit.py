"""The bottom layer: atomic files, folder publishing, optional packages, provenance, precisions."""

import hashlib

import numpy as np
import pytest

import resnet
from toolkit import NAME, __version__
from toolkit.errors import MissingDependencyError, ToolkitError
from toolkit.files import atomic_path, publish_folder, sha256_file, write_bytes_atomic
from toolkit.optional import INSTALL, require
from toolkit.precision import FP16_MAX, GRAPH_PRECISIONS, TORCH_PRECISIONS, check_precision, numpy_dtype
from toolkit.provenance import version_of, versions


def test_atomic_writes(tmp_path):
    target = tmp_path / "f.bin"
    write_bytes_atomic(target, b"one")
    assert target.read_bytes() == b"one"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"one" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    assert sha256_file(target) == hashlib.sha256(b"one").hexdigest()
    with pytest.raises(resnet.ToolkitError, match="it is a folder"):
        write_bytes_atomic(tmp_path, b"x")


def test_a_folder_is_published_whole_or_not_at_all(tmp_path):
    target = tmp_path / "bundle"
    with publish_folder(target) as folder:
        (folder / "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "new"
    with pytest.raises(RuntimeError):
        with publish_folder(target) as folder:
            (folder / "b.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with publish_folder(target, replace=lambda old: True) as folder:  # replacing: the old goes only at the end
        (folder / "c.txt").write_text("newer")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging left behind


def test_a_missing_optional_package_names_what_to_install(monkeypatch):
    assert require("numpy", "testing") is np
    INSTALL["no_such_module_here"] = "pip install nothing"
    try:
        with pytest.raises(
            MissingDependencyError,
            match="^counting sheep needs the no_such_module_here package, which is not installed: pip install nothing$",
        ):
            require("no_such_module_here", "counting sheep")
    finally:
        del INSTALL["no_such_module_here"]
    assert issubclass(MissingDependencyError, ToolkitError) and resnet.ToolkitError is ToolkitError


def test_provenance_reads_installed_versions():
    found = versions("numpy", "no_such_module_here", python=True)
    assert found[NAME] == __version__ == resnet.__version__
    assert found["numpy"] == np.__version__ and "python" in found and "no_such_module_here" not in found
    assert version_of("no_such_module_here") is None


def test_precision_table():
    assert GRAPH_PRECISIONS == ("fp32", "fp16", "int8") and FP16_MAX == 65504.0
    assert TORCH_PRECISIONS == ("fp32", "fp16", "bf16")
    assert numpy_dtype("fp16") == np.float16 and numpy_dtype("fp32") == np.float32
    with pytest.raises(ToolkitError, match="precision must be one of fp32, fp16, int8, got 'int4'"):
        check_precision("int4")


def test_folders_published_as_one_step_are_all_there_or_none_changed(tmp_path):
    """The second of two folders can't be moved into place (something appeared there): the first,
    already moved, is taken back and the folder it replaced put back."""
    from toolkit.files import publish_folders

    first, second = tmp_path / "NAME", tmp_path / "NAME_images"
    first.mkdir()
    (first / "old.txt").write_text("the previous model")
    with pytest.raises(ToolkitError, match="appeared while this command ran"):
        with publish_folders([(first, lambda folder: True), (second, None)]) as (new_first, new_second):
            (new_first / "new.txt").write_text("new")
            (new_second / "new.txt").write_text("new")
            second.mkdir()
            (second / "theirs.txt").write_text("someone else's")
    assert sorted(p.name for p in first.iterdir()) == ["old.txt"] and (second / "theirs.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["NAME", "NAME_images"]  # no staging left
    with publish_folders([(first, lambda folder: True), (tmp_path / "OTHER", None)]) as (a, b):
        (a / "new.txt").write_text("new")
    assert sorted(p.name for p in first.iterdir()) == ["new.txt"] and (tmp_path / "OTHER").is_dir()


def test_yaml_floats_read_back_as_numbers_in_yaml_1_1_and_1_2():
    """Issue 35, item 4: `1e-05` (JSON's form) is a string to PyYAML (YAML 1.1, Ray's loader).
    Every float the writer gives reads back as the same number through PyYAML, and through the
    YAML 1.2 core schema's float pattern; the non-finite ones as .inf/.nan."""
    import math
    import re

    yaml = pytest.importorskip("yaml", reason="PyYAML reads the manifests back: pip install '.[dev]'")
    from toolkit.yaml_text import dump

    values = [
        1e-05,
        1e20,
        -2.5e-300,
        0.1,
        5.0,
        100.0,
        1.7976931348623157e308,
        5e-324,
        -0.0,
        float("inf"),
        float("-inf"),
    ]
    document = {f"v{i}": v for i, v in enumerate(values)} | {"nan": float("nan"), "text": "1e-05", "whole": 3}
    read = yaml.safe_load(dump(document))
    assert all(isinstance(read[f"v{i}"], float) and read[f"v{i}"] == v for i, v in enumerate(values)), read
    assert math.isnan(read["nan"]) and read["text"] == "1e-05" and read["whole"] == 3
    core = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.inf$|^\.nan$")
    for line in dump({f"v{i}": v for i, v in enumerate(values)}).splitlines():
        assert core.match(line.split(": ", 1)[1]), line
