"""Flowgate's Python helper for `flowgate:transform@0.2.0`: flows with properties, a config that refuses typos,
outcome builders. Ship it next to your `app.py`; componentize-py bundles it.

    import flowgate
    from flowgate import DROP, KEEP, Batch, Config, ConfigError

    class Filter:
        def __init__(self, config: Config):          # `init`: read the config, raise ConfigError to refuse it
            self.namespaces = config.list("namespaces")

        def process(self, flows: Batch) -> list:     # one outcome per flow, in order
            return [DROP if f.source_namespace in self.namespaces else KEEP for f in flows]

    Transform = flowgate.export(Filter)              # what componentize-py calls

Cost model. The host keeps the batch; `process` gets a `batch` resource. Reading `f.source_namespace` on any flow
fetches that field for every flow of the batch in one call (a column, cached for the rest of the call), so a
transform pays one call per field it reads, not per flow, and one string per distinct value. Labels and policies
are fetched per flow on first read. Assigning `f.source_name = "x"` is one setter call, and later reads of that
flow in the same call see it. `Batch.strings(field)` / `Batch.map_distinct(field, fn)` / `Batch.column(field)`
are the whole-batch fast path: decide once per distinct value instead of once per flow.

The bindings componentize-py generates (`wit_world`, `componentize_py_types`) are imported at module load; native
tests put the generated bindings (or stand-ins) on `sys.path`/`sys.modules` before importing this module.
"""
import json
from itertools import repeat

from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports import types as T

__all__ = [
    "Batch", "Flow", "Config", "ConfigError", "export", "KEEP", "DROP", "keep", "drop", "annotate", "annotations",
    "expand", "output", "error", "attributes", "text", "structured", "log", "counter_add", "FIELDS",
]

# --- fields -------------------------------------------------------------------------------------------------------

# Every field of the WIT `flow` record, in order, with how it crosses: "str" (string column), "int" (s64 column),
# "action", "reporter", "endpoint" (enum columns), "labels", "policies" (per-flow lists).
FIELDS = (
    ("source_name", "str"), ("source_namespace", "str"), ("source_type", "endpoint"),
    ("dest_name", "str"), ("dest_namespace", "str"), ("dest_type", "endpoint"), ("dest_port", "int"),
    ("dest_service_name", "str"), ("dest_service_namespace", "str"), ("dest_service_port_name", "str"),
    ("dest_service_port", "int"), ("proto", "str"), ("reporter", "reporter"), ("action", "action"),
    ("enforced_policies", "policies"), ("pending_policies", "policies"), ("start_time", "int"), ("end_time", "int"),
    ("source_labels", "labels"), ("dest_labels", "labels"), ("packets_in", "int"), ("packets_out", "int"),
    ("bytes_in", "int"), ("bytes_out", "int"), ("num_connections_started", "int"),
    ("num_connections_completed", "int"), ("num_connections_live", "int"),
)
_KIND = dict(FIELDS)
_COLUMNS = [name for name, kind in FIELDS if kind not in ("labels", "policies")]
_LISTS = [name for name, kind in FIELDS if kind in ("labels", "policies")]
_COL = {name: k for k, name in enumerate(_COLUMNS)}  # column fields -> slot
_LST = {name: k for k, name in enumerate(_LISTS)}  # list fields -> slot
# The WIT enum each kind's field selector and value belong to.
_SELECTOR = {"str": T.StringField, "int": T.IntField, "endpoint": T.EndpointField, "labels": T.LabelsField,
             "policies": T.PoliciesField}
_VALUE_ENUM = {"action": T.Action, "reporter": T.Reporter, "endpoint": T.EndpointType}


def _selector(name):
    kind = _KIND[name]
    return _SELECTOR[kind][name.upper()] if kind in _SELECTOR else None


def _enum_value(enum, value):
    """`T.Action.DENY`, or its name as text: "deny", "Deny", "DENY"; kebab-case as in the WIT."""
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        try:
            return enum[value.upper().replace("-", "_")]
        except KeyError:
            pass
    raise ValueError(f"{value!r} is not a {enum.__name__}: {', '.join(m.name.lower() for m in enum)}")


def _fetch(resource, name):
    """One scalar column from the host, as a list we own (string columns: see `Batch._strings`)."""
    kind = _KIND[name]
    if kind == "int":
        return list(resource.ints(_selector(name)))
    if kind == "action":
        return list(resource.actions())
    if kind == "reporter":
        return list(resource.reporters())
    return list(resource.endpoint_types(_selector(name)))


def _send(resource, i, name, value):
    """The setter call for one field of flow `i`; returns the value as stored (enum names converted)."""
    kind = _KIND[name]
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError(f"{name} is a string, not {type(value).__name__}")
        resource.set_string(i, _selector(name), value)
    elif kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} is an int, not {type(value).__name__}")
        resource.set_int(i, _selector(name), value)
    elif kind == "action":
        value = _enum_value(T.Action, value)
        resource.set_action(i, value)
    elif kind == "reporter":
        value = _enum_value(T.Reporter, value)
        resource.set_reporter(i, value)
    elif kind == "endpoint":
        value = _enum_value(T.EndpointType, value)
        resource.set_endpoint_type(i, _selector(name), value)
    elif kind == "labels":
        value = list(value)
        resource.set_labels(i, _selector(name), value)
    else:
        value = list(value)
        resource.set_policies(i, _selector(name), value)
    return value


# --- batch and flow -----------------------------------------------------------------------------------------------


class Batch:
    """The flows of one `process` call. Iterate for `Flow`s; `len()`, indexing, and whole-column access.

    Valid only during the call it was made for (the host's resource is)."""

    __slots__ = ("_r", "_n", "_c", "_raw", "_w", "_l")

    def __init__(self, resource):
        self._r = resource
        self._n = resource.len()
        self._c = [None] * len(_COLUMNS)  # per-flow values of each column, once fetched (with own changes)
        self._raw = [None] * len(_COLUMNS)  # string columns as they came (values, at)
        self._w = None  # changes: {field name: {flow: value}}, or None when nothing was set
        self._l = [None] * len(_LISTS)  # per list field: {flow: list}

    def __len__(self):
        return self._n

    def __iter__(self):
        return map(Flow, repeat(self, self._n), range(self._n))

    def __getitem__(self, i):
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"flow {i} of a batch of {self._n}")
        return Flow(self, i)

    @property
    def resource(self):
        """The host's `batch` resource, for calls the helper does not wrap."""
        return self._r

    def _raw_strings(self, k, name):
        raw = self._raw[k]
        if raw is None:
            raw = self._raw[k] = self._r.strings(_selector(name))
        return raw

    def _load(self, k, name):
        if _KIND[name] == "str":
            raw = self._raw_strings(k, name)
            values = list(map(raw.values.__getitem__, raw.at))
        else:
            values = _fetch(self._r, name)
        changed = self._w and self._w.get(name)
        if changed:
            for i, v in changed.items():
                values[i] = v
        self._c[k] = values
        return values

    def column(self, field):
        """Every flow's value of a scalar field (a string, number or enum field), as a list in flow order.

        The list is the helper's cache: read it, do not change it (assign `flow.<field>` instead)."""
        k = _COL.get(field)
        if k is None:
            raise KeyError(f"{field!r} is not a column field (labels and policies are read per flow)")
        c = self._c[k]
        return c if c is not None else self._load(k, field)

    def strings(self, field):
        """A string field as a `string-column`: the distinct `values` and, per flow, `at` (flow i's value is
        `values[at[i]]`). Decide once per distinct value, then look the answer up per flow."""
        if _KIND.get(field) != "str":
            raise KeyError(f"{field!r} is not a string field")
        raw = self._raw_strings(_COL[field], field)
        changed = self._w and self._w.get(field)
        if not changed:
            return raw
        values, at = list(raw.values), list(raw.at)
        for i, v in changed.items():
            at[i] = len(values)
            values.append(v)
        return T.StringColumn(values, at)

    def map_distinct(self, field, fn):
        """`[fn(value of flow i) for every flow]`, calling `fn` once per distinct value of the string field."""
        col = self.strings(field)
        answers = [fn(v) for v in col.values]
        return list(map(answers.__getitem__, col.at))

    def _set(self, i, name, value):
        value = _send(self._r, i, name, value)
        if self._w is None:
            self._w = {}
        self._w.setdefault(name, {})[i] = value
        k = _COL.get(name)
        if k is not None:
            if self._c[k] is not None:
                self._c[k][i] = value
        else:
            k = _LST[name]
            if self._l[k] is None:
                self._l[k] = {}
            self._l[k][i] = value

    def _list(self, i, name):
        k = _LST[name]
        cache = self._l[k]
        if cache is None:
            cache = self._l[k] = {}
        v = cache.get(i)
        if v is None:
            sel = _selector(name)
            v = self._r.labels(i, sel) if _KIND[name] == "labels" else self._r.policies(i, sel)
            cache[i] = v
        return v

    def _record(self, i):
        rec = self._r.record(i)
        if self._w:
            for name, changed in self._w.items():
                if i in changed:
                    setattr(rec, name, changed[i])
        return rec


def _column_property(name, k):
    def get(self):
        c = self._b._c[k]
        if c is None:
            c = self._b._load(k, name)
        return c[self._i]

    def set(self, value):
        self._b._set(self._i, name, value)

    return property(get, set, doc=f"`{name.replace('_', '-')}` of this flow (its column is fetched once a batch)")


def _list_property(name):
    def get(self):
        return self._b._list(self._i, name)

    def set(self, value):
        self._b._set(self._i, name, value)

    return property(get, set, doc=f"`{name.replace('_', '-')}` of this flow (fetched per flow; assign to change)")


class Flow:
    """One flow of a batch. Every field of the WIT `flow` record is a property (`f.source_namespace`,
    `f.dest_port`, `f.action`, `f.source_labels`, ...); assigning one changes the flow (a setter call).

    Enums read as the generated enums (`Action.DENY`) and can be assigned by name (`f.action = "deny"`). Lists
    (labels, policies) are the helper's cache: to change one, assign a new list (`f.dest_labels = [...]`)."""

    __slots__ = ("_b", "_i")

    def __init__(self, batch, i):
        self._b = batch
        self._i = i

    @property
    def index(self):
        """This flow's position in the batch."""
        return self._i

    def record(self):
        """The whole flow as the generated `Flow` record (one call), with this call's changes applied: for
        transforms that read nearly everything, and for `output(...)` in an expansion."""
        return self._b._record(self._i)

    def __repr__(self):
        return f"<flowgate.Flow {self._i} of {self._b._n}>"


for _k, _name in enumerate(_COLUMNS):
    setattr(Flow, _name, _column_property(_name, _k))
for _name in _LISTS:
    setattr(Flow, _name, _list_property(_name))
del _k, _name

# --- config -------------------------------------------------------------------------------------------------------


class ConfigError(Exception):
    """Raised from a transform's constructor (or `Config`): refuses the configuration with this message."""


def _quote(key):
    return json.dumps(key, ensure_ascii=False)


class Config:
    """The transform's configuration (`list<tuple<string, string>>`; a later pair wins). Every key read is
    noted; `finish()` (called by `export` after the constructor) refuses keys nobody read, so typos fail loudly."""

    __slots__ = ("_map", "_read", "_prefixes")

    def __init__(self, pairs):
        self._map = dict(pairs)
        self._read = set()
        self._prefixes = set()

    def get(self, key, default=None):
        """The value of `key`, or `default`."""
        self._read.add(key)
        return self._map.get(key, default)

    def __contains__(self, key):
        self._read.add(key)
        return key in self._map

    def require(self, key):
        """The value of `key`; refused when absent."""
        self._read.add(key)
        if key not in self._map:
            raise ConfigError(f"config key {_quote(key)} is required")
        return self._map[key]

    def list(self, key):
        """A comma-separated list: items trimmed, empty items dropped; `[]` when absent."""
        return [item.strip() for item in self.get(key, "").split(",") if item.strip()]

    def parse(self, key, convert, default):
        """`convert(value)` (e.g. `int`, `float`), `default` when absent; refused when `convert` fails."""
        value = self.get(key)
        if value is None:
            return default
        try:
            return convert(value.strip())
        except (ValueError, TypeError):
            raise ConfigError(f"config key {_quote(key)}: {_quote(value)} is not valid") from None

    def with_prefix(self, prefix):
        """Every `prefix.<rest>` key as (rest, value): maps written flat, e.g. `team.payments: billing`."""
        self._prefixes.add(prefix)
        start = prefix + "."
        return [(k[len(start):], v) for k, v in self._map.items() if k.startswith(start)]

    def keys_read(self):
        """The keys read so far (and `prefix.*` for prefixes), sorted."""
        return sorted(self._read | {p + ".*" for p in self._prefixes})

    def unknown(self):
        """The keys given that nothing read, sorted."""
        starts = tuple(p + "." for p in self._prefixes)
        return sorted(k for k in self._map if k not in self._read and not (starts and k.startswith(starts)))

    def finish(self):
        """Refuses the configuration when it has a key the transform never read."""
        unknown = self.unknown()
        if not unknown:
            return
        names = ", ".join(_quote(k) for k in unknown)
        noun = "key" if len(unknown) == 1 else "keys"  # worded as the Rust SDK's `Config::refuse_unread`
        read = self.keys_read()
        reads = f"reads: {', '.join(read)}" if read else "reads no keys"
        raise ConfigError(f"unknown config {noun} {names}; this transform {reads}")


# --- the export ---------------------------------------------------------------------------------------------------

_instance = None  # componentize-py makes a fresh Transform object per call: what init built lives here


def export(factory):
    """The class componentize-py calls (`Transform = flowgate.export(MyTransform)`).

    `init` builds `factory(Config)`, then refuses keys it never read; a `ConfigError` reaches the host as
    `Err(message)`. `process` wraps the batch resource in a `Batch` and returns `instance.process(batch)`."""

    class Transform:
        def init(self, config):
            global _instance
            c = Config(config)
            try:
                t = factory(c)
                c.finish()
            except ConfigError as e:
                raise Err(str(e)) from None
            _instance = t

        def process(self, batch):
            return _instance.process(Batch(batch))

    Transform.__name__ = Transform.__qualname__ = "Transform"
    return Transform


# --- outcomes -----------------------------------------------------------------------------------------------------

KEEP = T.Outcome_Keep()
DROP = T.Outcome_Drop()


def keep():
    """Pass the flow on (with the changes made to it): nothing crosses back."""
    return KEEP


def drop():
    """Do not export the flow."""
    return DROP


def error(message):
    """This flow could not be processed: the failure policy decides."""
    return T.Outcome_Error(str(message))


def _value(v):
    if isinstance(v, (T.Value_Str, T.Value_Int, T.Value_Float, T.Value_Boolean, T.Value_StrList)):
        return v
    if isinstance(v, bool):
        return T.Value_Boolean(v)
    if isinstance(v, int):
        return T.Value_Int(v)
    if isinstance(v, float):
        return T.Value_Float(v)
    if isinstance(v, str):
        return T.Value_Str(v)
    if isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v):
        return T.Value_StrList(list(v))
    raise TypeError(f"an attribute value is a str, int, float, bool or list of str, not {v!r}")


def attributes(attrs):
    """OTLP attributes from a dict (or pairs): str, int, float, bool and lists of str map to their WIT values."""
    if not attrs:
        return []
    items = attrs.items() if isinstance(attrs, dict) else attrs
    return [T.Attribute(str(k), _value(v)) for k, v in items]


def text(body):
    """A free-text body."""
    return T.Body_Text(str(body))


def structured(attrs):
    """A structured (OTLP kvlist) body from a dict."""
    return T.Body_Structured(attributes(attrs))


_BODIES = {"flow-json": T.Body_FlowJson, "flow_json": T.Body_FlowJson, "attributes": T.Body_Attributes}


def _body(body):
    if body is None or isinstance(body, (T.Body_FlowJson, T.Body_Structured, T.Body_Attributes, T.Body_Text)):
        return body
    if isinstance(body, dict):
        return structured(body)
    if isinstance(body, str) and body in _BODIES:
        return _BODIES[body]()
    raise ValueError(f"body is 'flow-json', 'attributes', a dict, text(...) or structured(...), not {body!r}")


def annotations(attributes=None, severity=None, body=None):
    """The generated `Annotations`: attributes as a dict, severity as "warn" (or `Severity.WARN`), body as
    "flow-json", "attributes", a dict (structured), `text("...")` or `structured({...})`."""
    return T.Annotations(
        _attributes(attributes),
        None if severity is None else _enum_value(T.Severity, severity),
        _body(body),
    )


_attributes = attributes  # `annotations`' parameter hides the function


def annotate(attributes=None, severity=None, body=None):
    """Pass the flow on (with its changes) and shape its record; see `annotations`."""
    return T.Outcome_Annotate(annotations(attributes, severity, body))


def output(flow, attributes=None, severity=None, body=None):
    """One record of an expansion: a whole `Flow` record (e.g. `f.record()`, changed) and its annotations."""
    return T.Output(flow, annotations(attributes, severity, body))


def expand(outputs):
    """Several records from one flow (`[output(...), ...]`; an empty list drops it)."""
    return T.Outcome_Expand(list(outputs))


# --- host -----------------------------------------------------------------------------------------------------------


def log(level, message):
    """Writes to the gateway's log: level "debug", "info", "warn" or "error" (or `host.Level`)."""
    host.log(_enum_value(host.Level, level), str(message))


def counter_add(name, delta=1):
    """Adds `delta` to the counter `name` (`flowgate_transform_counter_total{transform, name}`)."""
    host.counter_add(name, delta)
