# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure core of the forward requests: what add-port-forward is asked, checked
before anything is read, then resolved into record entries on what was read."""

from dataclasses import replace

from .errors import InvalidValue, Refused, problem
from .forward_plan import target_port
from .guards import check_forward_port, check_source, duplicate_sources
from .model import SIP_PORT, family_of, forward_id
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
    """Canonical values for one requested forward, and the problems found in it (what
    needs nothing read: the port's own rules, the source; who holds a port is checked
    once the node is read, in new_entries)."""
    problems = []

    def fail(name, err, value):
        problems.append(problem(prefix + name, err.reason, value, str(err)))

    port, protocol = request.get("port", SIP_PORT), request.get("protocol", "udp")
    try:
        check_forward_port(port, protocol, ())
    except InvalidValue as err:
        fail("port", err, port)
    text, family, any_source = request.get("source"), request.get("family"), request.get("allow_any_source")
    source = None
    if text is not None:
        try:
            source = check_source(text, family, bool(any_source))
            family = family or family_of(text.strip())
            if source is not None and any_source:
                fail("allow_any_source", InvalidValue("conflicts_with_source", "a source and allow_any_source"),
                     True)
        except InvalidValue as err:
            fail("source", err, text)
    elif not any_source:
        fail("source", InvalidValue("required", "a source address or network, or allow_any_source"), None)
    return problems, {
        "instance": request.get("instance"),
        "protocol": protocol,
        "family": family or "ipv4",
        "port": port,
        "source": source,
        "description": (request.get("description") or "").strip(),
    }


def checked_requests(data):
    """Every requested forward checked before anything is read, the same forward twice
    in one request refused: [(prefix, values)]."""
    requests = forward_requests(data)
    checked = [check_forward_request(request, prefix) for request, prefix in requests]
    problems = [p for found, _ in checked for p in found]
    keys = [None if found else (v["family"], v["protocol"], v["port"], v["source"]) for found, v in checked]
    for index, _first in duplicate_sources(keys):
        prefix, values = requests[index][1], checked[index][1]
        problems.append(problem(prefix + "source", "duplicate", values["source"], "the same forward twice"))
    if problems:
        raise Refused(problems)
    return [(prefix, values) for (_, prefix), (_, values) in zip(requests, checked, strict=True)]


def check_ports_held(checked, holders):
    """Ports other than 5060 that something on the node holds (holders: port_holders)."""
    problems = []
    for prefix, wanted in checked:
        try:
            check_forward_port(wanted["port"], wanted["protocol"], holders)
        except InvalidValue as err:
            problems.append(problem(prefix + "port", err.reason, wanted["port"], str(err)))
    if problems:
        raise Refused(problems)


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
