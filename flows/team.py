"""A team's Prefect server, set up as code: crashed runs recover by themselves and failures reach people.

`zooflow team-setup` creates, or replaces by name, three Prefect automations on the server that
PREFECT_API_URL names (Prefect's own means: flow-run heartbeats, automations, a notification block):

- a run of a zooflow deployment whose heartbeats stop (its worker or host died) is marked Crashed
  `crash_after` seconds after its last heartbeat (deployments send one every `HEARTBEAT_SECONDS`:
  deployments/prefect.yaml sets PREFECT_FLOWS_HEARTBEAT_FREQUENCY for the runs it starts);
- a crashed run is scheduled again (AwaitingRetry, as the UI's Retry), so a worker picks it up and it
  resumes from the cache; the flow refuses a second automatic re-run (`refuse_repeated_rerun`), so a
  run that keeps killing its host stops after one;
- with a webhook, a failed or crashed nightly posts a message (the run's name, its error, which names
  the model, preset, metric and first bad night, and a link to the run) through a Prefect
  CustomWebhookNotificationBlock: Slack, Teams and Mattermost incoming webhooks take its JSON.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from zooflow.errors import ConfigError

TAG = "zooflow"  # every deployment of deployments/prefect.yaml carries it
NIGHTLY_TAG = "nightly"
HEARTBEAT_SECONDS = 30  # Prefect's smallest heartbeat period; deployments/prefect.yaml sets it for the runs
CRASH_AFTER_SECONDS = 90
RERUN_MARK = "zooflow: re-run after a crash"
BLOCK_NAME = "zooflow-alerts"
NAMES = {
    "crash": "zooflow: a run whose heartbeats stop is marked Crashed",
    "rerun": "zooflow: a crashed run is re-run once",
    "notify": "zooflow: a failed or crashed nightly is posted to the team's webhook",
}
MESSAGE = "{{ flow_run.name }} is {{ flow_run.state.name }}\n{{ flow_run.state.message }}\n{{ flow_run|ui_url }}"


def _tagged(tag: str) -> dict[str, str]:
    return {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{tag}"}


def automations(crash_after: int = CRASH_AFTER_SECONDS, notify_block: Any = None) -> list[Any]:
    """The automations `setup_team` creates (the notification one only with a block's id)."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState, SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    runs = ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]})
    found = [
        # Prefect's documented zombie detection (docs: "detect zombie flows"), limited to zooflow's runs
        Automation(
            name=NAMES["crash"],
            description=f"No heartbeat for {crash_after} s: the worker or host running it died.",
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat"},
                expect={
                    "prefect.flow-run.heartbeat",
                    "prefect.flow-run.Completed",
                    "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled",
                    "prefect.flow-run.Crashed",
                },
                match=runs,
                match_related=ResourceSpecification(_tagged(TAG)),
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=crash_after),
            ),
            actions=[
                ChangeFlowRunState(
                    state=StateType.CRASHED,
                    message=f"no heartbeat for {crash_after} s: its worker or host died; it is re-run once "
                    "automatically and resumes from the cache",
                )
            ],
        ),
        Automation(
            name=NAMES["rerun"],
            description="A crashed zooflow run is scheduled again (as the UI's Retry): it resumes from the cache.",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Crashed"},
                match=runs,
                match_related=ResourceSpecification(_tagged(TAG)),
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                ChangeFlowRunState(state=StateType.SCHEDULED, name="AwaitingRetry", message=RERUN_MARK, force=True)
            ],
        ),
    ]
    if notify_block is not None:
        found.append(
            Automation(
                name=NAMES["notify"],
                description="A nightly regression run that failed (a regression, an error) or crashed.",
                trigger=EventTrigger(
                    expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                    match=runs,
                    match_related=ResourceSpecification(_tagged(NIGHTLY_TAG)),
                    posture=Posture.Reactive,
                    threshold=1,
                ),
                actions=[
                    SendNotification(
                        block_document_id=notify_block,
                        subject="zooflow nightly: {{ flow_run.state.name }}",
                        body=MESSAGE,
                    )
                ],
            )
        )
    return found


def setup_team(webhook: str | None = None, crash_after: int = CRASH_AFTER_SECONDS) -> dict[str, Any]:
    """Create (or replace, by name) the automations, and the webhook block when `webhook` is given."""
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "team-setup configures the team's Prefect server, and PREFECT_API_URL is not set",
            "export PREFECT_API_URL=http://SERVER:4200/api (the server every host uses), then run it again",
        )
    if crash_after < 2 * HEARTBEAT_SECONDS:
        raise ConfigError(
            f"--crash-after {crash_after}: runs send a heartbeat every {HEARTBEAT_SECONDS} s, so a live run "
            "would be marked Crashed",
            f"use at least {2 * HEARTBEAT_SECONDS} s (default {CRASH_AFTER_SECONDS})",
        )
    block_id = None
    if webhook:
        block = CustomWebhookNotificationBlock(
            name="zooflow",
            url=webhook,
            json_data={"text": "{{subject}}\n{{body}}"},  # Slack, Teams and Mattermost incoming webhooks read "text"
            allow_private_urls=True,  # a team's chat server is often on its own network
        )
        block_id = block.save(BLOCK_NAME, overwrite=True)
    made = {}
    for automation in automations(crash_after, block_id):
        while True:  # replace every earlier one of that name
            try:
                Automation.read(name=automation.name).delete()
            except ValueError:  # none (left)
                break
        made[automation.name] = str(automation.create().id)
    return {"automations": made, "notification_block": BLOCK_NAME if webhook else None}


def refuse_repeated_rerun() -> None:
    """In a flow: refuse a second automatic re-run after a crash (a run that killed its host twice would
    otherwise loop); a person's Retry from the UI is always allowed."""
    from prefect import get_client
    from prefect.runtime import flow_run

    if not flow_run.get_id() or (flow_run.run_count or 0) <= 2:
        return
    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(flow_run.get_id())
    scheduled = [s for s in states if s.type.value == "SCHEDULED"]
    reruns = [s for s in scheduled if (s.message or "").startswith(RERUN_MARK)]
    if len(reruns) > 1 and scheduled[-1] in reruns:
        raise RuntimeError(
            f"this run crashed {len(reruns)} times (its worker or host died each time) and was re-run "
            "automatically once; it is not re-run again. Fix the host, then press Retry in the UI"
        )
