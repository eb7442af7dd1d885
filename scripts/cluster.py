"""A real Airflow: scheduler + dag-processor + api-server (LocalExecutor, SQLite), started and stopped
by its caller (the demo, the scheduler test, the DAG benchmark), with named users of the simple auth
manager (``ops_lead``, ``ops_engineer``, ``firm_reviewer``) and generated passwords.

Everything goes through the public REST API (``/api/v2``) as a signed-in user, the way an ops
engineer or a script would: trigger with params, read run and task states, answer HITL approvals,
clear task instances, unpause DAGs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from scripts.runner import ROOT

USERS = {"ops_lead": "admin", "ops_engineer": "op", "firm_reviewer": "viewer"}
TERMINAL = {"success", "failed"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_lines(content: Any) -> list[str]:
    """The lines a reader sees in the log viewer: a plain-text log's lines, or every text in the
    api-server's structured events (each event's text and its error's text), split on newlines."""
    if isinstance(content, str):
        return content.splitlines()
    lines: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            lines.extend(value.splitlines())
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(content or [])
    return lines


def task_instances(api: Any, dag_id: str, run_id: str, page: int = 100) -> list[dict]:
    """Every task instance of a run, page by page (the API caps a page at ``[api] maximum_page_limit``,
    100 by default, without saying so). ``api``: anything with :meth:`Cluster.get`."""
    out: list[dict] = []
    while True:
        got = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                      params={"limit": page, "offset": len(out), "order_by": "id"})
        out += got["task_instances"]
        if not got["task_instances"] or len(out) >= got["total_entries"]:
            return out


def error_lines(content: Any) -> list[str]:
    """A log's error lines: each ERROR/CRITICAL event of the api-server's structured events with its
    exceptions' type and message (not their frames), or a plain-text log's ERROR/CRITICAL lines."""
    out: list[str] = []
    if isinstance(content, str):
        return [line.strip() for line in content.splitlines() if re.search(r"\b(ERROR|CRITICAL)\b", line)]
    for event in content or []:
        if not isinstance(event, dict) or str(event.get("level") or "").lower() not in ("error", "critical"):
            continue
        out.extend(str(event.get("event") or "").splitlines() or [""])
        out.extend(f"{d.get('exc_type')}: {d.get('exc_value')}" for d in event.get("error_detail") or ()
                   if isinstance(d, dict))
    return out


@dataclass
class Cluster:
    home: Path
    env: dict[str, str]
    port: int
    procs: list[subprocess.Popen] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def start(cls, home: Path, base_env: dict[str, str], *, parallelism: int = 4,
              reparse_interval: int = 5) -> Cluster:
        """Start the three processes and wait until the bundle's DAGs are parsed.

        ``reparse_interval`` is the dag-processor's ``min_file_process_interval``: each DAG file is
        parsed again (in a new process) at most that often, for as long as the cluster runs: at 5 s
        the dag-processor used 280 CPU-s during the scheduler test (20 min on a loaded 2-CPU
        machine), 20 CPU-s with one parse per file. A caller whose DAG files do not change while it
        runs can pass a long interval: the first parse at start is not delayed by it.
        """
        home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        passwords = {user: f"pw-{user}-{os.getpid()}" for user in USERS}
        (home / "passwords.json").write_text(json.dumps(passwords))
        env = dict(base_env)
        env.update({
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API_AUTH__JWT_SECRET": f"test-secret-{os.getpid()}-{port}",
            "AIRFLOW__API__SECRET_KEY": f"test-key-{os.getpid()}-{port}",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(reparse_interval),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}",
            "PATH": f"{ROOT / '.venv' / 'bin'}:{base_env.get('PATH', '')}",
        })
        env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
        subprocess.run(["airflow", "db", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
        for pool, slots in (("clio_api", 4), ("salesforce_api", 4)):
            subprocess.run(["airflow", "pools", "set", pool, str(slots), pool], env=env, cwd=ROOT, check=True,
                           capture_output=True)
        cluster = cls(home, env, port, passwords=passwords)
        try:
            for name, cmd in (("api-server", ["airflow", "api-server", "--port", str(port), "--workers", "1"]),
                              ("dag-processor", ["airflow", "dag-processor"]),
                              ("scheduler", ["airflow", "scheduler"])):
                log = (home / f"{name}.log").open("w")
                cluster.procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                                      start_new_session=True))
            cluster.wait_until_up()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def wait_until_up(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args} exited with {proc.returncode}: see {self.home}")
            try:
                if requests.get(f"{self.base}/api/v2/monitor/health", timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(2)
        else:
            raise TimeoutError(f"api-server did not come up: see {self.home}/api-server.log")
        # the DAGs are parsed by the dag-processor
        while time.monotonic() < deadline:
            ids = {d["dag_id"] for d in self.get("/api/v2/dags", params={"limit": 100})["dags"]}
            if "mig_07_rollback" in ids and "mig_01_discover" in ids:
                return
            time.sleep(3)
        raise TimeoutError("the dag-processor did not parse the bundle")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()

    # ------------------------------------------------------------------ API

    def token(self, user: str = "ops_lead") -> str:
        if user not in self._tokens:
            resp = requests.post(f"{self.base}/auth/token",
                                 json={"username": user, "password": self.passwords[user]}, timeout=30)
            resp.raise_for_status()
            self._tokens[user] = resp.json()["access_token"]
        return self._tokens[user]

    def request(self, method: str, path: str, *, user: str = "ops_lead", expect: int | None = None,
                **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(user)}", **(kw.pop("headers", None) or {})}
        resp = requests.request(method, f"{self.base}{path}", headers=headers, timeout=60, **kw)
        if expect is not None:
            assert resp.status_code == expect, f"{method} {path}: {resp.status_code} {resp.text[:500]}"
        elif not resp.ok:
            raise AssertionError(f"{method} {path}: {resp.status_code} {resp.text[:800]}")
        return resp

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw).json()

    def unpause(self, dag_id: str, paused: bool = False) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused})

    def trigger(self, dag_id: str, conf: dict[str, Any], *, user: str = "ops_lead") -> str:
        self.unpause(dag_id)
        body = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", user=user,
                            json={"logical_date": None, "conf": conf}).json()
        return body["dag_run_id"]

    def firm_pools(self, firm: str, pools: dict[str, str] | None = None) -> dict[str, int]:
        """Create a firm's own pools as Admin -> Pools does (``shared pool -> name``; default
        ``clio_api_<firm>`` / ``salesforce_api_<firm>``), with the shared pools' slots (2 and 4)."""
        names = pools or {shared: f"{shared}_{firm}" for shared in ("clio_api", "salesforce_api")}
        made = {name: 4 if shared == "salesforce_api" else 2 for shared, name in names.items()}
        for name, slots in made.items():
            self.request("POST", "/api/v2/pools", json={"name": name, "slots": slots, "include_deferred": False})
        return made

    def set_pool_slots(self, pool: str, slots: int) -> None:
        """Set a pool's slots as Admin -> Pools does."""
        self.request("PATCH", f"/api/v2/pools/{pool}", params={"update_mask": "slots"},
                     json={"pool": pool, "slots": slots, "include_deferred": False})

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_states(self, dag_id: str, run_id: str) -> dict[tuple[str, int], str]:
        tis = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
        return {(t["task_id"], t["map_index"]): t["state"] for t in tis["task_instances"]}

    def task_instances(self, dag_id: str, run_id: str, page: int = 100) -> list[dict]:
        """Every task instance of a run (see :func:`task_instances`)."""
        return task_instances(self, dag_id, run_id, page)

    def wait_run(self, dag_id: str, run_id: str, *, timeout: float = 900, until: set[str] = TERMINAL) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in until:
                return state
            time.sleep(3)
        raise TimeoutError(f"{dag_id} {run_id} still {state} after {timeout}s: {self.task_states(dag_id, run_id)}")

    def wait_task(self, dag_id: str, run_id: str, task_id: str, states: set[str], *, timeout: float = 900) -> str:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.task_states(dag_id, run_id).get((task_id, -1))
            if state in states:
                return state
            if self.run_state(dag_id, run_id) in TERMINAL:
                raise AssertionError(f"{dag_id} {run_id} ended with {task_id} {state}: "
                                     f"{self.task_states(dag_id, run_id)}")
            time.sleep(3)
        raise TimeoutError(f"{dag_id} {run_id}: {task_id} still {state}")

    def try_number(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> int:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        return self.get(path if map_index < 0 else f"{path}/{map_index}")["try_number"]

    def wait_parked(self, dag_id: str, run_id: str, task_id: str, *, timeout: float = 900) -> str:
        """Wait until a HITL step waits for input *and* the scheduler has processed its worker's exit.

        Answering between the two makes Airflow 3.3 see the parking worker's "success" after the
        answer moved the task on, and fail and retry it ("state changed externally"): a person
        reading the page never answers that fast, a script must wait for this event.
        """
        self.wait_task(dag_id, run_id, task_id, {"awaiting_input"}, timeout=timeout)
        ti = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        needle = f"ti_id={ti['id']}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = (self.home / "scheduler.log").read_text(errors="replace")
            if any("TaskInstance Finished" in line and needle in line for line in text.splitlines()):
                return ti["id"]
            time.sleep(1)
        raise TimeoutError(f"{task_id}: the scheduler never processed the parked worker's exit")

    def answer(self, dag_id: str, run_id: str, task_id: str, option: str, *, user: str,
               params_input: dict[str, Any] | None = None) -> dict[str, Any]:
        """Answer a HITL step through the API as ``user``."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"
        return self.request("PATCH", path, user=user,
                            json={"chosen_options": [option], "params_input": params_input or {}}).json()

    def clear(self, dag_id: str, run_id: str, task_ids: list[Any], *, downstream: bool = True,
              only_failed: bool = False) -> list[Any]:
        """Clear task instances as the UI's Clear dialog does (``[task_id, map_index]`` for one mapped index)."""
        body = {"dry_run": False, "dag_run_id": run_id, "task_ids": task_ids, "include_downstream": downstream,
                "only_failed": only_failed, "reset_dag_runs": True}
        return self.request("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", json=body).json()["task_instances"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1) -> str:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        body = self.request("GET", path, params={"map_index": map_index, "full_content": True},
                            headers={"Accept": "application/json"}).json()
        content = body.get("content")
        if isinstance(content, str):
            return content
        return "\n".join(json.dumps(item, default=str, ensure_ascii=False) if not isinstance(item, str) else item
                         for item in content or [])

    def task_log_lines(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1,
                       try_number: int = 1) -> list[str]:
        """The lines a reader sees in the log viewer: each event's text and its error's text, split on newlines."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        body = self.request("GET", path, params={"map_index": map_index, "full_content": True},
                            headers={"Accept": "application/json"}).json()
        return log_lines(body.get("content"))

    def task_error_lines(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1,
                         try_number: int = 1, tail: int = 20) -> list[str]:
        """What explains a failed try: its log's error lines (:func:`error_lines`), else its last ``tail`` lines."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        body = self.request("GET", path, params={"map_index": map_index, "full_content": True},
                            headers={"Accept": "application/json"}).json()
        return error_lines(body.get("content")) or log_lines(body.get("content"))[-tail:]
