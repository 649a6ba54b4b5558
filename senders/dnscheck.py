"""Looking a sender domain's records up (dnspython, through relay.mx's resolver): each record
the dashboard asks for is right, missing, wrong, or could not be looked up ("error": SERVFAIL,
timeout; a later check tries again and a verified domain stays verified meanwhile)."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import dns.exception
import dns.resolver

RIGHT, MISSING, WRONG, ERROR = "right", "missing", "wrong", "error"


@dataclass(frozen=True)
class Wanted:
    """One record the customer is to publish; kind: dkim, spf or dmarc."""

    kind: str
    name: str
    value: str  # what to publish (dkim: the whole TXT; spf: the mechanism; dmarc: a suggestion)
    selector: str = ""


@dataclass(frozen=True)
class Found:
    kind: str
    name: str
    status: str
    found: list[str]
    note: str = ""
    selector: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


async def _txt(resolver, name: str) -> list[str] | None:
    """The TXT strings at name (each record's strings joined), [] when there are none,
    None when the lookup failed."""
    try:
        answer = await resolver.resolve(name, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException:
        return None
    return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]


def _tags(text: str) -> dict[str, str]:
    tags = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags[key.strip().lower()] = re.sub(r"\s+", "", value)
    return tags


def judge(want: Wanted, texts: list[str] | None) -> Found:
    """What the TXT strings found at want.name say about it (a plain function: table-tested)."""
    if texts is None:
        return Found(want.kind, want.name, ERROR, [], "the lookup failed; try again later",
                     want.selector)
    if want.kind == "dkim":
        keys = [t for t in texts if "p=" in t]
        if not keys:
            return Found(want.kind, want.name, MISSING, texts, "", want.selector)
        expected = _tags(want.value)
        for text in keys:
            tags = _tags(text)
            if tags.get("p") == expected["p"] and tags.get("k", "rsa") == expected["k"]:
                return Found(want.kind, want.name, RIGHT, texts, "", want.selector)
        return Found(want.kind, want.name, WRONG, texts,
                     "a different key is published under this selector", want.selector)
    if want.kind == "spf":
        spf = [t for t in texts if t.lower().split(" ", 1)[0] == "v=spf1"]
        if not spf:
            return Found(want.kind, want.name, MISSING, texts)
        if len(spf) > 1:
            return Found(want.kind, want.name, WRONG, spf,
                         "more than one SPF record: receivers treat that as an error")
        terms = [term.lower() for term in spf[0].split()]
        mechanism = want.value.lower()
        if mechanism in terms or f"+{mechanism}" in terms:
            return Found(want.kind, want.name, RIGHT, spf)
        return Found(want.kind, want.name, WRONG, spf, f"add {want.value} before the all term")
    if want.kind == "dmarc":
        dmarc = [t for t in texts if t.replace(" ", "").lower().startswith("v=dmarc1")]
        if not dmarc:
            return Found(want.kind, want.name, MISSING, texts)
        if len(dmarc) > 1 or "p" not in _tags(dmarc[0]):
            return Found(want.kind, want.name, WRONG, dmarc,
                         "one DMARC record with a p= tag is needed")
        return Found(want.kind, want.name, RIGHT, dmarc)
    raise ValueError(f"unknown record kind {want.kind!r}")


async def check(resolver, wanted: list[Wanted]) -> list[Found]:
    """Look every wanted record up (one TXT query per name) and judge it."""
    cache: dict[str, list[str] | None] = {}
    out = []
    for want in wanted:
        if want.name not in cache:
            cache[want.name] = await _txt(resolver, want.name)
        out.append(judge(want, cache[want.name]))
    return out
