"""The in-step side of the NS8 protocol, run as a real subprocess with fd 3 open."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

PYPKG = os.path.join(os.path.dirname(__file__), "..", "..", "imageroot", "pypkg")


def run_step(tmp_path, body, data, comfd=True):
    script = tmp_path / "20apply"
    script.write_text(textwrap.dedent(f"""\
        import sys
        from nethvoice_bypass import step
        {textwrap.indent(textwrap.dedent(body), '        ').strip()}
        step.run(main)
    """))
    read_end, write_end = os.pipe()
    env = dict(os.environ, PYTHONPATH=PYPKG)
    if comfd:
        env["AGENT_COMFD"] = str(write_end)  # the agent uses 3; any number is honoured
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            pass_fds=(write_end,) if comfd else (), text=True)
    os.close(write_end)
    out, err = proc.communicate(json.dumps(data))
    commands = os.read(read_end, 65536).decode()
    os.close(read_end)
    return proc.returncode, out, err, commands


def test_output_is_one_json_document(tmp_path):
    code, out, err, _ = run_step(tmp_path, """
        def main(data):
            return {"echo": data}
    """, {"a": 1})
    assert code == 0
    assert json.loads(out) == {"echo": {"a": 1}}


def test_validation_failure_uses_agent_format_and_fd3(tmp_path):
    code, out, err, commands = run_step(tmp_path, """
        def main(data):
            from nethvoice_bypass.errors import Refused
            raise Refused.one("source", "host_bits_set", data["source"])
    """, {"source": "192.0.2.1/24"})
    assert code == 10
    assert json.loads(out) == [{"field": "source", "parameter": "source",
                                "value": "192.0.2.1/24", "error": "source_host_bits_set"}]
    assert commands.splitlines() == ["set-weight 20apply 0", "set-status validation-failed"]
    assert "Validation errors:" in err


def test_nested_field_parameter_is_first_component(tmp_path):
    code, out, _, _ = run_step(tmp_path, """
        def main(data):
            from nethvoice_bypass.errors import Refused
            raise Refused.one("forwards.1.source", "format", "x")
    """, None)
    assert code == 10
    assert json.loads(out)[0]["parameter"] == "forwards"
    assert json.loads(out)[0]["error"] == "forwards_format"


def test_progress_goes_to_comfd(tmp_path):
    code, _, _, commands = run_step(tmp_path, """
        def main(data):
            step.set_progress(50)
            return {}
    """, None)
    assert code == 0 and commands == "set-progress 50\n"


def test_without_comfd_commands_go_to_stderr(tmp_path):
    code, _, err, _ = run_step(tmp_path, """
        def main(data):
            step.set_progress(30)
            return {}
    """, None, comfd=False)
    assert code == 0 and "set-progress 30" in err


@pytest.mark.parametrize("body, message", [
    ("def main(data):\n    raise step.Failure('firewalld is not running')", "firewalld is not running"),
    ("def main(data):\n    return {}['missing']", "KeyError"),
])
def test_errors_are_one_line_without_traceback(tmp_path, body, message):
    code, out, err, _ = run_step(tmp_path, body, None)
    assert code == 1
    assert out == ""
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_invalid_json_is_a_validation_error(tmp_path):
    script = tmp_path / "s"
    script.write_text("from nethvoice_bypass import step\nstep.run(lambda d: d)\n")
    proc = subprocess.run([sys.executable, str(script)], input="{nope", capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=PYPKG))
    assert proc.returncode == 10
    assert json.loads(proc.stdout)[0]["error"] == "(root)_invalid_json"
