"""`filter`, in Python: the same behaviour as transforms/filter (Rust), to check the WIT reads naturally here.

Config: `actions` (keep only these: Allow,Deny,Pass), `drop_namespaces` (globs against source and destination
namespace), `ports` (keep only these destination ports).

componentize-py creates a fresh `Transform` object for every call, so what `init` sets up lives at module level
(one component instance = one module): the instance-reuse contract still holds.
"""
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import List, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import Action, Flow, Outcome, Outcome_Drop, Outcome_Keep

ACTIONS = {"Allow": Action.ALLOW, "Deny": Action.DENY, "Pass": Action.PASS}


@dataclass
class Settings:
    actions: List[Action] = field(default_factory=list)
    drop_namespaces: List[str] = field(default_factory=list)
    ports: List[int] = field(default_factory=list)


SETTINGS = Settings()


def _list(config: dict, key: str) -> List[str]:
    return [item.strip() for item in config.get(key, "").split(",") if item.strip()]


def keep(s: Settings, f: Flow) -> bool:
    if s.actions and f.action not in s.actions:
        return False
    if any(fnmatchcase(f.source_namespace, g) or fnmatchcase(f.dest_namespace, g) for g in s.drop_namespaces):
        return False
    if s.ports and f.dest_port not in s.ports:
        return False
    return True


class Transform(exports.Transform):
    def init(self, config: List[Tuple[str, str]]) -> None:
        global SETTINGS
        c = dict(config)
        try:
            actions = [ACTIONS[a] for a in _list(c, "actions")]
        except KeyError as e:
            raise Err(f"actions: {e.args[0]!r} is not Allow, Deny or Pass")
        try:
            ports = [int(p) for p in _list(c, "ports")]
        except ValueError as e:
            raise Err(f"ports: {e}")
        SETTINGS = Settings(actions, _list(c, "drop_namespaces"), ports)
        host.log(host.Level.INFO, f"python filter ready: actions={_list(c, 'actions')}")

    def process(self, batch: List[Flow]) -> List[Outcome]:
        return [Outcome_Keep() if keep(SETTINGS, f) else Outcome_Drop() for f in batch]
