"""A stand-in for the NS8 agent (core/agent, Go) that runs this module's actions.

It follows the agent's contract so an action that passes here runs unchanged on a
node: action dirs merged by file name (the module wins), steps in name order,
validate-input.json / validate-output.json as weight-0 pseudo-steps, stdin = task
data, AGENT_COMFD=3 commands, ./environment re-read before each step, exit codes
8/10/1, and the Redis task protocol (BRPOP <agent_id>/tasks, task/<agent_id>/<id>/*
keys, progress/<agent_id>/task/<id> messages, <agent_id>/environment hash). Events
(hevent.go): PSUBSCRIBE */event/* as user default on REDIS_REPLICA_ADDRESS (else
REDIS_ADDRESS), each event runs the handler steps of events/<name>/ in name order
with the payload on stdin, AGENT_COMFD=2 and ./environment read once per event.

Command line (the sandbox starts it exactly like this):
    python -m ns8dev.agent serve --agent-id module/nethvoice-bypass1 \
        --install-dir DIR --base-actions DIR [--env-file FILE ...]
    python -m ns8dev.agent run --install-dir DIR [--base-actions DIR]
        [--env-file FILE ...] ACTION [DATA_JSON|-]
"""

import argparse
import csv
import io
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ns8dev import validation

STEP_VALIDATE_INPUT = "validate-input.json"
STEP_VALIDATE_OUTPUT = "validate-output.json"
POLLING = 5.0                 # pollingDuration: BRPOP timeout and keepalive period
TASK_TTL = 8 * 3600           # taskExpireDuration
CONTEXT_TTL = int(12 * POLLING)  # context TTL while the task is queued or running
EXIT_NOT_DEFINED = 8
EXIT_VALIDATION_FAILED = 10
SD_ERR, SD_WARNING, SD_DEBUG = "<3>", "<4>", "<7>"
# What a systemd unit gets before its Environment= lines; <venv>/bin stands in for
# /usr/local/agent/pyenv/bin, which the node's agent.env puts first on PATH.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FINAL_STATUSES = ("completed", "aborted", "validation-failed")
_SENSITIVE_SUFFIXES = ("password", "secret", "token")  # htask.go isSensitive()
_ATOI = re.compile(r"[+-]?[0-9]+")
_spawn_lock = threading.Lock()  # fd 3 is set up in the child; keep spawns one at a time


# ---------------------------------------------------------------- environment files

def read_env_file(path):
    """An EnvironmentFile= as systemd reads it (simple form: KEY=VALUE, #/; comments)."""
    env = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


def read_state_environment(state_dir):
    """The agent's readStateFile(): raw KEY=VALUE lines of ./environment, no unquoting."""
    try:
        content = (Path(state_dir) / "environment").read_text()
    except OSError:
        return None
    return [line for line in content.split("\n") if line and "=" in line]


def env_lines_to_dict(lines):
    env = {}
    for line in lines or []:
        key, value = line.split("=", 1)
        if key:
            env[key] = value
    return env


def build_agent_env(agent_id, install_dir, env_files=(), base=None):
    """The agent process environment, as agent@.service builds it for a rootfull module.

    Environment= (AGENT_ID, AGENT_INSTALL_DIR, AGENT_STATE_DIR), then each
    EnvironmentFile= in order (later wins, and they override Environment=), then the
    state dir's agent.env if present.
    """
    install_dir = Path(install_dir).resolve()
    venv_bin = Path(sys.executable).parent
    env = dict(base) if base is not None else {
        "PATH": f"{venv_bin}:{SYSTEMD_PATH}",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    env.update(AGENT_ID=agent_id, AGENT_INSTALL_DIR=str(install_dir),
               AGENT_STATE_DIR=str(install_dir / "state"))
    for path in env_files:
        env.update(read_env_file(path))
    agent_env = install_dir / "state" / "agent.env"
    if agent_env.is_file():
        env.update(read_env_file(agent_env))
    return env


# ---------------------------------------------------------------- task model

@dataclass
class Step:
    name: str
    path: str
    weight: int = 1


@dataclass
class Processor:
    """Status and weighted progress of one task (core/agent/models/processor.go)."""

    steps: list
    status: str = "pending"
    progress: int = 0

    def to_json(self):
        return json.dumps({"status": self.status, "progress": self.progress},
                          separators=(",", ":"))

    def set_progress_at_step(self, index, step_progress):
        if not 0 <= step_progress <= 100:
            raise ValueError(f"Invalid step progress value: {step_progress}")
        current = target = 0
        for i, step in enumerate(self.steps):
            target += 100 * step.weight
            if i == index - 1:
                current = target  # weighted progress of the previous steps
        current += step_progress * self.steps[index].weight
        if target > 0:
            self.progress = current * 100 // target

    def set_step_weight(self, name, weight):
        if weight < 0:
            raise ValueError(f"Invalid step weight value: {weight}")
        for step in self.steps:
            if step.name == name:
                step.weight = weight
                return
        raise ValueError(f"Step {name} not found")


@dataclass
class TaskResult:
    output: str
    error: str
    exit_code: int
    status: str
    progress_messages: list = field(default_factory=list)  # every status published
    final_status_json: str = ""
    builtin: bool = False  # list-actions / cancel-task: no environment copy to Redis

    @property
    def decoded_output(self):
        """What agent.tasks.run() returns as 'output': JSON-decoded when possible."""
        try:
            return json.loads(self.output)
        except ValueError:
            return self.output


def obscure_task_input(raw):
    """The context copy of a task, with values of secret-looking keys replaced by XXX."""
    try:
        task = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(task, dict):
        return raw

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value)
                if key.lower().endswith(_SENSITIVE_SUFFIXES):
                    node[key] = "XXX"
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(task)
    return validation.go_json(task)


def _atoi(text):
    if not _ATOI.fullmatch(text):
        raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


class _Stop(BaseException):
    """Raised by the SIGTERM handler to leave a blocking BRPOP at once."""


# ---------------------------------------------------------------- the agent

class Agent:
    """Runs the actions of one module the way the NS8 agent does.

    agent_id: e.g. "module/nethvoice-bypass1"; install_dir: the module's
    AGENT_INSTALL_DIR (actions in ./actions, state in ./state); base_actions_dir:
    the core's /usr/local/agent/actions stand-in; env: the agent process environment
    (see build_agent_env). log: where agent log lines go (the journal on a node);
    tee: binary stream that receives every step's stderr live.
    """

    def __init__(self, agent_id, install_dir, base_actions_dir=None, env=None,
                 log=None, tee=None):
        self.agent_id = agent_id
        self.install_dir = Path(install_dir).resolve()
        self.events_paths = [self.install_dir / "events"]  # --eventsdir of agent@.service
        self.state_dir = self.install_dir / "state"
        self.base_actions_dir = Path(base_actions_dir).resolve() if base_actions_dir else None
        self.env = dict(env) if env is not None else build_agent_env(agent_id, install_dir)
        self.log = log if log is not None else sys.stderr
        self.tee = tee if tee is not None else getattr(sys.stderr, "buffer", sys.stderr)
        self._env_lock = threading.Lock()
        self._running = {}  # task id -> running step Popen
        self._cancelled = set()  # task ids whose current and later steps get SIGTERM
        self._active = set()  # task ids between start and result
        self._running_lock = threading.Lock()

    # -------------------------------------------------------- assembling actions

    @property
    def action_paths(self):
        paths = [self.base_actions_dir] if self.base_actions_dir else []
        return [*paths, self.install_dir / "actions"]

    def steps(self, action):
        """CreateTaskProcessor(): merge the action dirs by file name, later dir wins."""
        files, input_schema, output_schema = {}, None, None
        for root in self.action_paths:
            action_dir = root / action
            try:
                entries = list(os.scandir(action_dir))
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    continue
                if entry.name == STEP_VALIDATE_INPUT:
                    input_schema = entry.path
                elif entry.name == STEP_VALIDATE_OUTPUT:
                    output_schema = entry.path
                else:
                    files[entry.name] = entry.path
        steps = [Step(name, files[name]) for name in sorted(files)]
        if input_schema:
            steps.insert(0, Step(STEP_VALIDATE_INPUT, input_schema, 0))
        if output_schema:
            steps.append(Step(STEP_VALIDATE_OUTPUT, output_schema, 0))
        return steps

    def list_actions(self):
        names = set()
        for root in self.action_paths:
            if root.is_dir():
                names.update(p.name for p in root.iterdir() if p.is_dir())
        return sorted(names)

    # -------------------------------------------------------- running a task

    def _log(self, line):
        print(line, file=self.log, flush=True)

    def _tee(self, data):
        try:
            self.tee.write(data)
        except TypeError:  # a text stream
            self.tee.write(data.decode(errors="replace"))
        self.tee.flush()

    def _read_environment(self):
        with self._env_lock:
            lines = read_state_environment(self.state_dir)
        if lines is None:
            self._log(f"{SD_ERR}Cannot read ./environment file: {self.state_dir}/environment")
            return []
        return lines

    def run(self, action, data=None, user="", task_id=None, **kwargs):
        """Run one action directly (no Redis) and return its TaskResult."""
        task = {"id": task_id or str(uuid.uuid4()), "action": action, "data": data,
                "extra": {}, "user": user, "parent": ""}
        return self.run_task(task, **kwargs)

    def run_task(self, task, publish=None, keepalive=None):
        """runAction(): run every step of task["action"] and collect the result.

        publish(status_json) receives each progress message; keepalive() is called
        every POLLING seconds while a step runs (serve() extends the context TTL).
        """
        action, task_id = task["action"], task["id"]
        if action in ("list-actions", "cancel-task"):
            return self._builtin(task, publish)
        with self._running_lock:
            self._active.add(task_id)
        try:
            return self._run_steps(task, publish, keepalive)
        finally:
            with self._running_lock:
                self._active.discard(task_id)
                self._cancelled.discard(task_id)

    def _run_steps(self, task, publish, keepalive):
        action, task_id = task["action"], task["id"]
        data = task.get("data")
        output, error = bytearray(), bytearray()
        messages = []

        def emit(proc):
            text = proc.to_json()
            messages.append(json.loads(text))
            if publish:
                publish(text)

        def agent_error(text):
            error.extend(text.encode())
            self._tee(text.encode())

        proc = Processor(self.steps(action))
        exit_code = 0
        last_step = "{unknown}"
        emit(proc)  # pending
        if not proc.steps:
            agent_error(f"Action {action} is not defined\n")
            exit_code, proc.status = EXIT_NOT_DEFINED, "aborted"
            self._log(f"{SD_ERR}Action {action} is not defined")

        install_dir = self.env.get("AGENT_INSTALL_DIR", str(self.install_dir))
        for index, step in enumerate(proc.steps):
            last_step = step.name
            environment = self._read_environment()  # re-read before every step

            if step.name in (STEP_VALIDATE_INPUT, STEP_VALIDATE_OUTPUT):
                is_input = step.name == STEP_VALIDATE_INPUT
                document = validation.go_json(data).encode() if is_input else bytes(output)
                verdict = validation.validate("input" if is_input else "output", step.path, document,
                                              install_dir)
                if verdict.exit_code == 0:
                    continue
                agent_error(verdict.error)
                output.extend(verdict.output.encode())
                exit_code = verdict.exit_code
                proc.status = "validation-failed" if exit_code == EXIT_VALIDATION_FAILED else "aborted"
                self._log(f"{SD_ERR}Action {action} {proc.status} at step {step.path}: "
                          f"{verdict.error.strip()}")
                break

            if proc.status == "pending":
                proc.status = "running"
                emit(proc)

            env = {**self.env, **env_lines_to_dict(environment),
                   "AGENT_COMFD": "3", "AGENT_TASK_ID": task_id,
                   "AGENT_TASK_ACTION": action, "AGENT_TASK_USER": task.get("user") or ""}
            stdin = validation.go_json(data).encode()
            try:
                child = self._spawn(step.path, env)
            except OSError as err:
                self._log(f"{SD_WARNING}Action {action} skipped step {step.name}: {err}")
                proc.set_progress_at_step(index, 100)
                emit(proc)
                continue
            self._log(f"task/{self.agent_id}/{task_id}: {action}/{step.name} is starting")
            with self._running_lock:
                self._running[task_id] = child
                if task_id in self._cancelled:
                    self._signal(child, signal.SIGTERM)
            try:
                self._pump(child, stdin, output, error, proc, index, emit, keepalive)
            finally:
                with self._running_lock:
                    self._running.pop(task_id, None)
            code = child.wait()
            if code != 0:
                exit_code = code if code > 0 else -1  # Go's ExitCode() is -1 on a signal
                if proc.status == "running":
                    proc.status = "aborted"
                break
            if proc.status == "validation-failed":
                exit_code = EXIT_VALIDATION_FAILED  # the step exited 0: forced to 10
                self._log(f'{SD_WARNING}Action "{action}" validation-failed at step '
                          f"{step.path}. Exit code is not set! Forced to 10")
                break
            proc.set_progress_at_step(index, 100)
            emit(proc)

        if exit_code == 0 and proc.status == "running":
            proc.status = "completed"
        result = TaskResult(output.decode(errors="replace"), error.decode(errors="replace"),
                            exit_code, proc.status, messages, proc.to_json())
        self._log(f'task/{self.agent_id}/{task_id}: action "{action}" status is '
                  f'"{proc.status}" ({exit_code}) at step {last_step}')
        return result

    def _spawn(self, path, env):
        read_fd, write_fd = os.pipe()

        def to_fd3():
            # the step finds the command pipe at fd 3, as exec.Cmd.ExtraFiles gives it
            if write_fd != 3:
                os.dup2(write_fd, 3)
            os.set_inheritable(3, True)

        try:
            with _spawn_lock:
                child = subprocess.Popen(
                    [path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, env=env, cwd=self.state_dir, pass_fds=(3,),
                    preexec_fn=to_fd3, process_group=0)  # own group, as Setpgid
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            raise
        os.close(write_fd)
        child.comfd = read_fd
        return child

    def _pump(self, child, stdin, output, error, proc, index, emit, keepalive):
        """Feed stdin, collect stdout, tee stderr, obey fd 3 commands until all close."""
        def feed():
            # a thread, so a step that prints before reading stdin cannot block us
            try:
                child.stdin.write(stdin)
                child.stdin.close()
            except BrokenPipeError:
                pass

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        sel = selectors.DefaultSelector()
        sel.register(child.stdout, selectors.EVENT_READ, "stdout")
        sel.register(child.stderr, selectors.EVENT_READ, "stderr")
        sel.register(child.comfd, selectors.EVENT_READ, "comfd")
        pending = bytearray()
        while sel.get_map():
            events = sel.select(timeout=POLLING)
            if not events:
                if keepalive:
                    keepalive()
                emit(proc)
                continue
            for key, _ in events:
                fd = key.fd
                chunk = os.read(fd, 65536)
                if key.data == "stdout":
                    output.extend(chunk)
                elif key.data == "stderr":
                    error.extend(chunk)
                    self._tee(chunk)
                else:
                    pending.extend(chunk)
                    if not chunk and pending and not pending.endswith(b"\n"):
                        pending.extend(b"\n")  # a last command without a newline
                    while b"\n" in pending:
                        line, _, rest = bytes(pending).partition(b"\n")
                        pending[:] = rest
                        self._command(line.decode(errors="replace"), proc, index, emit)
                if not chunk:
                    sel.unregister(key.fileobj)
                    if key.data == "comfd":
                        os.close(fd)
                    else:
                        key.fileobj.close()
        sel.close()
        feeder.join()

    def _command(self, line, proc, index, emit):
        for record in csv.reader(io.StringIO(line), delimiter=" "):
            if not record:
                continue
            try:
                name = record[0]
                if name == "set-status":
                    if record[1] == "validation-failed":
                        proc.status = "validation-failed"
                    else:
                        self._log(f'{SD_ERR}set-status command failed: unknown status '
                                  f'"{record[1]}"')
                elif name == "set-weight":
                    proc.set_step_weight(record[1], _atoi(record[2]))
                elif name == "set-progress":
                    proc.set_progress_at_step(index, _atoi(record[1]))
                    emit(proc)
                else:
                    self._log(f"{SD_ERR}Unknown command {name}")
            except (IndexError, ValueError) as err:
                self._log(f"{SD_ERR}{record[0]} command failed: {err}")

    def _builtin(self, task, publish):
        """The agent's own actions, which no action dir can override (hbuiltin.go)."""
        proc = Processor([Step(task["action"], "")])
        messages = []

        def emit():
            messages.append(json.loads(proc.to_json()))
            if publish:
                publish(proc.to_json())

        emit()
        output, error, exit_code = "", "", 0
        data = task.get("data")
        if task["action"] == "list-actions":
            proc.status = "running"
            emit()
            output = json.dumps([*self.list_actions(), "list-actions", "cancel-task"],
                                separators=(",", ":"))
        elif isinstance(data, dict) and isinstance(data.get("task"), str) and data["task"]:
            proc.status = "running"
            emit()
            with self._running_lock:
                known = data["task"] in self._active
            if known:
                self.cancel(task_id=data["task"])
            else:
                exit_code = 2
                proc.status = "validation-failed"
                error = ("Action cancel-task validation-failed at step task-lookup: "
                         "task ID not found")
        else:
            exit_code = 10
            proc.status = "validation-failed"
            error = ("Action cancel-task validation-failed at step builtin-validation.json: "
                     "invalid task ID or timeout value")
        if exit_code == 0:
            proc.set_progress_at_step(0, 100)
            proc.status = "completed"
        if error:
            self._log(SD_ERR + error)
        return TaskResult(output, error, exit_code, proc.status, messages, proc.to_json(),
                          builtin=True)

    def cancel(self, sig=signal.SIGTERM, task_id=None):
        """Signal the running step's process group of one task, or of every task.

        A cancelled task also gets SIGTERM for each later step, as the Go agent's
        cancelled context does.
        """
        with self._running_lock:
            self._cancelled.update(self._active if task_id is None else {task_id})
            children = [c for t, c in self._running.items() if task_id in (None, t)]
        for child in children:
            self._signal(child, sig)

    @staticmethod
    def _signal(child, sig):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            pass

    # -------------------------------------------------------- events

    def event_steps(self, name):
        """CreateEventHandler(): every file of events/<name>/ (all event dirs merged)."""
        files = {}
        for root in self.events_paths:
            try:
                entries = list(os.scandir(root / name))
            except OSError:
                continue
            files.update((e.name, e.path) for e in entries if not e.is_dir(follow_symlinks=False))
        return [Step(n, files[n]) for n in sorted(files)]

    def run_event(self, source, name, payload):
        """runEvent(): the handler's steps in order, the first non-zero one stops it.
        Returns the exit code, None when the module has no handler for the event."""
        steps = self.event_steps(name)
        if not steps:
            return None  # skipped silently, as the agent does
        env = {**self.env, **env_lines_to_dict(self._read_environment()), "AGENT_COMFD": "2",
               "AGENT_EVENT_NAME": name, "AGENT_EVENT_SOURCE": source}
        status, exit_code, last_step = "running", 0, ""
        for step in steps:
            last_step = step.name
            self._log(f"{SD_DEBUG}Handler of {source}/event/{name} is starting step {step.name}")
            try:
                proc = subprocess.run([step.path], input=payload.encode(), capture_output=True, env=env,
                                      cwd=self.state_dir)
            except OSError as err:
                self._log(f"{SD_WARNING}Handler of {source}/event/{name} skipped step {step.name}: {err}")
                continue
            self._tee(proc.stdout + proc.stderr)  # both go to the agent's log
            if proc.returncode != 0:
                self._log(f"{SD_ERR}exit status {proc.returncode}")
                status, exit_code = "aborted", proc.returncode
                break
        if exit_code == 0:
            status = "completed"
        self._log(f'Handler of {source}/event/{name} exited with status "{status}" ({exit_code}) '
                  f"at step {last_step}")
        return exit_code

    def events_client(self):
        import redis

        address = (self.env.get("REDIS_REPLICA_ADDRESS") or self.env.get("REDIS_ADDRESS")
                   or "127.0.0.1:6379")
        host, _, port = address.rpartition(":")
        return redis.Redis(host=host.strip("[]"), port=int(port), username="default",
                           password=self.agent_id, client_name=self.agent_id)

    def listen_events(self, stop, rdb=None):
        """listenEventsAsync(): one thread per event until stopped, then wait for them."""
        import redis

        rdb = rdb or self.events_client()
        pubsub = rdb.pubsub(ignore_subscribe_messages=True)
        workers, last_error = [], None
        try:
            while not stop.is_set():
                try:
                    if not pubsub.subscribed:
                        pubsub.psubscribe("*/event/*")
                    message = pubsub.get_message(timeout=1.0)
                except redis.RedisError as err:
                    if str(err) != last_error:
                        self._log(f"{SD_ERR}Event listener error: {err}")
                        last_error = str(err)
                    stop.wait(1.0)
                    continue
                last_error = None
                if not message or message["type"] != "pmessage":
                    continue
                source, found, name = message["channel"].decode(errors="replace").partition("/event/")
                if found:
                    worker = threading.Thread(target=self.run_event, name=f"event-{name}", args=(
                        source, name, message["data"].decode(errors="replace")))
                    worker.start()
                    workers = [w for w in workers if w.is_alive()] + [worker]
        finally:
            pubsub.close()
            for worker in workers:
                worker.join(timeout=30)
            rdb.close()

    # -------------------------------------------------------- the Redis task loop

    def redis_client(self):
        import redis  # only the Redis side needs it

        address = self.env.get("REDIS_ADDRESS") or "127.0.0.1:6379"
        host, _, port = address.rpartition(":")
        password = self.env.get("REDIS_PASSWORD") or None
        username = (self.env.get("REDIS_USER") or self.agent_id) if password else None
        return redis.Redis(host=host.strip("[]"), port=int(port), username=username,
                           password=password, client_name=self.agent_id)

    def serve(self, stop=None, rdb=None):
        """Pop tasks from <agent_id>/tasks and run each in its own thread until stopped."""
        import redis

        stop = stop or threading.Event()
        rdb = rdb or self.redis_client()
        workers = []
        last_error = None
        queue = f"{self.agent_id}/tasks"
        events_stop = threading.Event()
        events = threading.Thread(target=self.listen_events, args=(events_stop,), name="events")
        events.start()
        self._log(f"agent {self.agent_id} listening on {queue}")
        try:
            while not stop.is_set():
                try:
                    popped = rdb.brpop([queue], timeout=int(POLLING))
                except redis.RedisError as err:
                    if str(err) != last_error:
                        self._log(f"{SD_ERR}Task queue pop error: {err}")
                        last_error = str(err)
                    stop.wait(POLLING)
                    continue
                last_error = None
                workers = [w for w in workers if w.is_alive()]
                if popped is None:
                    continue
                raw = popped[1].decode(errors="replace")
                task = self._decode_task(raw)
                if task is None:
                    continue
                try:
                    rdb.set(f"task/{self.agent_id}/{task['id']}/context",
                            obscure_task_input(raw), ex=CONTEXT_TTL)
                except redis.RedisError as err:
                    self._log(f"{SD_ERR}Context set error: {err}")
                worker = threading.Thread(target=self._serve_task, args=(rdb, task),
                                          name=f"task-{task['id']}")
                worker.start()
                workers.append(worker)
        except _Stop:
            self._log(f"{SD_WARNING}Signal caught: shutdown started.")
        finally:
            self.cancel()
            events_stop.set()
            for worker in [*workers, events]:
                worker.join(timeout=30)
            rdb.close()

    def _decode_task(self, raw):
        try:
            task = validation.task_from_json(raw)
        except ValueError as err:
            self._log(f"{SD_ERR}Task ignored for decoding error: {err}")
            return None
        task.setdefault("id", "")
        task.setdefault("action", "")
        return task

    def _serve_task(self, rdb, task):
        import redis

        prefix = f"task/{self.agent_id}/{task['id']}"
        channel = f"progress/{self.agent_id}/task/{task['id']}"

        def publish(text):
            try:
                rdb.publish(channel, text)
            except redis.RedisError:
                self._log(f"{SD_ERR}Failed to publish the action status on channel {channel}")

        def keepalive():
            try:
                rdb.expire(f"{prefix}/context", CONTEXT_TTL)
            except redis.RedisError as err:
                self._log(f"{SD_ERR}Context expire error: {err}")

        try:
            result = self.run_task(task, publish=publish, keepalive=keepalive)
            env = {} if result.builtin else env_lines_to_dict(self._read_environment())
            with rdb.pipeline(transaction=True) as pipe:
                if not result.builtin:
                    pipe.delete(f"{self.agent_id}/environment")
                if env:
                    pipe.hset(f"{self.agent_id}/environment", mapping=env)
                pipe.set(f"{prefix}/output", result.output, ex=TASK_TTL)
                pipe.set(f"{prefix}/error", result.error, ex=TASK_TTL)
                pipe.set(f"{prefix}/exit_code", result.exit_code, ex=TASK_TTL)
                pipe.expire(f"{prefix}/context", TASK_TTL)
                pipe.publish(channel, result.final_status_json)
                pipe.execute()
        except redis.RedisError as err:
            self._log(f"{SD_ERR}Redis command failed: {err}")
        except Exception as err:  # noqa: BLE001 - one broken task must not stop the agent
            self._log(f"{SD_ERR}task {task['id']} crashed the runner: {err!r}")


# ---------------------------------------------------------------- command line

def _read_data(text):
    if text is None:
        return None
    if text == "-":
        text = sys.stdin.read()
    return json.loads(text)


def _parser():
    parser = argparse.ArgumentParser(prog="python -m ns8dev.agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "run"):
        p = sub.add_parser(name)
        p.add_argument("--agent-id", default="module/nethvoice-bypass1")
        p.add_argument("--install-dir", required=True)
        p.add_argument("--base-actions", default=None)
        p.add_argument("--env-file", action="append", default=[])
        if name == "run":
            p.add_argument("-v", "--verbose", action="store_true",
                           help="also print the agent log and progress to stderr")
            p.add_argument("--raw", action="store_true", help="print the output as it is")
            p.add_argument("--user", default="", help="AGENT_TASK_USER")
            p.add_argument("action")
            p.add_argument("data", nargs="?", default=None, help="task data: JSON, or - for stdin")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    env = build_agent_env(args.agent_id, args.install_dir, args.env_file)
    if args.command == "serve":
        agent = Agent(args.agent_id, args.install_dir, args.base_actions, env)
        agent.state_dir.mkdir(parents=True, exist_ok=True)

        def on_term(signum, frame):
            raise _Stop()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        agent.serve()
        return 0

    log = sys.stderr if args.verbose else open(os.devnull, "w")  # noqa: SIM115
    agent = Agent(args.agent_id, args.install_dir, args.base_actions, env, log=log)
    try:
        data = _read_data(args.data)
    except ValueError as err:
        print(f"invalid task data: {err}", file=sys.stderr)
        return 2

    def forward(signum, frame):
        agent.cancel()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    publish = (lambda text: print(f"progress {text}", file=sys.stderr)) if args.verbose else None
    result = agent.run(args.action, data, user=args.user, publish=publish)
    if args.raw:
        print(result.output)
    else:
        print(json.dumps(result.decoded_output))
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
