"""What Kubernetes' API server accepts as names, addresses and quantities, checked before a
manifest is written (`resnet-deploy kubernetes`, the RayService of `resnet-deploy ray`): each
refusal says the rule, as the API server would apply it."""

from __future__ import annotations

import ipaddress
import re

from toolkit.errors import ToolkitError

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
HOST_LABEL = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$")
# Kubernetes' quantity: a decimal number with an SI or binary suffix, or an exponent
QUANTITY = re.compile(r"^(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def object_name(name: str, what: str, longest: int = 63) -> str:
    """A name a Service may carry (DNS-1035: lower-case letters, digits and '-', a letter first, a
    letter or digit last), at most `longest` characters (room left for suffixes such as -metrics)."""
    if not isinstance(name, str) or not DNS_1035_LABEL.match(name) or len(name) > longest:
        raise ToolkitError(
            f"{what} must be lower-case letters, digits and '-', starting with a letter and ending with a letter or "
            f"digit, at most {longest} characters (a Kubernetes Service's name), got {_shown(name)}"
        )
    return name


def namespace(name: str) -> str:
    """A namespace (DNS-1123 label: lower-case letters, digits and '-', at most 63)."""
    if not isinstance(name, str) or not DNS_1123_LABEL.match(name) or len(name) > 63:
        raise ToolkitError(
            "--namespace must be lower-case letters, digits and '-', starting and ending with a letter or digit, at "
            f"most 63 characters, got {_shown(name)}"
        )
    return name


def claim_name(name: str) -> str:
    """A PersistentVolumeClaim's name (DNS-1123 subdomain: labels of lower-case letters, digits
    and '-', joined by '.', at most 253)."""
    if not name or len(name) > 253 or not all(DNS_1123_LABEL.match(part) for part in name.split(".")):
        raise ToolkitError(
            "the claim of --storage-uri pvc://CLAIM[/PATH] must be lower-case letters, digits, '-' and '.', starting and "
            f"ending with a letter or digit, at most 253 characters, got {_shown(name)}"
        )
    return name


def claim_path(path: str) -> str:
    """A folder inside a claim: relative, without '..' or empty parts."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if any(part == ".." for part in parts) or any(not part.isprintable() for part in parts):
        raise ToolkitError(f"the PATH of --storage-uri pvc://CLAIM/PATH must stay inside the claim, got {_shown(path)}")
    return "/".join(parts)


def host(address: str, option: str) -> str:
    """An address to listen on: an IP address, or a host name (DNS labels joined by '.')."""
    try:
        ipaddress.ip_address(address)
        return address
    except ValueError:
        pass
    if not address or len(address) > 253 or not all(HOST_LABEL.match(label) for label in address.split(".")):
        raise ToolkitError(f"{option} must be an IP address or a host name, got {_shown(address)}")
    return address


def quantity(value: str, option: str) -> str:
    """A Kubernetes resource quantity ("2", "500m", "4Gi", "1.5")."""
    if not isinstance(value, str) or not QUANTITY.match(value):
        raise ToolkitError(f"{option} must be a Kubernetes quantity (2, 500m, 4Gi), got {_shown(value)}")
    return value


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
