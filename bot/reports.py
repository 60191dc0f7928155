"""Reports for the sales team: the funnel. One definition, shown by the team page and `sdr leads`."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from .store import Lead, Store

FUNNEL_STAGES = ("new", "engaged", "mql", "sql", "meeting_booked")
SIDE_STAGES = ("human", "disqualified")   # left the funnel: asked for a person, or closed
STAGE_LABELS = {"new": "new", "engaged": "engaged", "mql": "MQL", "sql": "SQL", "meeting_booked": "meeting booked",
                "human": "asked for a person", "disqualified": "disqualified"}


@dataclass(frozen=True)
class Funnel:
    """`at`: leads whose stage is that stage now (every stage, side stages included).
    `reached`: leads that got at least that far along FUNNEL_STAGES — a lead at `sql` has also
    reached new, engaged and mql; a lead who asked for a person or was disqualified talked to the
    SDR, so it counts as having reached `engaged`."""
    at: dict[str, int]
    reached: dict[str, int]
    total: int


def funnel(store: Store) -> Funnel:
    """The funnel over all leads in the store (one GROUP BY query)."""
    with store.session() as s:
        rows = dict(s.execute(select(Lead.stage, func.count()).group_by(Lead.stage)).all())
    at = {st: int(rows.get(st, 0)) for st in FUNNEL_STAGES + SIDE_STAGES}
    side = sum(at[st] for st in SIDE_STAGES)
    reached = {}
    for i, st in enumerate(FUNNEL_STAGES):
        reached[st] = sum(at[o] for o in FUNNEL_STAGES[i:]) + (side if st in ("new", "engaged") else 0)
    return Funnel(at=at, reached=reached, total=sum(int(v) for v in rows.values()))
