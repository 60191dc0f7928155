"""What a turn carries from step to step (`TurnContext`) and what it returns (`TurnResult`)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .brain import LeadView
from .inbound import Inbound
from .meetings import MeetingRequest
from .policy import Decision
from .scoring import ScoreChange


@dataclass
class TurnResult:
    session_id: str
    reply: str
    lead: dict[str, Any]
    sources: list[dict[str, str]]
    actions: list[dict[str, Any]]
    score_changes: list[dict[str, Any]]
    timings_ms: dict[str, float] = field(default_factory=dict)   # by step, and "total"
    usage: dict[str, Any] = field(default_factory=dict)          # model calls, tokens, model_ms, fallbacks
    channel: str = "web"
    first_turn: bool = False                                     # the first message of its conversation

    def as_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "reply": self.reply, "lead": self.lead, "sources": self.sources,
                "actions": self.actions, "score_changes": self.score_changes}


def count_turn(counters: dict[str, int], result: TurnResult) -> None:
    """The SDR's own counters (shown by /healthz, this process's): turns, model calls and tokens,
    and fallbacks by cause."""
    counters["turns"] = counters.get("turns", 0) + 1
    for key in ("model_calls", "prompt_tokens", "completion_tokens"):
        counters[key] = counters.get(key, 0) + int(result.usage.get(key) or 0)
    for cause in result.usage.get("fallbacks") or []:
        counters[f"fallback_{cause}"] = counters.get(f"fallback_{cause}", 0) + 1


@dataclass
class TurnContext:
    """One turn as it goes: what came in, what was loaded, what was decided."""
    inbound: Inbound
    text: str
    session_id: str
    now: datetime                      # naive UTC
    view: LeadView                     # what the brain may know (carries the deadline and usage)
    history: list[dict[str, str]]
    turn: int = 1
    first_turn: bool = False
    tz: str = "UTC"                    # the visitor's time zone
    conv_id: str = ""
    lead_id: str = ""
    replay: TurnResult | None = None   # a retried message_id: its stored answer
    decision: Decision | None = None
    reply: Any = None                  # the composed, guarded Reply
    meeting: MeetingRequest | None = None
    changes: list[ScoreChange] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    lead_after: dict[str, Any] = field(default_factory=dict)
    attendee: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)   # ms since the turn started, per step

    def mark(self, step: str) -> None:
        self.timings[step] = (time.perf_counter() - self.started) * 1000
