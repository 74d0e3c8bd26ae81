"""Triton's `config.pbtxt` read without tritonclient or its protobuf classes: the text format of
protocol buffers as a tree of dicts (each field a list of its values: scalars, or nested dicts),
so that what reads a repository (`resnet-deploy kubernetes` on a board, `serve` before it starts a
server) needs no serving package. Bounded: a config over `MAX_BYTES` or nested past `MAX_DEPTH` is
refused, and anything that is not the text format is one sentence naming the file and the place."""

from __future__ import annotations

import re
from pathlib import Path

from toolkit.errors import ToolkitError

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
TOKEN = re.compile(
    r"""\s*(?:(?P<comment>\#[^\n]*)|(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')|(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[fF]?)|(?P<word>[A-Za-z_][\w.]*)|(?P<mark>[{}\[\]<>:,;]))""",
    re.S,
)
CLOSING = {"{": "}", "<": ">"}


class ConfigTextError(ToolkitError):
    """A config that is not protobuf's text format (the message names the file and the place)."""


def read_config(path: Path) -> dict:
    """The config of a model folder's `config.pbtxt` as a tree (see the module docstring)."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigTextError(f"{path} is over {MAX_BYTES >> 20} MB: not a model's config")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigTextError(
            f"{path} can't be read as a config ({getattr(error, 'strerror', None) or error})"
        ) from None
    return parse_config(text, str(path))


def parse_config(text: str, name: str = "the config") -> dict:
    tokens = _tokens(text, name)
    message, position = _message(tokens, 0, None, name, 0)
    return message


def first(message: dict, field: str, default=None):
    """The first value of `field`, or `default`."""
    values = message.get(field)
    return values[0] if values else default


def _tokens(text: str, name: str) -> list[tuple[str, str, int]]:
    tokens, position = [], 0
    while position < len(text):
        match = TOKEN.match(text, position)
        if match is None or match.end() == position:
            if text[position:].strip() == "":
                break
            line = text.count("\n", 0, position) + 1
            raise ConfigTextError(
                f"{name} is not protobuf's text format (line {line}: {text[position:].strip()[:30]!r})"
            )
        kind = match.lastgroup
        if kind != "comment":
            tokens.append((kind, match.group(kind), text.count("\n", 0, match.start(kind)) + 1))
        position = match.end()
    return tokens


def _message(tokens, position: int, closing: str | None, name: str, depth: int) -> tuple[dict, int]:
    if depth > MAX_DEPTH:
        raise ConfigTextError(f"{name} nests messages over {MAX_DEPTH} deep")
    message: dict[str, list] = {}
    while position < len(tokens):
        kind, value, line = tokens[position]
        if kind == "mark" and value == closing:
            return message, position + 1
        if kind == "mark" and value in ",;":
            position += 1
            continue
        if kind != "word":
            raise ConfigTextError(f"{name} is not protobuf's text format (line {line}: a field name, not {value!r})")
        field, position = value, position + 1
        if _is(tokens, position, ":"):
            position += 1
        if _is(tokens, position, "["):
            values, position = _list(tokens, position + 1, name, depth, line)
            message.setdefault(field, []).extend(values)
        else:
            item, position = _value(tokens, position, name, depth, line)
            message.setdefault(field, []).append(item)
    if closing is not None:
        raise ConfigTextError(f"{name} ends inside a message (a {closing!r} is missing)")
    return message, position


def _list(tokens, position: int, name: str, depth: int, line: int) -> tuple[list, int]:
    values = []
    while not _is(tokens, position, "]"):
        if position >= len(tokens):
            raise ConfigTextError(f"{name} ends inside a list (line {line}: a ']' is missing)")
        if _is(tokens, position, ","):
            position += 1
            continue
        item, position = _value(tokens, position, name, depth, line)
        values.append(item)
    return values, position + 1


def _value(tokens, position: int, name: str, depth: int, line: int):
    if position >= len(tokens):
        raise ConfigTextError(f"{name} ends after a field name (line {line})")
    kind, value, line = tokens[position]
    if kind == "mark" and value in CLOSING:
        return _message(tokens, position + 1, CLOSING[value], name, depth + 1)
    if kind == "string":
        return _unquote(value[1:-1]), position + 1
    if kind == "number":
        number = value.rstrip("fF")
        return (int(number) if re.fullmatch(r"[-+]?\d+", number) else float(number)), position + 1
    if kind == "word":
        return {"true": True, "false": False}.get(value, value), position + 1
    raise ConfigTextError(f"{name} is not protobuf's text format (line {line}: a value, not {value!r})")


def _is(tokens, position: int, mark: str) -> bool:
    return position < len(tokens) and tokens[position][0] == "mark" and tokens[position][1] == mark


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text)


PLATFORM_BACKENDS = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt", "pytorch_libtorch": "pytorch"}


def repository_configs(repository: Path) -> dict[str, dict]:
    """The models of a repository (their folder names: those holding a config.pbtxt) with their
    configs read (`read_config`)."""
    repository = Path(repository)
    if not repository.is_dir():
        raise ToolkitError(f"model repository {repository} {'is a file' if repository.exists() else 'does not exist'}")
    models = sorted(p.name for p in repository.iterdir() if (p / "config.pbtxt").is_file())
    if not models:
        raise ToolkitError(f"{repository} holds no model (no NAME/config.pbtxt); write one with resnet-deploy triton")
    return {name: read_config(repository / name / "config.pbtxt") for name in models}


def triton_backend(config: dict) -> str:
    """The Triton backend a model's config needs ("python", "onnxruntime", "tensorrt", ...)."""
    platform = first(config, "platform")
    return first(config, "backend") or PLATFORM_BACKENDS.get(platform, platform or "unnamed")


def model_backends(repository: Path) -> dict[str, str]:
    """The models of a repository (their folder names) with the Triton backend each needs."""
    return {name: triton_backend(config) for name, config in repository_configs(repository).items()}


def instance_kinds(config: dict) -> set[str]:
    """Where a model's instances run: the kinds of its instance groups (Triton's default, KIND_AUTO,
    for a group that names none; KIND_AUTO alone without groups)."""
    groups = [group for group in config.get("instance_group", []) if isinstance(group, dict)]
    return {str(first(group, "kind", "KIND_AUTO")) for group in groups} or {"KIND_AUTO"}
