"""The dev action runner follows the NS8 agent contract (core/agent, gojsonschema v1.2.0)."""

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from ns8dev import procs, validation
from ns8dev.agent import Agent, Processor, Step, build_agent_env, obscure_task_input
from ns8dev.sandbox import DEFAULT_USER_ACL

REPO = Path(__file__).resolve().parents[2]
DEV = REPO / "dev"
SCHEMA = "http://json-schema.org/draft-07/schema#"



# ---------------------------------------------------------------- helpers

def write_action(root, action, files):
    """files: name -> text; steps (not *.json) are made executable."""
    action_dir = Path(root) / action
    action_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = action_dir / name
        path.write_text(text if isinstance(text, str) else json.dumps(text))
        if not name.endswith(".json"):
            path.chmod(0o755)
    return action_dir


def sh(body):
    return "#!/bin/sh\n" + body + "\n"


@pytest.fixture
def node(tmp_path):
    install = tmp_path / "nethvoice-bypass1"
    (install / "actions").mkdir(parents=True)
    (install / "state").mkdir()
    (install / "state" / "environment").write_text("MODULE_ID=test1\nNODE_ID=1\n")
    base = tmp_path / "base-actions"
    base.mkdir()
    log, tee = io.StringIO(), io.BytesIO()
    env = build_agent_env("module/test1", install)
    agent = Agent("module/test1", install, base, env, log=log, tee=tee)
    return SimpleNamespace(agent=agent, install=install, actions=install / "actions", base=base,
                           state=install / "state", log=log, tee=tee)


def errors_for(tmp_path, schema, instance, definitions=None):
    """The agent's error list for instance, by gojsonschema itself (dev/validator)."""
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"$schema": SCHEMA, **schema}))
    if definitions is not None:
        (tmp_path / "validator-definitions.json").write_text(json.dumps(definitions))
    verdict = validation.validate("input", path, validation.go_json(instance).encode(), tmp_path)
    assert verdict.exit_code in (0, 10), verdict.error
    return verdict.errors


FORWARD = {
    "type": "object",
    "required": ["source", "rules"],
    "additionalProperties": False,
    "properties": {
        "source": {"type": "string", "format": "ipv4"},
        "name": {"type": "string", "pattern": "^[a-z]+$"},
        "protocol": {"type": "string", "enum": ["udp", "tcp"]},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "rules": {
            "type": "array", "minItems": 1,
            "items": {"type": "object", "required": ["to"],
                      "properties": {"to": {"type": "string", "format": "ipv6"}}},
        },
    },
}


# ---------------------------------------------------------------- validation errors

def test_missing_top_level_property_is_reported_on_the_root_object(tmp_path):
    assert errors_for(tmp_path, FORWARD, {"rules": [{"to": "::1"}]}) == [
        {"parameter": "(root)", "error": "(root)_required",
         "value": {"rules": [{"to": "::1"}]}, "field": "(root)"},
    ]


def test_missing_nested_property_is_reported_on_the_array_item(tmp_path):
    errors = errors_for(tmp_path, FORWARD, {"source": "192.0.2.1", "rules": [{"to": "::1"}, {}]})
    assert errors == [
        {"parameter": "rules", "error": "rules_required", "value": {}, "field": "rules.1"},
    ]


def test_format_pattern_enum_range_and_nested_format_errors(tmp_path):
    data = {"source": "192.0.2", "name": "Bad Name", "protocol": "icmp", "port": 70000,
            "rules": [{"to": "192.0.2.1"}]}
    by_field = sorted(errors_for(tmp_path, FORWARD, data), key=lambda e: e["field"])  # Go's map order varies
    assert by_field == sorted([
        {"parameter": "source", "error": "source_format", "value": "192.0.2", "field": "source"},
        {"parameter": "name", "error": "name_pattern", "value": "Bad Name", "field": "name"},
        {"parameter": "protocol", "error": "protocol_enum", "value": "icmp", "field": "protocol"},
        {"parameter": "port", "error": "port_number_lte", "value": 70000, "field": "port"},
        {"parameter": "rules", "error": "rules_format", "value": "192.0.2.1",
         "field": "rules.0.to"},
    ], key=lambda e: e["field"])


def test_additional_property_is_reported_on_the_object_with_the_extra_value(tmp_path):
    data = {"source": "192.0.2.1", "rules": [{"to": "::1"}], "extra": [1, 2]}
    assert errors_for(tmp_path, FORWARD, data) == [
        {"parameter": "(root)", "error": "(root)_additional_property_not_allowed",
         "value": [1, 2], "field": "(root)"},
    ]


def test_wrong_type_stops_the_other_checks_of_that_value(tmp_path):
    schema = {"type": "object", "properties": {"protocol": {"type": "string",
                                                            "enum": ["udp", "tcp"]}}}
    assert errors_for(tmp_path, schema, {"protocol": 17}) == [
        {"parameter": "protocol", "error": "protocol_invalid_type", "value": 17,
         "field": "protocol"},
    ]
    assert errors_for(tmp_path, {"type": "null"}, {}) == [
        {"parameter": "(root)", "error": "(root)_invalid_type", "value": {}, "field": "(root)"},
    ]


def test_length_items_and_uniqueness_error_names(tmp_path):
    schema = {"type": "object", "properties": {
        "id": {"type": "string", "minLength": 3, "maxLength": 4},
        "ids": {"type": "array", "maxItems": 2, "uniqueItems": True},
        "weight": {"type": "number", "exclusiveMinimum": 0}}}
    errors = errors_for(tmp_path, schema, {"id": "ab", "ids": ["a", "a", "b"], "weight": 0})
    # properties are visited in Go's map order, which is random
    assert sorted(e["error"] for e in errors) == ["id_string_gte", "ids_array_max_items", "ids_unique",
                                                 "weight_number_gt"]


def test_one_of_failure_adds_the_closest_branch_errors(tmp_path):
    schema = {"type": "object", "oneOf": [{"required": ["id"]}, {"required": ["ids"]}]}
    assert [e["error"] for e in errors_for(tmp_path, schema, {})] == [
        "(root)_number_one_of", "(root)_required"]
    assert errors_for(tmp_path, schema, {"id": "x"}) == []


def test_refs_reach_the_install_dir_validator_definitions(tmp_path):
    definitions = {"$id": "http://schema.nethserver.org/test/validator-definitions.json",
                   "definitions": {"port": {"type": "integer", "maximum": 65535}}}
    schema = {"type": "object", "properties": {"port": {
        "$ref": "http://schema.nethserver.org/test/validator-definitions.json#/definitions/port"}}}
    assert errors_for(tmp_path, schema, {"port": 1}, definitions) == []
    assert [e["error"] for e in errors_for(tmp_path, schema, {"port": 99999}, definitions)] == [
        "port_number_lte"]


def test_error_list_text_is_what_the_agent_prints(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"$schema": SCHEMA, **FORWARD}))
    verdict = validation.validate("input", path, b'{"source":"1.2.3","rules":[{"to":"::1"}]}', tmp_path)
    assert verdict.exit_code == 10
    assert verdict.output == (
        '[{"parameter":"source","error":"source_format","value":"1.2.3","field":"source"}]')
    assert verdict.error == "Validation errors: [source: Does not match format 'ipv4']\n"


def test_a_schema_that_does_not_compile_aborts_whatever_the_input(tmp_path):
    """RE2 has no \\u escape: the agent refuses the schema, not the input."""
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"$schema": SCHEMA, "properties": {"d": {"pattern": "^[^\\u0000-\\u001f]*$"}}}))
    for document in (b'{"d":"fine"}', b"null"):
        verdict = validation.validate("input", path, document, tmp_path)
        assert verdict.exit_code == 1 and verdict.output == ""
        assert verdict.error.startswith(f"JSON Schema input validation aborted at step {path}: "
                                        f"Schema compile error for file {path}")


def test_go_json_encodes_like_encoding_json():
    assert validation.go_json({"b": 1.0, "a": "<&>", "c": [1e21, 1.5e-7, 0.5, None, True]}) == (
        '{"a":"\\u003c\\u0026\\u003e","b":1,"c":[1e+21,1.5e-7,0.5,null,true]}')


# ---------------------------------------------------------------- action assembly

def test_base_and_module_dirs_merge_by_name_with_the_module_winning(node):
    write_action(node.base, "merge", {
        "05base": sh("printf '[base05]'"), "10shared": sh("printf '[base10]'"),
        "validate-input.json": {"$schema": SCHEMA, "type": "null"}})
    write_action(node.actions, "merge", {
        "10shared": sh("printf '[module10]'"), "20module": sh("printf '[module20]'"),
        "validate-input.json": {"$schema": SCHEMA, "type": "object"}})
    steps = node.agent.steps("merge")
    assert [(s.name, s.weight) for s in steps] == [
        ("validate-input.json", 0), ("05base", 1), ("10shared", 1), ("20module", 1)]
    assert steps[0].path.startswith(str(node.actions))  # the module's schema wins too
    result = node.agent.run("merge", {})
    assert (result.exit_code, result.output) == (0, "[base05][module10][module20]")


def test_unknown_action_and_empty_action_exit_8(node):
    (node.actions / "empty").mkdir()
    for action in ("no-such-action", "empty"):
        result = node.agent.run(action, {})
        assert (result.exit_code, result.status, result.output) == (8, "aborted", "")
        assert result.error == f"Action {action} is not defined\n"


def test_a_step_that_cannot_be_executed_is_skipped(node):
    write_action(node.actions, "skip", {"10run": sh("printf ok")})
    (node.actions / "skip" / "05notexec").write_text("not a program\n")  # mode 0644
    result = node.agent.run("skip", None)
    assert (result.exit_code, result.status, result.output) == (0, "completed", "ok")
    assert "skipped step 05notexec" in node.log.getvalue()


def test_list_actions_is_builtin_and_lists_both_dirs(node):
    write_action(node.base, "get-status", {"20read": sh("exit 0")})
    write_action(node.actions, "configure-module", {"10x": sh("exit 0")})
    write_action(node.actions, "list-actions", {"10fake": sh("printf overridden")})
    result = node.agent.run("list-actions", None)
    assert (result.exit_code, result.status, result.builtin) == (0, "completed", True)
    assert result.decoded_output == ["configure-module", "get-status", "list-actions",
                                     "list-actions", "cancel-task"]


# ---------------------------------------------------------------- exit codes and statuses

def test_input_validation_failure_exits_10_with_the_error_list(node):
    ran = node.state / "ran"
    write_action(node.actions, "configure", {
        "validate-input.json": {"$schema": SCHEMA, **FORWARD},
        "10apply": sh(f"touch {ran}")})
    result = node.agent.run("configure", {"rules": []})
    assert (result.exit_code, result.status) == (10, "validation-failed")
    assert json.loads(result.output) == [
        {"parameter": "(root)", "error": "(root)_required", "value": {"rules": []},
         "field": "(root)"},
        {"parameter": "rules", "error": "rules_array_min_items", "value": [], "field": "rules"}]
    assert result.error.startswith("Validation errors: [(root): source is required")
    assert node.tee.getvalue().decode().startswith("Validation errors: ")
    assert not ran.exists()


def test_completed_action_exits_0_and_concatenates_stdout(node):
    write_action(node.actions, "list", {
        "10head": sh("printf '{\"items\": '"), "20body": sh("printf '[1, 2]}'"),
        "30none": sh("echo 'log only' >&2")})
    result = node.agent.run("list", None)
    assert (result.exit_code, result.status) == (0, "completed")
    assert result.output == '{"items": [1, 2]}'
    assert result.decoded_output == {"items": [1, 2]}
    assert result.error == "log only\n"
    assert node.tee.getvalue() == b"log only\n"


def test_first_failing_step_stops_the_action_and_keeps_its_code(node):
    after = node.state / "after"
    write_action(node.actions, "fail", {
        "10ok": sh("printf 'partial'"), "20fail": sh("echo broken >&2; exit 3"),
        "30never": sh(f"touch {after}")})
    result = node.agent.run("fail", None)
    assert (result.exit_code, result.status) == (3, "aborted")
    assert result.output == "partial"
    assert "broken" in result.error
    assert not after.exists()


def test_set_status_validation_failed_forces_10_or_keeps_a_nonzero_code(node):
    write_action(node.actions, "semantic", {
        "10check": sh('echo \'[{"field":"x"}]\'; echo "set-status validation-failed" >&3'),
        "20never": sh("printf never")})
    result = node.agent.run("semantic", None)
    assert (result.exit_code, result.status) == (10, "validation-failed")
    assert json.loads(result.output) == [{"field": "x"}]
    write_action(node.actions, "semantic2", {
        "10check": sh('echo "set-status validation-failed" >&3; exit 2')})
    result = node.agent.run("semantic2", None)
    assert (result.exit_code, result.status) == (2, "validation-failed")


def test_output_schema_failure_aborts_with_exit_1(node):
    write_action(node.actions, "status", {
        "10read": sh("printf '{\"count\": \"three\"}'"),
        "validate-output.json": {"$schema": SCHEMA, "type": "object",
                                 "properties": {"count": {"type": "integer"}}}})
    result = node.agent.run("status", None)
    assert (result.exit_code, result.status) == (1, "aborted")
    assert result.output == '{"count": "three"}'
    assert "Validation errors: [count: Invalid type" in result.error


def test_output_that_is_not_one_json_document_fails_output_validation(node):
    write_action(node.actions, "twice", {
        "10a": sh("echo '{}'"), "20b": sh("echo '{}'"),
        "validate-output.json": {"$schema": SCHEMA, "type": "object"}})
    result = node.agent.run("twice", None)
    assert (result.exit_code, result.status) == (1, "aborted")
    assert "JSON Schema output validation aborted" in result.error


# ---------------------------------------------------------------- step environment

def test_environment_file_is_reread_before_every_step(node):
    write_action(node.actions, "env", {
        "10set": sh('test -z "$ADDED" || exit 9; echo ADDED=yes >> ./environment'),
        "20get": sh('printf "%s/%s" "$ADDED" "$MODULE_ID"')})
    result = node.agent.run("env", None)
    assert (result.exit_code, result.output) == (0, "yes/test1")


def test_step_gets_task_data_on_stdin_and_the_agent_variables(node):
    write_action(node.actions, "vars", {"10dump": """#!/usr/bin/env python3
import json, os, sys
print(json.dumps({"stdin": sys.stdin.read(), "cwd": os.getcwd(),
                  **{k: os.environ.get(k) for k in ("AGENT_COMFD", "AGENT_TASK_ID",
                     "AGENT_TASK_ACTION", "AGENT_TASK_USER", "AGENT_INSTALL_DIR",
                     "AGENT_STATE_DIR", "AGENT_ID", "NODE_ID")}}))
"""})
    result = node.agent.run("vars", {"b": 1.0, "a": "x<y"}, user="admin", task_id="t-1")
    assert result.exit_code == 0, result.error
    assert result.decoded_output == {
        "stdin": '{"a":"x\\u003cy","b":1}', "cwd": str(node.state), "AGENT_COMFD": "3",
        "AGENT_TASK_ID": "t-1", "AGENT_TASK_ACTION": "vars", "AGENT_TASK_USER": "admin",
        "AGENT_INSTALL_DIR": str(node.install), "AGENT_STATE_DIR": str(node.state),
        "AGENT_ID": "module/test1", "NODE_ID": "1"}


def test_step_protocol_library_commands_are_understood(node):
    pypkg = str(REPO / "imageroot" / "pypkg")
    step = "\n".join(["#!/usr/bin/env python3", "import sys", f"sys.path.insert(0, {pypkg!r})",
                      "from nethvoice_bypass import step", "step.set_progress(50)",
                      'step.run(lambda data: {"echo": data})', ""])
    write_action(node.actions, "lib", {"10echo": step})
    result = node.agent.run("lib", {"x": 1})
    assert result.decoded_output == {"echo": {"x": 1}}
    assert {"status": "running", "progress": 50} in result.progress_messages


def test_comfd_progress_is_weighted_and_published(node):
    write_action(node.base, "progress", {
        "validate-input.json": {"$schema": SCHEMA},
        "10first": sh('echo "set-weight 20second 2" >&3; echo "set-progress 50" >&3'),
        "20second": sh('echo "set-progress 50" >&3')})
    result = node.agent.run("progress", None)
    assert result.exit_code == 0
    assert result.progress_messages == [
        {"status": "pending", "progress": 0},
        {"status": "running", "progress": 0},
        {"status": "running", "progress": 16},   # 50 of weight 1, out of 1+2 steps
        {"status": "running", "progress": 33},   # step 1 done
        {"status": "running", "progress": 66},   # 100 + 50*2 of 300
        {"status": "running", "progress": 100},
    ]
    assert result.status == "completed"


def test_bad_comfd_commands_are_logged_and_ignored(node):
    write_action(node.actions, "bad", {"10cmd": sh(
        'echo "set-progress lots" >&3; echo "set-status done" >&3; echo "frobnicate" >&3;'
        ' printf ok')})
    result = node.agent.run("bad", None)
    assert (result.exit_code, result.output, result.status) == (0, "ok", "completed")
    log = node.log.getvalue()
    assert "set-progress command failed" in log
    assert 'unknown status "done"' in log
    assert "Unknown command frobnicate" in log


def test_processor_progress_matches_the_agent_formula():
    proc = Processor([Step("validate-input.json", "", 0), *(Step(f"{i}", "") for i in range(5))])
    proc.set_progress_at_step(3, 73)  # the README example: (100 + 100 + 73) * 100 / 500
    assert proc.progress == 54
    with pytest.raises(ValueError):
        proc.set_progress_at_step(1, 101)


def test_agent_env_merges_env_files_in_order_then_agent_env(tmp_path):
    install = tmp_path / "m"
    (install / "state").mkdir(parents=True)
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    first.write_text("# node agent.env\nPATH=/a\nREDIS_ADDRESS=127.0.0.1:1\nKEEP=1\n")
    second.write_text("REDIS_ADDRESS=127.0.0.1:2\nQUOTED=\"x y\"\n")
    (install / "state" / "agent.env").write_text("REDIS_USER=module/m1\nREDIS_ADDRESS=x:3\n")
    env = build_agent_env("module/m1", install, [first, second])
    assert (env["PATH"], env["KEEP"], env["QUOTED"]) == ("/a", "1", "x y")
    assert (env["REDIS_ADDRESS"], env["REDIS_USER"]) == ("x:3", "module/m1")
    assert env["AGENT_STATE_DIR"] == str(install.resolve() / "state")


def test_context_copy_masks_secret_looking_keys():
    raw = json.dumps({"id": "1", "action": "a", "data": {
        "account": {"Password": "p"}, "api_token": "t", "list": [{"client_secret": "s"}],
        "password_not_replaced": "kept"}})
    masked = json.loads(obscure_task_input(raw))
    assert masked["data"] == {"account": {"Password": "XXX"}, "api_token": "XXX",
                              "list": [{"client_secret": "XXX"}], "password_not_replaced": "kept"}
    assert obscure_task_input("not json") == "not json"


# ---------------------------------------------------------------- dev/run-action

def run_tool(*args, env=None, input=None):
    return subprocess.run([str(DEV / args[0]), *args[1:]], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, input=input, timeout=60)


def test_run_action_without_a_sandbox_says_how_to_start_one(tmp_path):
    proc = run_tool("run-action", "get-status",
                    env={"NS8DEV_SANDBOX_STATE": str(tmp_path / "none.json")})
    assert proc.returncode != 0
    assert "make sandbox" in proc.stderr


def test_run_action_uses_the_sandbox_state_and_exits_with_the_task_code(node, tmp_path):
    write_action(node.actions, "echo", {
        "validate-input.json": {"$schema": SCHEMA, "type": "object", "required": ["n"]},
        "10echo": sh('echo step-log >&2; printf "{\\"seen\\": \\"%s\\"}" "$SANDBOX_VAR"')})
    env_file = tmp_path / "sandbox.env"
    env_file.write_text("SANDBOX_VAR=from-env-file\n")
    state = tmp_path / "sandbox.json"
    state.write_text(json.dumps({"install_dir": str(node.install), "env_files": [str(env_file)],
                                 "base_actions": str(node.base)}))
    env = {"NS8DEV_SANDBOX_STATE": str(state)}
    ok = run_tool("run-action", "echo", '{"n": 1}', env=env)
    assert (ok.returncode, json.loads(ok.stdout)) == (0, {"seen": "from-env-file"})
    assert "step-log" in ok.stderr
    bad = run_tool("run-action", "echo", "-", env=env, input="{}")
    assert bad.returncode == 10
    assert json.loads(bad.stdout)[0]["error"] == "(root)_required"
    assert "Validation errors:" in bad.stderr
    flags = run_tool("run-action", "--install-dir", str(node.install), "nothing-here")
    assert flags.returncode == 8


# ---------------------------------------------------------------- Redis round trip

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster_redis(tmp_path):
    """A redis-server with users like a cluster's: cluster (all), module/test1 (its keys)."""
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed (make deps)")
    import redis

    port = free_port()
    conf = tmp_path / "redis.conf"
    conf.write_text("\n".join([
        f"port {port}", "bind 127.0.0.1", f"dir {tmp_path}", 'save ""', "appendonly no",
        DEFAULT_USER_ACL,
        "user cluster on >clusterpass ~* &* +@all",
        "user module/test1 on >modulepass resetkeys ~module/test1/* ~task/module/test1/*"
        " resetchannels &progress/module/test1/* &module/test1/event/*"
        " +@read +@write +@transaction +@connection +publish -@admin",
    ]) + "\n")
    server = procs.start(["redis-server", str(conf)], tmp_path / "redis.log")
    rdb = redis.Redis(port=port, username="cluster", password="clusterpass",
                      decode_responses=True)
    try:
        procs.wait_for(lambda: _pings(rdb), 10, "redis-server")
        yield SimpleNamespace(port=port, rdb=rdb, address=f"127.0.0.1:{port}")
    finally:
        rdb.close()
        procs.stop(server)


def _pings(rdb):
    import redis

    try:
        return rdb.ping()
    except redis.ConnectionError:
        return False


@pytest.fixture
def served(node, cluster_redis, tmp_path):
    """`python -m ns8dev.agent serve` for module/test1, started as the sandbox starts it."""
    env_file = tmp_path / "agent.env"
    env_file.write_text(f"REDIS_ADDRESS={cluster_redis.address}\nREDIS_USER=module/test1\n"
                        f"REDIS_PASSWORD=modulepass\nPATH={Path(sys.executable).parent}:"
                        "/usr/bin:/bin\n")
    write_action(node.actions, "hello", {
        "validate-input.json": {"$schema": SCHEMA, "type": "object", "required": ["name"]},
        "10env": sh('echo GREETED="$(sed -n \'s/.*"name":"\\([a-z]*\\)".*/\\1/p\')"'
                    ' >> ./environment;'
                    ' echo "set-progress 40" >&3; echo greeting >&2'),
        "20say": sh('printf "{\\"hello\\": \\"%s\\"}" "$GREETED"')})
    shutil.copytree(DEV / "base-actions", node.base, dirs_exist_ok=True)
    agent = procs.start(
        [sys.executable, "-m", "ns8dev.agent", "serve", "--agent-id", "module/test1",
         "--install-dir", str(node.install), "--base-actions", str(node.base),
         "--env-file", str(env_file)],
        tmp_path / "agent.log", env={**os.environ, "PYTHONPATH": str(DEV)}, cwd=REPO)
    rdb = cluster_redis.rdb
    try:
        procs.wait_for(lambda: any(c.get("name") == "module/test1"
                                   for c in rdb.client_list()), 15, "the agent to connect")
        yield SimpleNamespace(rdb=rdb, proc=agent, log=tmp_path / "agent.log",
                              redis=cluster_redis, node=node)
    finally:
        procs.stop(agent)


def push(rdb, action, data, **extra):
    task_id = str(uuid.uuid4())
    rdb.lpush("module/test1/tasks", json.dumps(
        {"id": task_id, "action": action, "data": data, "extra": {}, "user": "admin",
         "parent": "", **extra}))
    return task_id


def wait_result(rdb, task_id, timeout=30):
    prefix = f"task/module/test1/{task_id}"
    procs.wait_for(lambda: rdb.exists(f"{prefix}/exit_code"), timeout, "the task result")
    return prefix


@pytest.mark.integration
def test_redis_round_trip_writes_results_environment_and_progress(served):
    rdb = served.rdb
    pubsub = rdb.pubsub()
    pubsub.psubscribe("progress/module/test1/task/*")
    pubsub.get_message(timeout=1)
    task_id = push(rdb, "hello", {"name": "world", "admin_password": "s3cret"})
    prefix = wait_result(rdb, task_id)
    assert rdb.get(f"{prefix}/exit_code") == "0"
    assert json.loads(rdb.get(f"{prefix}/output")) == {"hello": "world"}
    assert "greeting" in rdb.get(f"{prefix}/error")
    assert 7 * 3600 < rdb.ttl(f"{prefix}/output") <= 8 * 3600
    context = json.loads(rdb.get(f"{prefix}/context"))
    assert context["data"] == {"name": "world", "admin_password": "XXX"}
    assert 7 * 3600 < rdb.ttl(f"{prefix}/context") <= 8 * 3600
    assert rdb.hgetall("module/test1/environment") == {
        "MODULE_ID": "test1", "NODE_ID": "1", "GREETED": "world"}
    messages = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not messages or messages[-1]["status"] == "running"
                                           or messages[-1]["status"] == "pending"):
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message:
            assert message["channel"] == f"progress/module/test1/task/{task_id}"
            messages.append(json.loads(message["data"]))
    pubsub.close()
    assert messages[0] == {"status": "pending", "progress": 0}
    assert {"status": "running", "progress": 20} in messages  # 40% of the first of two steps
    assert messages[-1] == {"status": "completed", "progress": 100}


@pytest.mark.integration
def test_events_published_on_redis_run_their_handlers_like_the_agent(served):
    write_action(served.node.install / "events", "thing-changed", {
        "10record": sh('{ echo "name=$AGENT_EVENT_NAME source=$AGENT_EVENT_SOURCE comfd=$AGENT_COMFD '
                       'cwd=$(pwd) module=$MODULE_ID"; cat; } > event.txt'),
        "20fail": sh("echo failing >&2; exit 3"),
        "30never": sh("touch never")})
    served.rdb.publish("module/other1/event/thing-changed", '{"x": 1}')
    served.rdb.publish("module/other1/event/nobody-listens", "{}")
    line = 'Handler of module/other1/event/thing-changed exited with status "aborted" (3) at step 20fail'
    procs.wait_for(lambda: line in served.log.read_text(), 15, "the event handler")
    assert (served.node.state / "event.txt").read_text() == (
        f"name=thing-changed source=module/other1 comfd=2 cwd={served.node.state} module=test1\n"
        '{"x": 1}')
    assert not (served.node.state / "never").exists()
    assert "failing" in served.log.read_text() and "nobody-listens" not in served.log.read_text()


def test_redis_validation_failure_and_unknown_action(served):
    rdb = served.rdb
    prefix = wait_result(rdb, push(rdb, "hello", {}))
    assert rdb.get(f"{prefix}/exit_code") == "10"
    assert json.loads(rdb.get(f"{prefix}/output"))[0]["error"] == "(root)_required"
    prefix = wait_result(rdb, push(rdb, "no-such-action", None))
    assert rdb.get(f"{prefix}/exit_code") == "8"


@pytest.mark.integration
def test_api_cli_runs_the_task_like_the_real_one(served):
    env = {"REDIS_ADDRESS": served.redis.address, "REDIS_USER": "cluster",
           "REDIS_PASSWORD": "clusterpass"}
    ok = run_tool("api-cli", "run", "module/test1/hello", "--data", '{"name": "cli"}', env=env)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"hello": "cli"}
    assert "greeting" in ok.stderr
    bad = run_tool("api-cli", "run", "module/test1/hello", "--data", "-", env=env, input="{}")
    assert bad.returncode == 10
    assert json.loads(bad.stdout)[0]["field"] == "(root)"
    missing = run_tool("api-cli", "run", "module/nobody1/hello", env=env)
    assert missing.returncode == 1
    assert 'Client "module/nobody1" was not found' in missing.stderr


@pytest.mark.integration
def test_base_get_status_reads_names_from_redis(served):
    served.rdb.set("module/test1/ui_name", "Bypass")
    env = {"REDIS_ADDRESS": served.redis.address, "REDIS_USER": "cluster",
           "REDIS_PASSWORD": "clusterpass"}
    status = run_tool("api-cli", "run", "module/test1/get-status", env=env)
    assert status.returncode == 0, status.stderr
    output = json.loads(status.stdout)
    assert (output["instance"], output["ui_name"], output["node"]) == ("test1", "Bypass", "1")
    assert output["services"] == [] and output["images"] == []
    rejected = run_tool("api-cli", "run", "module/test1/get-status", "--data", "{}", env=env)
    assert rejected.returncode == 10
    assert json.loads(rejected.stdout)[0]["error"] == "(root)_invalid_type"


@pytest.mark.integration
def test_cancel_task_terminates_the_running_step(served):
    rdb = served.rdb
    write_action(served.node.actions, "slow", {"10sleep": sh("sleep 60"),
                                               "20after": sh("printf after")})
    slow = push(rdb, "slow", None)
    procs.wait_for(lambda: "slow/10sleep is starting" in served.log.read_text(), 10,
                   "the step to start")
    cancel = wait_result(rdb, push(rdb, "cancel-task", {"task": slow}))
    assert rdb.get(f"{cancel}/exit_code") == "0"
    slow_prefix = wait_result(rdb, slow, timeout=10)
    assert rdb.get(f"{slow_prefix}/exit_code") == "-1"  # killed by a signal, as Go reports it
    assert rdb.get(f"{slow_prefix}/output") == ""
    unknown = wait_result(rdb, push(rdb, "cancel-task", {"task": "no-such-task"}))
    assert rdb.get(f"{unknown}/exit_code") == "2"


@pytest.mark.integration
def test_agent_stops_promptly_on_sigterm_and_leaves_no_step_behind(served):
    write_action(served.node.actions, "slow", {"10sleep": sh("sleep 60")})
    push(served.rdb, "slow", None)
    procs.wait_for(lambda: "slow/10sleep is starting" in served.log.read_text(), 10,
                   "the step to start")
    started = time.monotonic()
    served.proc.terminate()
    assert served.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    leftovers = subprocess.run(["pgrep", "-f", "sleep 60"], capture_output=True, text=True)
    own = [pid for pid in leftovers.stdout.split()
           if str(served.node.install) in Path(f"/proc/{pid}/cwd").resolve().as_posix()]
    assert own == []


# Every test not marked integration is a pure one (no services): mark it unit.
for _name, _test in list(globals().items()):
    if _name.startswith("test_") and not any(
            mark.name == "integration" for mark in getattr(_test, "pytestmark", [])):
        pytest.mark.unit(_test)
