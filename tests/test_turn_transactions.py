"""A turn writes once (issue 14): its reads in one read-only session, its writes in one commit —
and nothing is written while a model is working. With the deterministic brain the decision, the
reply and the writes share one transaction; with any other brain the decision is rehearsed in a
transaction that is rolled back and the writes are committed once, after the brain has answered.
Counted on the engine itself (SQLAlchemy events)."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import event

from bot.turn import Inbound

WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.I)


class Watched:
    """The rule brain, noting what the database did while it worked."""

    def __init__(self, inner, log):
        self.inner, self.log, self.name = inner, log, "watched"

    def understand(self, *a, **kw):
        self.log.append("brain")
        try:
            return self.inner.understand(*a, **kw)
        finally:
            self.log.append("/brain")

    def compose(self, *a, **kw):
        self.log.append("brain")
        try:
            return self.inner.compose(*a, **kw)
        finally:
            self.log.append("/brain")


@pytest.fixture
def watched(sdr):
    log: list[str] = []
    engine = sdr.store.engine
    on_commit = lambda conn: log.append("commit")   # noqa: E731
    on_rollback = lambda conn: log.append("rollback")   # noqa: E731

    def on_statement(conn, cursor, statement, params, context, executemany):   # noqa: ANN001
        if WRITE.match(statement):
            log.append("write")
    event.listen(engine, "commit", on_commit)
    event.listen(engine, "rollback", on_rollback)
    event.listen(engine, "before_cursor_execute", on_statement)
    sdr.brain = Watched(sdr.rules, log)
    yield sdr, log
    event.remove(engine, "commit", on_commit)
    event.remove(engine, "rollback", on_rollback)
    event.remove(engine, "before_cursor_execute", on_statement)


def no_write_while_the_brain_works(log: list[str]) -> bool:
    inside = False
    for entry in log:
        if entry in ("brain", "/brain"):
            inside = entry == "brain"
        elif inside and entry in ("write", "commit"):
            return False
    return True


def commits_with_writes(log: list[str]) -> int:
    """Transactions that wrote and committed (a read-only session's commit writes nothing)."""
    n, wrote = 0, False
    for entry in log:
        if entry == "write":
            wrote = True
        elif entry in ("commit", "rollback"):
            n, wrote = n + (entry == "commit" and wrote), False
    return n


TEXTS = [
    ["hi there"],                                                                       # a new visitor
    ["hi there", "I'm the VP of Sales at a 600 person SaaS company, budget approved, we need better forecasting "
                   "this quarter"],                                                  # an SQL: handoff queued
    ["hi", "how much does it cost?"],
]


@pytest.mark.parametrize("texts", TEXTS)
def test_a_turn_of_a_model_brain_commits_once_after_the_model_answered(watched, texts):
    sdr, log = watched
    sid = None
    for text in texts:
        del log[:]
        r = sdr.handle(Inbound(text=text, session_id=sid))
        sid = r.session_id
        assert commits_with_writes(log) == 1, log                 # one commit: the turn's writes together
        last_brain = max(i for i, e in enumerate(log) if e == "/brain")
        assert [i for i, e in enumerate(log) if e == "commit"][-1] > last_brain, log   # … after the brain
        assert no_write_while_the_brain_works(log), log
        assert "rollback" in log[:last_brain], log                # the decision was rehearsed before the words
    if len(texts) > 1 and "VP of Sales" in texts[1]:
        assert any(a["type"] == "handoff" for a in r.actions)   # the handoff was queued in that one commit
        assert any(a["type"] == "handoff" for a in sdr.lead_detail(r.lead["id"])["actions"]), "the entry is stored"


@pytest.mark.parametrize("texts", TEXTS)
def test_a_turn_of_the_deterministic_brain_is_one_transaction(watched, texts):
    sdr, log = watched
    sdr.brain = sdr.rules
    sid = None
    for text in texts:
        del log[:]
        r = sdr.handle(Inbound(text=text, session_id=sid))
        sid = r.session_id
        assert commits_with_writes(log) == 1 and "rollback" not in log, log
        assert log.count("commit") == 2, log                      # the read-only load, then the turn
    assert r.reply


def test_a_failed_commit_keeps_nothing_of_the_turn(watched, monkeypatch):
    """The commit fails (disk full, connection lost): no message, lead or score event of the turn
    is left behind — the retry starts clean."""
    import bot.assess
    sdr, _ = watched

    def boom(*a, **kw):
        raise RuntimeError("disk full")
    monkeypatch.setattr(bot.assess, "add_agent_message", boom)
    with pytest.raises(RuntimeError):
        sdr.handle(Inbound(text="I'm the CRO at a 600 person SaaS company", session_id=None, message_id="m-1"))
    assert sdr.store.list_leads(limit=10) == []


def test_a_rehearsals_log_lines_are_dropped_and_the_commits_written_once(watched):
    """The rehearsal is rolled back, and so are its log lines: "handoff queued" is written once."""
    import logging

    from bot.logs import setup_logging
    sdr, _ = watched
    setup_logging(sdr.settings)
    try:
        r = sdr.handle(Inbound(text="hi there"))
        sdr.handle(Inbound(text=TEXTS[1][1], session_id=r.session_id))      # the model path: rehearsed
        sdr.brain = sdr.rules
        r = sdr.handle(Inbound(text="hi"))
        sdr.handle(Inbound(text=TEXTS[1][1], session_id=r.session_id))      # one transaction, kept
    finally:
        root = logging.getLogger()
        for h in [h for h in root.handlers if getattr(h, "_sdr", False)]:
            root.removeHandler(h)
            h.close()
    lines = (sdr.settings.log_dir / "sdr.log").read_text().splitlines()
    assert len([line for line in lines if "handoff queued" in line]) == 2, lines   # one per lead, not two
