"""The definition kinds of the admin API: where they live, how they are parsed.

Each kind is a collection under /api/v1/workspaces/{ws}/ (SPEC §1.2) stored in the
generic definitions table; the admin service validates, cross-checks and stores
them, and the web layer registers the same five routes for each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from iotman.core.cron_job import CronJobDefinition
from iotman.core.function import ClientDefinition, FunctionDefinition
from iotman.core.output import ExportEndpointDefinition, OutputDefinition
from iotman.core.source import SourceDefinition
from iotman.core.tag_rule import TagRuleDefinition
from iotman.core.trigger import TriggerDefinition
from iotman.core.view import ViewDefinition
from iotman.core.webhook import MqttPushDefinition, WebhookDefinition

__all__ = [
    "CLIENT",
    "CRON_JOB",
    "ENDPOINT",
    "FUNCTION",
    "KINDS",
    "OUTPUT",
    "SOURCE",
    "TAG_RULE",
    "TRIGGER",
    "MQTT_PUSH",
    "VIEW",
    "WEBHOOK",
    "DefinitionKind",
]


@dataclass(frozen=True, slots=True)
class DefinitionKind:
    kind: str  # stored kind
    collection: str  # URL segment and scope resource: iotman:<collection>:<action>
    label: str
    model: type[BaseModel]
    url_path: bool = False  # whether `path` is a /data/{ws}/{path} segment (else, e.g., a JSONPath)

    def parse_path(self, stored: dict[str, Any]) -> str | None:
        """The definition's /data path, when the kind has one (unique per kind and workspace)."""
        path = stored.get("path") if self.url_path else None
        return path if isinstance(path, str) else None


SOURCE = DefinitionKind("source", "sources", "source", SourceDefinition, url_path=True)
TAG_RULE = DefinitionKind("tag-rule", "tag-rules", "tag rule", TagRuleDefinition)
OUTPUT = DefinitionKind("output", "outputs", "output", OutputDefinition)
ENDPOINT = DefinitionKind(
    "export-endpoint", "export-endpoints", "export endpoint", ExportEndpointDefinition, url_path=True
)

VIEW = DefinitionKind("view", "views", "view", ViewDefinition)
FUNCTION = DefinitionKind("function", "functions", "function", FunctionDefinition)
CLIENT = DefinitionKind("client", "clients", "client", ClientDefinition)
TRIGGER = DefinitionKind("trigger", "triggers", "trigger", TriggerDefinition)
CRON_JOB = DefinitionKind("cron-job", "cron-jobs", "cron job", CronJobDefinition)
WEBHOOK = DefinitionKind("webhook", "webhooks", "webhook", WebhookDefinition)
MQTT_PUSH = DefinitionKind("mqtt-push", "mqtt-pushes", "MQTT push", MqttPushDefinition)

KINDS: dict[str, DefinitionKind] = {
    k.collection: k
    for k in (SOURCE, TAG_RULE, OUTPUT, ENDPOINT, VIEW, FUNCTION, CLIENT, TRIGGER, CRON_JOB, WEBHOOK, MQTT_PUSH)
}
