"""transforms/python-filter's logic against candidate B, through `flowgate_view.Flow` (properties over the batch's
bytes and offset records): the helper module an author would use, so no offsets appear here."""
from fnmatch import fnmatchcase
from typing import List, Tuple

from flowgate_view import flows
from wit_world import exports
from wit_world.imports.types import Action, Batch, Outcome, Outcome_Drop, Outcome_Keep

ACTIONS = {"Allow": Action.ALLOW, "Deny": Action.DENY, "Pass": Action.PASS}
SETTINGS = ([], [], [])
KEEP = Outcome_Keep()
DROP = Outcome_Drop()


def _list(config: dict, key: str) -> List[str]:
    return [item.strip() for item in config.get(key, "").split(",") if item.strip()]


def keep(f) -> bool:
    actions, globs, ports = SETTINGS
    if actions and f.action not in actions:
        return False
    if globs:
        src, dst = f.source_namespace, f.dest_namespace
        if any(fnmatchcase(src, g) or fnmatchcase(dst, g) for g in globs):
            return False
    if ports and f.dest_port not in ports:
        return False
    return True


class Transform(exports.Transform):
    def init(self, config: List[Tuple[str, str]]) -> None:
        global SETTINGS
        c = dict(config)
        SETTINGS = ([ACTIONS[a] for a in _list(c, "actions")], _list(c, "drop_namespaces"),
                    [int(p) for p in _list(c, "ports")])

    def process(self, batch: Batch) -> List[Outcome]:
        return [KEEP if keep(f) else DROP for f in flows(batch)]
