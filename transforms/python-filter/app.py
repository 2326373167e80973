"""`filter`, in Python: the same behaviour as transforms/filter (Rust), written with the `flowgate` helper.

Config: `actions` (keep only these: Allow,Deny,Pass), `drop_namespaces` (globs against source and destination
namespace), `ports` (keep only these destination ports). Any other key is refused (a typo fails loudly).
"""
from fnmatch import fnmatchcase

import flowgate
from flowgate import DROP, KEEP, Batch, Config, ConfigError
from wit_world.imports.types import Action

ACTIONS = {"Allow": Action.ALLOW, "Deny": Action.DENY, "Pass": Action.PASS}


class Filter:
    def __init__(self, config: Config):
        names = config.list("actions")
        try:
            self.actions = [ACTIONS[a] for a in names]
        except KeyError as e:
            raise ConfigError(f"actions: {e.args[0]!r} is not Allow, Deny or Pass")
        try:
            self.ports = [int(p) for p in config.list("ports")]
        except ValueError as e:
            raise ConfigError(f"ports: {e}")
        self.globs = config.list("drop_namespaces")
        # Whether a namespace is kept, per distinct value: a cache that may outlive a batch (the answer depends on
        # the config only), which the instance-reuse contract allows.
        self.decided = {}
        flowgate.log("info", f"python filter ready: actions={names}")

    def kept(self, namespace: str) -> bool:
        """Whether no glob drops this namespace."""
        if len(self.decided) > 4096:  # bounded: namespaces are few, but they are the host's input
            self.decided.clear()
        k = self.decided.get(namespace)
        if k is None:
            k = self.decided[namespace] = not any(fnmatchcase(namespace, g) for g in self.globs)
        return k

    def process(self, flows: Batch) -> list:
        # Whole columns: one call per field for the batch, each distinct namespace decided once. The same logic
        # per flow (`for f in flows: f.action, f.source_namespace, f.dest_port`) reads as well and costs more.
        keep = [True] * len(flows)
        if self.actions:
            keep = [a in self.actions for a in flows.column("action")]
        if self.globs:
            src = flows.map_distinct("source_namespace", self.kept)
            dst = flows.map_distinct("dest_namespace", self.kept)
            keep = [k and s and d for k, s, d in zip(keep, src, dst)]
        if self.ports:
            keep = [k and p in self.ports for k, p in zip(keep, flows.column("dest_port"))]
        return [KEEP if k else DROP for k in keep]


Transform = flowgate.export(Filter)
