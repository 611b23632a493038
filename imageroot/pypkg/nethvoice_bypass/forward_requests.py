"""The pure core of the forward requests: what add-port-forward is asked, checked
before anything is read, then resolved into intent entries on what was read."""

from dataclasses import replace

from .forward_plan import target_port
from .model import (
    PROXY_LAN_PORTS,
    SIP_PORT,
    SIPS_PORT,
    InvalidValue,
    Refused,
    canonical_source,
    family_of,
    forward_id,
    problem,
)
from .record import ForwardEntry


def select_instance(nethvoice, requested, field="instance"):
    """The NethVoice instance named in the input, or the only one on this node."""
    if requested:
        if requested not in nethvoice:
            raise Refused.one(field, "not_found", requested)
        return requested
    if len(nethvoice) == 1:
        return next(iter(nethvoice))
    raise Refused.one(field, "required" if nethvoice else "no_nethvoice", requested)


FORWARD_FIELDS = ("instance", "protocol", "family", "port", "source", "allow_any_source", "description")


def forward_requests(data):
    """One forward from the top level, or several from `forwards` (one task for many):
    [(request, field prefix)]."""
    data = data or {}
    if "forwards" in data:
        mixed = [f for f in FORWARD_FIELDS if f in data and f != "instance"]
        if mixed:
            raise Refused.one(mixed[0], "not_allowed_with_forwards", data[mixed[0]])
        return [({"instance": data.get("instance"), **item}, f"forwards.{i}.")
                for i, item in enumerate(data["forwards"])]
    return [(data, "")]


def check_forward_request(request, prefix):
    """Canonical values for one requested forward, and the problems found in it."""
    problems = []

    def fail(name, reason, value):
        problems.append(problem(prefix + name, reason, value))

    port = request.get("port", SIP_PORT)
    if port == SIPS_PORT:
        fail("port", "sips_not_supported", port)
    elif port in PROXY_LAN_PORTS:
        fail("port", "reserved_by_proxy", port)
    source, family = request.get("source"), request.get("family")
    if source is not None:
        try:
            source = canonical_source(source, family)
            family = family or family_of(source)
        except InvalidValue as err:
            fail("source", err.reason, request.get("source"))
        if request.get("allow_any_source"):
            fail("allow_any_source", "conflicts_with_source", True)
    elif not request.get("allow_any_source"):
        fail("source", "required", None)
    return problems, {
        "instance": request.get("instance"),
        "protocol": request.get("protocol", "udp"),
        "family": family or "ipv4",
        "port": port,
        "source": source,
        "description": (request.get("description") or "").strip(),
    }


def checked_requests(data):
    """Every requested forward checked before anything is read: [(prefix, values)]."""
    requests = forward_requests(data)
    checked = [check_forward_request(request, prefix) for request, prefix in requests]
    problems = [p for found, _ in checked for p in found]
    if problems:
        raise Refused(problems)
    return [(prefix, values) for (_, prefix), (_, values) in zip(requests, checked, strict=True)]


def new_entries(checked, record, nethvoice, zone, created):
    """The record entries that checked requests become: new ones (rule to be planned),
    or the owned ones re-described. Refused when an instance is missing or another
    instance already has the forward. Returns [(entry, owned)]."""
    entries, problems = [], []
    for prefix, wanted in checked:
        try:
            instance = select_instance(nethvoice, wanted["instance"], prefix + "instance")
        except Refused as err:
            problems += err.problems
            continue
        if target_port(nethvoice[instance], wanted["protocol"]) is None:
            problems.append(problem(prefix + "instance", "no_sip_port", instance))
            continue
        fid = forward_id(wanted["family"], wanted["protocol"], wanted["port"], wanted["source"])
        existing = record.forwards.get(fid)
        if existing and existing.instance != instance:
            problems.append(problem(prefix + "source", "already_forwarded", wanted["source"]))
            continue
        if existing:
            description = wanted["description"] or existing.description
            entries.append((replace(existing, description=description), True))
            continue
        entries.append((ForwardEntry(id=fid, instance=instance, family=wanted["family"], protocol=wanted["protocol"],
                                     port=wanted["port"], source=wanted["source"], zone=zone, rule="",
                                     description=wanted["description"], created=created, updated=created), False))
    if problems:
        raise Refused(problems)
    return entries
