"""JSON Schema checks shaped like the NS8 agent's.

The agent validates with gojsonschema v1.2.0 and turns each ResultError into
{"parameter", "error", "value", "field"} (core/agent/validation/validation.go).
Here jsonschema's Draft7Validator, with a FormatChecker that knows gojsonschema's
format names, decides whether a document is valid; a small walker that follows
gojsonschema's traversal then lists the errors with the same types, fields, values
and (where Go's order is defined) the same order. Where Go iterates a map (object
properties, patternProperties) we use document order instead of Go's random one.
"""

import ipaddress
import json
import math
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

import jsonschema
import referencing
import referencing.exceptions
from referencing.jsonschema import DRAFT7

ROOT = "(root)"


class SchemaFault(Exception):
    """The schema itself is unusable: the agent aborts the action with exit 1."""


# ---------------------------------------------------------------- Go-like JSON

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
               "\u2029": "\\u2029"}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def _go_float(value):
    """float64 as encoding/json prints it (the agent decodes every number as float64)."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"unsupported value: {value}")
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    shortest = Decimal(repr(float(value))).normalize()
    if 1e-6 <= abs(value) < 1e21:
        return format(shortest, "f")
    mantissa, exponent = format(shortest, "E").split("E")
    return f"{mantissa}e{exponent[0]}{int(exponent[1:])}"


def go_json(obj):
    """json.Marshal of a decoded document: compact, sorted keys, HTML-safe escapes."""
    if obj is None:
        return "null"
    if obj is True or obj is False:
        return "true" if obj else "false"
    if isinstance(obj, int | float):
        return _go_float(float(obj))
    if isinstance(obj, str):
        text = json.dumps(obj, ensure_ascii=False)
        return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group()], text)
    if isinstance(obj, dict):
        return "{" + ",".join(f"{go_json(str(k))}:{go_json(obj[k])}" for k in sorted(obj)) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(go_json(v) for v in obj) + "]"
    raise TypeError(f"not a JSON value: {obj!r}")


# ---------------------------------------------------------------- formats

# gojsonschema v1.2.0 FormatCheckers: unknown names pass; a known name fails on any
# number (validateNumber hands it a big.Rat, which no checker accepts as a string);
# other non-strings never reach a checker.
FORMAT_CHECKER = jsonschema.FormatChecker(formats=())

_HOSTNAME = re.compile(
    r"^([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])"
    r"(\.([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]{0,61}[a-zA-Z0-9]))*$")
_UUID = re.compile(r"^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$")
_JSON_POINTER = re.compile(r"^(?:/(?:[^~/]|~0|~1)*)*$")
_REL_JSON_POINTER = re.compile(r"^(?:0|[1-9][0-9]*)(?:#|(?:/(?:[^~/]|~0|~1)*)*)$")
_URI_TEMPLATE = re.compile(r"^([^{]*({[^}]*})?)*$")
_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+$")


def _go_format(name):
    def register(check):
        def wrapper(instance):
            if isinstance(instance, bool):
                return True
            if isinstance(instance, int | float):
                return False
            if not isinstance(instance, str):
                return True
            return bool(check(instance))
        FORMAT_CHECKER.checks(name)(wrapper)
        return check
    return register


def _ip(text):
    if "%" in text:  # Go's net.ParseIP has no zones
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _go_time(text, with_date):
    head = text
    if with_date:
        if len(text) < 11 or text[10] not in "T":
            return False
        try:
            date.fromisoformat(text[:10])
        except ValueError:
            return False
        head = text[11:]
    m = _TIME.match(head)
    if not m or (with_date and not m.group(5)):
        return False
    hour, minute, second = (int(g) for g in m.group(1, 2, 3))
    return hour < 24 and minute < 60 and second < 60


def _parses_as_url(text):
    try:
        parts = urllib.parse.urlsplit(text)
        _ = parts.port
    except ValueError:
        return None
    if any(c in text for c in " \t\n") or "\\" in text:
        return None
    return parts


_go_format("ipv4")(lambda s: _ip(s) is not None and "." in s)
_go_format("ipv6")(lambda s: _ip(s) is not None and ":" in s)
_go_format("hostname")(lambda s: _HOSTNAME.match(s) and len(s) < 256)
_go_format("email")(_EMAIL.match)
_go_format("idn-email")(_EMAIL.match)
_go_format("uuid")(_UUID.match)
_go_format("json-pointer")(_JSON_POINTER.match)
_go_format("relative-json-pointer")(_REL_JSON_POINTER.match)
_go_format("date")(lambda s: len(s) == 10 and _try(date.fromisoformat, s))
_go_format("time")(lambda s: _go_time(s, with_date=False))
_go_format("date-time")(lambda s: _go_time(s, True) or _go_time(s, False)
                        or (len(s) == 10 and _try(date.fromisoformat, s)))
_go_format("uri")(lambda s: (p := _parses_as_url(s)) is not None and p.scheme != "")
_go_format("iri")(lambda s: (p := _parses_as_url(s)) is not None and p.scheme != "")
_go_format("uri-reference")(lambda s: _parses_as_url(s) is not None)
_go_format("iri-reference")(lambda s: _parses_as_url(s) is not None)
_go_format("uri-template")(lambda s: (p := _parses_as_url(s)) is not None
                           and _URI_TEMPLATE.match(p.path))
_go_format("regex")(lambda s: s == "" or _try(re.compile, s))


def _try(fn, arg):
    try:
        fn(arg)
    except (ValueError, re.error):
        return False
    return True


# ---------------------------------------------------------------- errors

_DESCRIPTIONS = {
    "false": "False always fails validation",
    "required": "{property} is required",
    "invalid_type": "Invalid type. Expected: {expected}, given: {given}",
    "number_any_of": "Must validate at least one schema (anyOf)",
    "number_one_of": "Must validate one and only one schema (oneOf)",
    "number_all_of": "Must validate all the schemas (allOf)",
    "number_not": "Must not validate the schema (not)",
    "missing_dependency": "Has a dependency on {dependency}",
    "const": "{field} does not match: {allowed}",
    "enum": "{field} must be one of the following: {allowed}",
    "array_no_additional_items": "No additional items allowed on array",
    "array_min_items": "Array must have at least {min} items",
    "array_max_items": "Array must have at most {max} items",
    "unique": "{type} items at index {i} and {j} must be unique",
    "contains": "At least one of the items must match",
    "array_min_properties": "Must have at least {min} properties",
    "array_max_properties": "Must have at most {max} properties",
    "additional_property_not_allowed": "Additional property {property} is not allowed",
    "invalid_property_name": 'Property name of "{property}" does not match',
    "string_gte": "String length must be greater than or equal to {min}",
    "string_lte": "String length must be less than or equal to {max}",
    "pattern": "Does not match pattern '{pattern}'",
    "format": "Does not match format '{format}'",
    "multiple_of": "Must be a multiple of {multiple}",
    "number_gte": "Must be greater than or equal to {min}",
    "number_gt": "Must be greater than {min}",
    "number_lte": "Must be less than or equal to {max}",
    "number_lt": "Must be less than {max}",
    "condition_then": 'Must validate "then" as "if" was valid',
    "condition_else": 'Must validate "else" as "if" was not valid',
}


@dataclass
class ResultError:
    type: str
    context: tuple
    value: object
    details: dict = field(default_factory=dict)

    @property
    def field(self):
        # gojsonschema v1.2.0 Field(): the context without "(root).", never the property
        text = ".".join(self.context)
        return text[len(ROOT) + 1:] if text.startswith(ROOT + ".") else text

    @property
    def description(self):
        try:
            return _DESCRIPTIONS[self.type].format(field=self.field, **self.details)
        except (KeyError, IndexError):
            return self.type

    def item(self):
        """One element of the agent's list, as validation.ToJSON builds it."""
        parameter = self.field.split(".", 1)[0]
        return {"parameter": parameter, "error": f"{parameter}_{self.type}",
                "value": self.value, "field": self.field}


def errors_to_json(errors):
    """The list the agent prints on stdout (its struct field order, Go encoding)."""
    items = []
    for err in errors:
        it = err.item()
        items.append("{" + ",".join(f'"{k}":{go_json(it[k])}'
                                    for k in ("parameter", "error", "value", "field")) + "}")
    return "[" + ",".join(items) + "]"


def errors_to_text(errors):
    """Go's %v of the error slice, as in "Validation errors: %v"."""
    return "[" + " ".join(f"{e.field}: {e.description}" for e in errors) + "]"


# ---------------------------------------------------------------- the walker

def _canonical(value):
    """marshalWithoutNumber: numbers compared as float64, objects with sorted keys."""
    return go_json(value)


def _type_of(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "integer" if float(value).is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class _Result:
    """Errors plus gojsonschema's score, used to pick the best anyOf/oneOf branch."""

    def __init__(self):
        self.errors = []
        self.score = 0

    @property
    def valid(self):
        return not self.errors

    def add(self, type_, ctx, value, **details):
        self.errors.append(ResultError(type_, ctx, value, details))
        self.score -= 2

    def merge(self, other):
        self.errors.extend(other.errors)
        self.score += other.score


class _Walker:
    def __init__(self, resolver):
        self.resolver = resolver

    def sub(self, schema, value, ctx, resolver):
        result = _Result()
        self.walk(schema, value, ctx, result, resolver)
        return result

    def walk(self, schema, value, ctx, result, resolver):
        if isinstance(schema, bool):
            if not schema:
                result.add("false", ctx, value)
            return
        if "$id" in schema and isinstance(schema["$id"], str):
            resolver = resolver.in_subresource(DRAFT7.create_resource(schema))
        if "$ref" in schema:
            try:
                resolved = resolver.lookup(schema["$ref"])
            except referencing.exceptions.Unresolvable as err:
                raise SchemaFault(f"unresolvable $ref {schema['$ref']}: {err}") from err
            self.walk(resolved.contents, value, ctx, result, resolved.resolver)
            return
        given = _type_of(value)
        types = schema.get("type")
        if types is not None:
            allowed = [types] if isinstance(types, str) else list(types)
            ok = given in allowed or (given == "integer" and "number" in allowed)
            if not ok:
                expected = allowed[0] if len(allowed) == 1 else "[" + ",".join(allowed) + "]"
                result.add("invalid_type", ctx, value, expected=expected, given=given)
                return
        self.combinators(schema, value, ctx, result, resolver)
        if given == "array":
            self.array(schema, value, ctx, result, resolver)
            self.common(schema, value, ctx, result)
        elif given == "object":
            self.object(schema, value, ctx, result, resolver)
            self.common(schema, value, ctx, result)
            for name, child in (schema.get("properties") or {}).items():
                if name in value:
                    self.walk(child, value[name], ctx + (name,), result, resolver)
        else:
            if given in ("integer", "number"):
                self.number(schema, value, ctx, result)
            self.common(schema, value, ctx, result)
            if given == "string":
                self.string(schema, value, ctx, result)
        result.score += 1

    def combinators(self, schema, value, ctx, result, resolver):
        if schema.get("anyOf"):
            best = None
            for branch in schema["anyOf"]:
                r = self.sub(branch, value, ctx, resolver)
                if r.valid:
                    break
                if best is None or r.score > best.score:
                    best = r
            else:
                result.add("number_any_of", ctx, value)
                if best is not None:
                    result.merge(best)
        if schema.get("oneOf"):
            passed, best = 0, None
            for branch in schema["oneOf"]:
                r = self.sub(branch, value, ctx, resolver)
                if r.valid:
                    passed += 1
                elif passed == 0 and (best is None or r.score > best.score):
                    best = r
            if passed != 1:
                result.add("number_one_of", ctx, value)
                if passed == 0:
                    result.merge(best)
        if schema.get("allOf"):
            passed = 0
            for branch in schema["allOf"]:
                r = self.sub(branch, value, ctx, resolver)
                passed += r.valid
                result.merge(r)
            if passed != len(schema["allOf"]):
                result.add("number_all_of", ctx, value)
        if "not" in schema and self.sub(schema["not"], value, ctx, resolver).valid:
            result.add("number_not", ctx, value)
        if schema.get("dependencies") and isinstance(value, dict):
            for key in value:
                dep = schema["dependencies"].get(key)
                if isinstance(dep, list):
                    for needed in dep:
                        if needed not in value:
                            result.add("missing_dependency", ctx, value, dependency=needed)
                elif dep is not None:
                    self.walk(dep, value, ctx, result, resolver)
        if "if" in schema:
            cond = self.sub(schema["if"], value, ctx, resolver)
            branch, kind = ("then", "condition_then") if cond.valid else ("else", "condition_else")
            if branch in schema:
                r = self.sub(schema[branch], value, ctx, resolver)
                if not r.valid:
                    result.add(kind, ctx, value)
                    result.merge(r)
        result.score += 1

    def common(self, schema, value, ctx, result):
        if "const" in schema and _canonical(value) != _canonical(schema["const"]):
            result.add("const", ctx, value, allowed=_canonical(schema["const"]))
        if schema.get("enum"):
            allowed = [_canonical(v) for v in schema["enum"]]
            if _canonical(value) not in allowed:
                result.add("enum", ctx, value, allowed=", ".join(allowed))
        result.score += 1

    def array(self, schema, value, ctx, result, resolver):
        items = schema.get("items")
        if isinstance(items, dict | bool):
            for i, item in enumerate(value):
                result.merge(self.sub(items, item, ctx + (str(i),), resolver))
        elif isinstance(items, list) and items:
            for i, (sch, item) in enumerate(zip(items, value, strict=False)):
                result.merge(self.sub(sch, item, ctx + (str(i),), resolver))
            extra = schema.get("additionalItems")
            if len(items) < len(value):
                if extra is False:
                    result.add("array_no_additional_items", ctx, value)
                elif isinstance(extra, dict):
                    for i in range(len(items), len(value)):
                        result.merge(self.sub(extra, value[i], ctx + (str(i),), resolver))
        if "minItems" in schema and len(value) < schema["minItems"]:
            result.add("array_min_items", ctx, value, min=schema["minItems"])
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            result.add("array_max_items", ctx, value, max=schema["maxItems"])
        if schema.get("uniqueItems"):
            seen = {}
            for j, item in enumerate(value):
                key = _canonical(item)
                if key in seen:
                    result.add("unique", ctx, value, type="array", i=seen[key], j=j)
                seen[key] = j
        if "contains" in schema:
            best = None
            for i, item in enumerate(value):
                r = self.sub(schema["contains"], item, ctx + (str(i),), resolver)
                if r.valid:
                    break
                if best is None or r.score > best.score:
                    best = r
            else:
                result.add("contains", ctx, value)
                if best is not None:
                    result.merge(best)
        result.score += 1

    def object(self, schema, value, ctx, result, resolver):
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            result.add("array_min_properties", ctx, value, min=schema["minProperties"])
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            result.add("array_max_properties", ctx, value, max=schema["maxProperties"])
        for name in schema.get("required") or []:
            if name in value:
                result.score += 1
            else:
                result.add("required", ctx, value, property=name)
        properties = schema.get("properties") or {}
        patterns = schema.get("patternProperties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            matched = False
            for pattern, sch in patterns.items():
                if re.search(pattern, key):
                    matched = True
                    result.merge(self.sub(sch, item, ctx + (key,), resolver))
            if matched:
                result.score += 1
            if key in properties or matched:
                continue
            if extra is False:
                result.add("additional_property_not_allowed", ctx, item, property=key)
            elif isinstance(extra, dict):
                result.merge(self.sub(extra, item, ctx + (key,), resolver))
        if "propertyNames" in schema:
            for key in value:
                r = self.sub(schema["propertyNames"], key, ctx, resolver)
                if not r.valid:
                    result.add("invalid_property_name", ctx, value, property=key)
                    result.merge(r)
        result.score += 1

    def string(self, schema, value, ctx, result):
        if "minLength" in schema and len(value) < schema["minLength"]:
            result.add("string_gte", ctx, value, min=schema["minLength"])
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            result.add("string_lte", ctx, value, max=schema["maxLength"])
        if "pattern" in schema and not re.search(schema["pattern"], value):
            result.add("pattern", ctx, value, pattern=schema["pattern"])
        if "format" in schema and not FORMAT_CHECKER.conforms(value, schema["format"]):
            result.add("format", ctx, value, format=schema["format"])
        result.score += 1

    def number(self, schema, value, ctx, result):
        num = Decimal(repr(float(value))) if isinstance(value, float) else Decimal(value)

        def dec(x):
            return Decimal(repr(float(x))) if isinstance(x, float) else Decimal(x)

        if "multipleOf" in schema and (num / dec(schema["multipleOf"])) % 1 != 0:
            result.add("multiple_of", ctx, value, multiple=schema["multipleOf"])
        if "maximum" in schema and num > dec(schema["maximum"]):
            result.add("number_lte", ctx, value, max=schema["maximum"])
        if "exclusiveMaximum" in schema and num >= dec(schema["exclusiveMaximum"]):
            result.add("number_lt", ctx, value, max=schema["exclusiveMaximum"])
        if "minimum" in schema and num < dec(schema["minimum"]):
            result.add("number_gte", ctx, value, min=schema["minimum"])
        if "exclusiveMinimum" in schema and num <= dec(schema["exclusiveMinimum"]):
            result.add("number_gt", ctx, value, min=schema["exclusiveMinimum"])
        if "format" in schema and not FORMAT_CHECKER.conforms(value, schema["format"]):
            result.add("format", ctx, value, format=schema["format"])
        result.score += 1


# ---------------------------------------------------------------- entry point

def load_validator(schema_path, definitions_path=None):
    """Compile a schema file, with the install dir's validator-definitions.json if any.

    Raises SchemaFault where gojsonschema's loader or compiler would fail.
    """
    try:
        schema = json.loads(Path(schema_path).read_text())
        jsonschema.Draft7Validator.check_schema(schema)
    except (OSError, ValueError, jsonschema.SchemaError) as err:
        raise SchemaFault(str(err)) from err
    registry = referencing.Registry()
    if definitions_path and Path(definitions_path).is_file():
        try:
            definitions = json.loads(Path(definitions_path).read_text())
            resource = DRAFT7.create_resource(definitions)
        except ValueError as err:
            raise SchemaFault(f"{definitions_path}: {err}") from err
        registry = registry.with_resource(definitions.get("$id", "validator-definitions.json"),
                                          resource)
    root_id = schema.get("$id", "") if isinstance(schema, dict) else ""
    registry = registry.with_resource(root_id, DRAFT7.create_resource(schema))
    return jsonschema.Draft7Validator(schema, registry=registry,
                                      format_checker=FORMAT_CHECKER)


def validate(schema_path, instance, definitions_path=None):
    """The agent's list of ResultError for `instance` ([] when valid)."""
    validator = load_validator(schema_path, definitions_path)
    try:
        if validator.is_valid(instance):
            return []
    except referencing.exceptions.Unresolvable as err:
        raise SchemaFault(f"unresolvable reference: {err}") from err
    resolver = validator._resolver  # noqa: SLF001 - the registry-bound resolver of the root
    result = _Result()
    _Walker(resolver).walk(validator.schema, instance, (ROOT,), result, resolver)
    if result.errors:
        return result.errors
    # the walker missed what jsonschema saw: never report "valid" for an invalid document
    return [ResultError(e.validator if isinstance(e.validator, str) else "invalid",
                        (ROOT, *map(str, e.absolute_path)), e.instance)
            for e in validator.iter_errors(instance)]


def task_from_json(raw):
    """A task object as Go's json.Unmarshal into models.Task accepts it (agent and
    api-server both bind it so): an object whose string fields are strings."""
    task = json.loads(raw)
    if not isinstance(task, dict):
        raise ValueError("cannot unmarshal into Go value of type models.Task")
    for key in ("id", "action", "queue", "user", "parent"):
        if task.get(key) is not None and not isinstance(task[key], str):
            raise ValueError(f"cannot unmarshal into Go struct field Task.{key}")
    return task
