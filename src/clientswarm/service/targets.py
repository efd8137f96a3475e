"""Which targets a shared service lets clusters aim at (``serve --allow-target``).

A rule is ``*`` (anywhere), an IP address or CIDR block (``10.0.0.0/8``, ``::1``), a host
name (``vllm.internal``) or every name under a domain (``*.svc.cluster.local``), each
optionally with a port (``vllm.internal:8000``, ``[::1]:8000``, ``127.0.0.1:8000``). An IP
address in a URL matches address rules; a host name matches name rules only, so a name is
never resolved to decide (DNS can change between the check and the request): allow the names
you use. ``localhost`` is part of the loopback default.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK_RULES = ("127.0.0.0/8", "::1", "localhost")
"""What a service allows by default: targets on its own machine."""


@dataclass(frozen=True)
class TargetRule:
    """One allowed place: any host, a network, or a host name; any port or one."""

    network: IPNetwork | None = None
    name: str | None = None
    port: int | None = None

    def matches(self, host: str, port: int) -> bool:
        """Whether ``host:port`` (host lower-case, IPv6 without brackets) is allowed."""
        if self.port is not None and self.port != port:
            return False
        if self.network is None and self.name is None:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if self.name is None:
                return False
            if self.name.startswith("*."):
                return host.endswith(self.name[1:])
            return self.name == host
        return self.network is not None and address in self.network

    def __str__(self) -> str:
        where = str(self.network) if self.network is not None else (self.name or "*")
        if self.port is None:
            return where
        if self.network is not None and self.network.version == 6:
            where = f"[{where}]"
        return f"{where}:{self.port}"


def parse_rule(text: str) -> TargetRule:
    """A rule from ``HOST[:PORT]``, ``CIDR`` or ``*``; ValueError saying what is accepted."""
    value = text.strip()
    if value == "*":
        return TargetRule()
    host, port = _split_port(value)
    try:
        return TargetRule(network=ipaddress.ip_network(host, strict=False), port=port)
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    labels = name.removeprefix("*.").split(".")
    if not name or not all(label and label.replace("-", "").isalnum() for label in labels):
        raise ValueError(
            f"--allow-target {text!r}: expected HOST[:PORT], *.DOMAIN, an IP address or CIDR "
            "block (10.0.0.0/8, ::1), or * for anywhere"
        )
    return TargetRule(name=name, port=port)


def _split_port(value: str) -> tuple[str, int | None]:
    if value.startswith("["):  # [v6]:port
        host, closed, rest = value[1:].partition("]")
        if not closed:
            raise ValueError(f"--allow-target {value!r}: the '[' of an IPv6 address is not closed")
        return host, _port(rest.removeprefix(":"), value) if rest else None
    if value.count(":") == 1:  # host:port or v4:port (a bare v6 address has several colons)
        host, _, port = value.partition(":")
        return host, _port(port, value)
    return value, None


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"--allow-target {whole!r}: the port must be a number from 1 to 65535")
    return int(text)


@dataclass(frozen=True)
class TargetRules:
    """The targets a service allows: a URL is allowed when one rule matches it."""

    rules: tuple[TargetRule, ...]

    @classmethod
    def parse(cls, values: Sequence[str]) -> TargetRules:
        """Rules from ``--allow-target`` values (the loopback default when there are none)."""
        return cls(tuple(parse_rule(value) for value in (values or LOOPBACK_RULES)))

    def allows(self, url: str) -> bool:
        """Whether ``url`` (http or https) points at an allowed host and port."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower().rstrip(".")
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:  # a port out of range, brackets that do not close
            return False
        return bool(host) and any(rule.matches(host, port) for rule in self.rules)

    def __str__(self) -> str:
        return ", ".join(str(rule) for rule in self.rules)


__all__ = ["LOOPBACK_RULES", "TargetRule", "TargetRules", "parse_rule"]
