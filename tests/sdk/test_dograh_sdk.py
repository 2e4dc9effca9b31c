#!/usr/bin/env python3
"""End-to-end compatibility check: the real `dograh-sdk==0.1.8` against callgate.

Standalone (no pytest). The server must already be running.

Environment:
  CALLGATE_URL       server root, e.g. http://127.0.0.1:8080 (the SDK appends /api/v1 itself)
  CALLGATE_API_KEY   API key; the SDK sends it as the `X-API-Key` header
  CALLGATE_PHONE     optional, destination for test_phone_call (default +14155550100)
  CALLGATE_TELEPHONY_CONFIGURATION_ID  optional int, passed to test_phone_call

Exit code 0 when every check passes, 1 on the first failed check, 2 on bad setup.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import sys
import traceback
import uuid

try:
    import dograh_sdk
    from dograh_sdk import ApiError, DograhClient
    from dograh_sdk._generated_models import (
        CreateWorkflowRequest,
        InitiateCallRequest,
        UpdateWorkflowRequest,
        WorkflowListResponse,
        WorkflowResponse,
    )
except ImportError as exc:  # pragma: no cover - setup problem
    print(f"SETUP ERROR: cannot import dograh_sdk ({exc}); pip install dograh-sdk==0.1.8", file=sys.stderr)
    sys.exit(2)

EXPECTED_SDK_VERSION = "0.1.8"
CALL_MESSAGE_PREFIX = "Call initiated successfully with run name"

_checks = 0


def check(cond: bool, what: str, detail: object = None) -> None:
    """Assert with a printed line per check; raises AssertionError on failure."""
    global _checks
    _checks += 1
    if cond:
        print(f"  ok   {what}")
        return
    msg = f"  FAIL {what}"
    if detail is not None:
        msg += f"\n       got: {detail!r}"
    print(msg)
    raise AssertionError(what)


def step(title: str) -> None:
    print(f"\n== {title}")


def env(name: str, default: str | None = None) -> str:
    val = os.environ.get(name, default)
    if not val:
        print(f"SETUP ERROR: environment variable {name} is required", file=sys.stderr)
        sys.exit(2)
    return val


def node(defn: dict, node_type: str) -> dict | None:
    for n in defn.get("nodes") or []:
        if n.get("type") == node_type:
            return n
    return None


def build_definition(prompt: str, greeting: str) -> dict:
    """ReactFlowDTO-shaped JSON, same shape as dograh_sdk.Workflow.to_json()."""
    return {
        "nodes": [
            {
                "id": "1",
                "type": "startCall",
                "position": {"x": 0.0, "y": 0.0},
                "data": {
                    "name": "Start Call",
                    "prompt": prompt,
                    "greeting_type": "text",
                    "greeting": greeting,
                    "allow_interrupt": False,
                    "add_global_prompt": True,
                },
            },
            {
                "id": "2",
                "type": "endCall",
                "position": {"x": 0.0, "y": 200.0},
                "data": {
                    "name": "End Call",
                    "prompt": "Thank the caller and say goodbye.",
                },
            },
            {
                # trigger_path deliberately left unset: the server assigns one.
                "id": "3",
                "type": "trigger",
                "position": {"x": 300.0, "y": 0.0},
                "data": {"name": "API Trigger", "enabled": True},
            },
        ],
        "edges": [
            {
                "id": "1-2",
                "source": "1",
                "target": "2",
                "data": {"label": "done", "condition": "The caller has nothing else to discuss."},
            }
        ],
        "viewport": {"x": 0.0, "y": 0.0, "zoom": 1.0},
    }


def check_workflow_response(resp: object, *, label: str, wf_id: int | None, name: str,
                            prompt: str, greeting: str) -> None:
    check(isinstance(resp, WorkflowResponse), f"{label}: parsed as WorkflowResponse", type(resp))
    assert isinstance(resp, WorkflowResponse)
    check(isinstance(resp.id, int) and resp.id > 0, f"{label}: id is a positive int", resp.id)
    if wf_id is not None:
        check(resp.id == wf_id, f"{label}: id == {wf_id}", resp.id)
    check(resp.name == name, f"{label}: name == {name!r}", resp.name)
    check(isinstance(resp.status, str) and resp.status != "", f"{label}: status is a non-empty string", resp.status)
    check(isinstance(resp.created_at, dt.datetime) and resp.created_at.tzinfo is not None,
          f"{label}: created_at is a timezone-aware datetime", resp.created_at)
    if resp.version_status is not None:
        check(resp.version_status in ("draft", "published"),
              f"{label}: version_status in (draft, published)", resp.version_status)
    defn = resp.workflow_definition
    check(isinstance(defn, dict), f"{label}: workflow_definition is an object", type(defn))
    start = node(defn, "startCall")
    check(start is not None, f"{label}: definition has a startCall node", defn)
    assert start is not None
    data = start.get("data") or {}
    check(data.get("greeting") == greeting, f"{label}: startCall greeting == {greeting!r}", data.get("greeting"))
    check(data.get("prompt") == prompt, f"{label}: startCall prompt preserved", data.get("prompt"))
    check(node(defn, "endCall") is not None, f"{label}: definition has an endCall node", defn)
    check(node(defn, "trigger") is not None, f"{label}: definition has a trigger node", defn)
    edges = defn.get("edges") or []
    check(any(str(e.get("source")) == "1" and str(e.get("target")) == "2" for e in edges),
          f"{label}: edge 1 -> 2 preserved", edges)
    trig = (node(defn, "trigger") or {}).get("data") or {}
    print(f"       (info) trigger_path in returned definition: {trig.get('trigger_path')!r}; "
          f"status={resp.status!r} version_status={resp.version_status!r} "
          f"version_number={resp.version_number!r} current_definition_id={resp.current_definition_id!r}")


def find_in_list(items: list, wf_id: int) -> WorkflowListResponse | None:
    for it in items:
        if it.id == wf_id:
            return it
    return None


def main() -> int:
    base_url = env("CALLGATE_URL").rstrip("/")
    if base_url.endswith("/api/v1"):
        # DograhClient appends /api/v1 itself; a URL that already has it would double it.
        print("NOTE: CALLGATE_URL ends with /api/v1; stripping it (the SDK appends /api/v1).")
        base_url = base_url[: -len("/api/v1")]
    api_key = env("CALLGATE_API_KEY")
    phone = os.environ.get("CALLGATE_PHONE", "+14155550100")
    tcid_raw = os.environ.get("CALLGATE_TELEPHONY_CONFIGURATION_ID")
    telephony_configuration_id = int(tcid_raw) if tcid_raw else None

    sdk_version = getattr(dograh_sdk, "__version__", None)
    try:
        from importlib.metadata import version as _dist_version
        sdk_version = _dist_version("dograh-sdk")
    except Exception:
        pass
    print(f"dograh-sdk {sdk_version} against {base_url} (requests go to {base_url}/api/v1/...)")
    if sdk_version != EXPECTED_SDK_VERSION:
        print(f"WARNING: expected dograh-sdk {EXPECTED_SDK_VERSION}, found {sdk_version}")

    suffix = uuid.uuid4().hex[:8]
    name1 = f"sdk-compat-{suffix}"
    name2 = f"sdk-compat-{suffix}-renamed"
    prompt1 = "You are a friendly assistant. Ask how you can help."
    greeting1 = "Hi {{customer_name}}"
    prompt2 = "You are a concise assistant. Confirm the appointment."
    greeting2 = "Hello {{customer_name}}, this is a reminder call."
    definition1 = build_definition(prompt1, greeting1)
    definition2 = build_definition(prompt2, greeting2)

    with DograhClient(base_url=base_url, api_key=api_key) as client:
        # ── create_workflow ─────────────────────────────────────────────
        step("create_workflow  (POST /api/v1/workflow/create/definition)")
        created = client.create_workflow(
            body=CreateWorkflowRequest(name=name1, workflow_definition=copy.deepcopy(definition1))
        )
        check_workflow_response(created, label="create", wf_id=None, name=name1,
                                prompt=prompt1, greeting=greeting1)
        wf_id = created.id
        print(f"       (info) created workflow id={wf_id}")

        # ── get_workflow ────────────────────────────────────────────────
        step(f"get_workflow  (GET /api/v1/workflow/fetch/{wf_id})")
        fetched = client.get_workflow(wf_id)
        check_workflow_response(fetched, label="get", wf_id=wf_id, name=name1,
                                prompt=prompt1, greeting=greeting1)
        if created.workflow_uuid is not None:
            check(fetched.workflow_uuid == created.workflow_uuid, "get: workflow_uuid matches create",
                  (created.workflow_uuid, fetched.workflow_uuid))
        check(fetched.created_at == created.created_at, "get: created_at matches create",
              (created.created_at, fetched.created_at))

        # ── list_workflows ──────────────────────────────────────────────
        step("list_workflows  (GET /api/v1/workflow/fetch)")
        items = client.list_workflows()
        check(isinstance(items, list), "list: returns a list", type(items))
        check(all(isinstance(i, WorkflowListResponse) for i in items), "list: items parsed as WorkflowListResponse")
        item = find_in_list(items, wf_id)
        check(item is not None, f"list: contains workflow id={wf_id}", [i.id for i in items])
        assert item is not None
        check(item.name == name1, f"list: item name == {name1!r}", item.name)
        check(item.status == created.status, "list: item status matches create", (item.status, created.status))
        check(isinstance(item.total_runs, int) and item.total_runs >= 0, "list: total_runs is an int >= 0", item.total_runs)
        check(item.created_at.tzinfo is not None, "list: created_at timezone-aware", item.created_at)
        if created.workflow_uuid is not None:
            check(item.workflow_uuid == created.workflow_uuid, "list: workflow_uuid matches", item.workflow_uuid)

        step(f"list_workflows(status={created.status!r})  (GET /api/v1/workflow/fetch?status=...)")
        filtered = client.list_workflows(status=created.status)
        check(find_in_list(filtered, wf_id) is not None, "list?status: contains the workflow",
              [i.id for i in filtered])
        check(all(i.status == created.status for i in filtered), "list?status: every item has that status",
              sorted({i.status for i in filtered}))

        # ── update_workflow ─────────────────────────────────────────────
        step(f"update_workflow  (PUT /api/v1/workflow/{wf_id})")
        updated = client.update_workflow(
            wf_id,
            body=UpdateWorkflowRequest(name=name2, workflow_definition=copy.deepcopy(definition2)),
        )
        check_workflow_response(updated, label="update", wf_id=wf_id, name=name2,
                                prompt=prompt2, greeting=greeting2)

        step(f"get_workflow after update  (GET /api/v1/workflow/fetch/{wf_id})")
        refetched = client.get_workflow(wf_id)
        check_workflow_response(refetched, label="get-after-update", wf_id=wf_id, name=name2,
                                prompt=prompt2, greeting=greeting2)

        step("list_workflows after update")
        item2 = find_in_list(client.list_workflows(), wf_id)
        check(item2 is not None and item2.name == name2, f"list: item renamed to {name2!r}",
              item2.name if item2 else None)

        step(f"update_workflow name only  (PUT /api/v1/workflow/{wf_id}, body {{name}})")
        name3 = f"{name2}-2"
        renamed = client.update_workflow(wf_id, body=UpdateWorkflowRequest(name=name3))
        check_workflow_response(renamed, label="rename", wf_id=wf_id, name=name3,
                                prompt=prompt2, greeting=greeting2)

        # ── test_phone_call ─────────────────────────────────────────────
        step("test_phone_call  (POST /api/v1/telephony/initiate-call)")
        call = client.test_phone_call(
            body=InitiateCallRequest(
                workflow_id=wf_id,
                phone_number=phone,
                telephony_configuration_id=telephony_configuration_id,
            )
        )
        check(isinstance(call, dict), "call: response is a JSON object", call)
        assert isinstance(call, dict)
        msg = call.get("message")
        check(isinstance(msg, str) and CALL_MESSAGE_PREFIX in msg,
              f"call: message contains {CALL_MESSAGE_PREFIX!r}", msg)
        run_id = call.get("workflow_run_id")
        check(isinstance(run_id, int) and not isinstance(run_id, bool), "call: workflow_run_id is an int", run_id)
        check("call_id" in call, "call: call_id present", call)
        print(f"       (info) {call!r}")

        # ── error handling ──────────────────────────────────────────────
        step("get_workflow on a missing id -> ApiError 404")
        missing_id = 2_000_000_000
        try:
            client.get_workflow(missing_id)
        except ApiError as e:
            check(e.status_code == 404, "missing: ApiError status 404", (e.status_code, e.body))
        else:
            check(False, "missing: ApiError raised")

    step("no API key -> ApiError 401/403")
    saved_key = os.environ.pop("DOGRAH_API_KEY", None)  # DograhClient falls back to this env var
    try:
        with DograhClient(base_url=base_url, api_key=None) as anon:
            try:
                anon.list_workflows()
            except ApiError as e:
                check(e.status_code in (401, 403), "anon: ApiError status 401/403", (e.status_code, e.body))
            else:
                check(False, "anon: ApiError raised")
    finally:
        if saved_key is not None:
            os.environ["DOGRAH_API_KEY"] = saved_key

    return 0


if __name__ == "__main__":
    try:
        rc = main()
    except AssertionError as e:
        print(f"\nFAILED after {_checks} checks: {e}")
        sys.exit(1)
    except Exception:
        traceback.print_exc()
        print(f"\nFAILED with an exception after {_checks} checks")
        sys.exit(1)
    print(f"\nPASSED: {_checks} checks")
    sys.exit(rc)
