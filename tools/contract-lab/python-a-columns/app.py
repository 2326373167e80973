"""transforms/python-filter's logic against candidate A's column getters: one call per field read, per batch;
string columns carry each distinct value once."""
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
        keep = [True] * batch.len()
        if actions:
            keep = [k and a in actions for k, a in zip(keep, batch.column_action())]
        if globs:
            # Each distinct namespace is matched once; flows look their answer up by index.
            src, dst = batch.column_source_namespace(), batch.column_dest_namespace()
            src_ok = [not any(fnmatchcase(v, g) for g in globs) for v in src.values]
            dst_ok = [not any(fnmatchcase(v, g) for g in globs) for v in dst.values]
            keep = [k and src_ok[s] and dst_ok[d] for k, s, d in zip(keep, src.at, dst.at)]
        if ports:
            keep = [k and p in ports for k, p in zip(keep, batch.column_dest_port())]
        return [KEEP if k else DROP for k in keep]
