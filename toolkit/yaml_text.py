"""YAML for the manifests the toolkit writes (Ray Serve configs, Kubernetes objects), without a
YAML library: block style for mappings and lists, every string double-quoted as JSON quotes it
(a JSON string is a YAML double-quoted scalar, so "on", "1.0" or a name with a colon stay
strings), integers, booleans and null as JSON writes them, floats in the form YAML 1.1 and 1.2
both read as numbers (`_float`). A multi-line string (a config carried
inside a manifest) is a literal block (`|`) so that it stays readable."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

INDENT = "  "


def dump(value) -> str:
    """One YAML document."""
    return "\n".join(_lines(value, 0)) + "\n"


def dump_all(documents: Iterable) -> str:
    """Several documents, separated by `---`."""
    return "---\n".join(dump(document) for document in documents)


def _scalar(value) -> str:
    if isinstance(value, float) and not isinstance(value, bool):
        return _float(value)
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"YAML of {type(value).__name__} is not written here")


def _float(value: float) -> str:
    """A float every YAML reader reads as a number: YAML 1.1 (PyYAML, Ray's loader) wants a dot in
    the mantissa and a sign in the exponent (`1e-05` is a string there; `1.0e-05` a number), and
    spells the non-finite `.inf`, `-.inf`, `.nan` (as 1.2 does)."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    if exponent and exponent[0] not in "+-":
        exponent = "+" + exponent
    return mantissa + (f"e{exponent}" if exponent else "")


def _lines(value, depth: int) -> list[str]:
    pad = INDENT * depth
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        lines = []
        for key, item in value.items():
            head = f"{pad}{_scalar(str(key)) if not _plain_key(key) else key}:"
            lines += _item(head, item, depth)
        return lines
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        lines = []
        for item in value:
            nested = _lines(item, depth + 1)
            first = nested[0][len(INDENT * (depth + 1)) :]
            lines.append(f"{pad}- {first}")
            lines += nested[1:]
        return lines
    return [pad + _scalar(value)]


def _item(head: str, item, depth: int) -> list[str]:
    if isinstance(item, str) and "\n" in item and not item.startswith((" ", "\n")):
        body = item if item.endswith("\n") else item + "\n"
        chomp = "" if item.endswith("\n") and not item.endswith("\n\n") else "-" if not item.endswith("\n") else "+"
        return [f"{head} |{chomp}"] + [(INDENT * (depth + 1) + line) if line else "" for line in body[:-1].split("\n")]
    if isinstance(item, (dict, list)) and item:
        return [head] + _lines(item, depth + 1)
    return [f"{head} {_lines(item, 0)[0]}"]


def _plain_key(key) -> bool:
    """A key written without quotes: letters, digits, '_', '-', '.', '/' (Kubernetes' own keys)."""
    text = str(key)
    if text.lower() in ("y", "yes", "n", "no", "on", "off", "true", "false", "null", "~"):
        return False  # YAML 1.1 reads these as booleans or null
    return bool(text) and text[0].isalpha() and all(c.isalnum() or c in "_-./" for c in text)
