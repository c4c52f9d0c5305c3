"""The one gate every uploaded XML document passes first: defusedxml with DTDs forbidden
(no entity expansion, no external entities, no network)."""

from __future__ import annotations

from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeTree
from defusedxml import DefusedXmlException


class XmlRefused(ValueError):
    pass


def safe_root(document: bytes) -> Element:
    try:
        root: Element = SafeTree.fromstring(document, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise XmlRefused(f"refused XML construct: {type(exc).__name__}") from exc
    except SafeTree.ParseError as exc:
        raise XmlRefused(f"not well-formed XML: {exc}") from exc
    return root


def local_name(tag: str) -> str:
    return tag.rpartition("}")[2]
