"""transforms/python-filter's logic against candidate A: each field is a call into the host (`batch.<field>(i)`).
A helper class per flow would add one object per flow; the getters are called directly here (the cheapest form)."""
from fnmatch import fnmatchcase
from typing import List, Tuple

from wit_world import exports
from wit_world.imports.types import Action, Batch, Outcome, Outcome_Drop, Outcome_Keep

ACTIONS = {"Allow": Action.ALLOW, "Deny": Action.DENY, "Pass": Action.PASS}
SETTINGS = ([], [], [])
KEEP = Outcome_Keep()
DROP = Outcome_Drop()


def _list(config: dict, key: str) -> List[str]:
    return [item.strip() for item in config.get(key, "").split(",") if item.strip()]


class Transform(exports.Transform):
    def init(self, config: List[Tuple[str, str]]) -> None:
        global SETTINGS
        c = dict(config)
        SETTINGS = ([ACTIONS[a] for a in _list(c, "actions")], _list(c, "drop_namespaces"),
                    [int(p) for p in _list(c, "ports")])

    def process(self, batch: Batch) -> List[Outcome]:
        actions, globs, ports = SETTINGS
        out = []
        for i in range(batch.len()):
            keep = True
            if actions and batch.action(i) not in actions:
                keep = False
            elif globs:
                src, dst = batch.source_namespace(i), batch.dest_namespace(i)
                if any(fnmatchcase(src, g) or fnmatchcase(dst, g) for g in globs):
                    keep = False
            if keep and ports and batch.dest_port(i) not in ports:
                keep = False
            out.append(KEEP if keep else DROP)
        return out
