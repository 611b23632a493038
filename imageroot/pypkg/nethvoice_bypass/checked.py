# SPDX-License-Identifier: GPL-3.0-or-later
"""Checked reading of JSON documents (pure): each helper returns the value or raises
RecordDamaged naming the path where the document does not fit."""

from .errors import RecordDamaged


def document(doc, path, keys, optional=()):
    if not isinstance(doc, dict):
        raise RecordDamaged(path, "not an object")
    missing = [k for k in keys if k not in doc]
    unknown = [k for k in doc if k not in keys and k not in optional]
    if missing:
        raise RecordDamaged(path, f"missing {', '.join(missing)}")
    if unknown:
        raise RecordDamaged(path, f"unknown {', '.join(unknown)}")
    return doc


def typed(value, kinds, path, nullable=False):
    if value is None and nullable:
        return None
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise RecordDamaged(path, f"not a {kinds[0].__name__}")
    return value


def text(doc, key, path, nullable=False):
    return typed(doc[key], (str,), f"{path}.{key}", nullable)


def texts(value, path):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecordDamaged(path, "not a list of strings")
    return tuple(value)


def mapping(doc, path, parse, keyed=True):
    if not isinstance(doc, dict):
        raise RecordDamaged(path, "not an object")
    parsed = {key: parse(value, f"{path}.{key}") for key, value in doc.items()}
    for key, value in parsed.items():
        if keyed and value.key != key:
            raise RecordDamaged(f"{path}.{key}", f"keyed {key!r} but names {value.key!r}")
    return parsed
