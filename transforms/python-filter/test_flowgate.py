"""Native tests of flowgate.py and app.py, without a WebAssembly runtime: `python3 -m unittest` in this directory
(build.sh runs them before building).

The bindings componentize-py generates are plain Python apart from the host calls, so they are generated into a
temporary directory when componentize-py is installed (as build.sh ensures), which checks the helper against the
real type names. Without it, small stand-ins with the same names are used. The host's `batch` resource is
`FakeBatch` below: the resource's methods in plain Python, counting calls.
"""
import atexit
import dataclasses
import enum
import shutil
import subprocess
import sys
import tempfile
import types as pytypes
import unittest
from collections import Counter
from pathlib import Path
from typing import List, Optional

HERE = Path(__file__).resolve().parent
WIT = HERE.parent.parent / "wit"


def _generated_bindings():
    exe = shutil.which("componentize-py")
    if not exe:
        return False
    out = tempfile.mkdtemp(prefix="flowgate-bindings-")
    atexit.register(shutil.rmtree, out, True)
    run = subprocess.run([exe, "-q", "-d", str(WIT), "-w", "flowgate:transform/transformer", "bindings", out],
                         capture_output=True)
    if run.returncode != 0:
        return False
    sys.path.insert(0, out)
    return True


def _stand_in_bindings():
    """The names flowgate.py and app.py use, as componentize-py generates them."""

    def enum_(name, members):
        return enum.Enum(name, [(m, i) for i, m in enumerate(members.split())])

    def record(name, fields):
        return dataclasses.make_dataclass(name, fields)

    t = pytypes.ModuleType("wit_world.imports.types")
    t.Action = enum_("Action", "UNSPECIFIED ALLOW DENY PASS UNKNOWN")
    t.Reporter = enum_("Reporter", "UNSPECIFIED SRC DST UNKNOWN")
    t.EndpointType = enum_("EndpointType", "UNSPECIFIED WORKLOAD_ENDPOINT HOST_ENDPOINT NETWORK_SET NETWORK UNKNOWN")
    t.PolicyKind = enum_("PolicyKind", "UNSPECIFIED CALICO_NETWORK_POLICY GLOBAL_NETWORK_POLICY "
                         "STAGED_NETWORK_POLICY STAGED_GLOBAL_NETWORK_POLICY STAGED_KUBERNETES_NETWORK_POLICY "
                         "NETWORK_POLICY ADMIN_NETWORK_POLICY BASELINE_ADMIN_NETWORK_POLICY PROFILE END_OF_TIER "
                         "CLUSTER_NETWORK_POLICY UNKNOWN")
    t.Severity = enum_("Severity", "TRACE DEBUG INFO WARN ERROR FATAL")
    t.StringField = enum_("StringField", "SOURCE_NAME SOURCE_NAMESPACE DEST_NAME DEST_NAMESPACE DEST_SERVICE_NAME "
                          "DEST_SERVICE_NAMESPACE DEST_SERVICE_PORT_NAME PROTO")
    t.IntField = enum_("IntField", "DEST_PORT DEST_SERVICE_PORT START_TIME END_TIME PACKETS_IN PACKETS_OUT BYTES_IN "
                       "BYTES_OUT NUM_CONNECTIONS_STARTED NUM_CONNECTIONS_COMPLETED NUM_CONNECTIONS_LIVE")
    t.EndpointField = enum_("EndpointField", "SOURCE_TYPE DEST_TYPE")
    t.LabelsField = enum_("LabelsField", "SOURCE_LABELS DEST_LABELS")
    t.PoliciesField = enum_("PoliciesField", "ENFORCED_POLICIES PENDING_POLICIES")
    hit = [("kind", object), ("namespace", str), ("name", str), ("tier", str), ("action", object),
           ("policy_index", int), ("rule_index", int)]
    t.PolicyTrigger = record("PolicyTrigger", hit)
    t.PolicyHit = record("PolicyHit", hit + [("trigger", Optional[object])])
    t.Flow = record("Flow", [
        ("source_name", str), ("source_namespace", str), ("source_type", object), ("dest_name", str),
        ("dest_namespace", str), ("dest_type", object), ("dest_port", int), ("dest_service_name", str),
        ("dest_service_namespace", str), ("dest_service_port_name", str), ("dest_service_port", int),
        ("proto", str), ("reporter", object), ("action", object), ("enforced_policies", list),
        ("pending_policies", list), ("start_time", int), ("end_time", int), ("source_labels", list),
        ("dest_labels", list), ("packets_in", int), ("packets_out", int), ("bytes_in", int), ("bytes_out", int),
        ("num_connections_started", int), ("num_connections_completed", int), ("num_connections_live", int)])
    for name in ("Value_Str", "Value_Int", "Value_Float", "Value_Boolean", "Value_StrList", "Body_Structured",
                 "Body_Text", "Outcome_Annotate", "Outcome_Expand", "Outcome_Error"):
        setattr(t, name, record(name, [("value", object)]))
    for name in ("Body_FlowJson", "Body_Attributes", "Outcome_Keep", "Outcome_Drop"):
        setattr(t, name, record(name, []))
    t.Attribute = record("Attribute", [("key", str), ("value", object)])
    t.Annotations = record("Annotations", [("attributes", list), ("severity", object), ("body", object)])
    t.Output = record("Output", [("flow", object), ("annotations", object)])
    t.StringColumn = record("StringColumn", [("values", List[str]), ("at", List[int])])

    h = pytypes.ModuleType("wit_world.imports.host")
    h.Level = enum_("Level", "DEBUG INFO WARN ERROR")
    h.log = h.counter_add = None  # replaced below

    class Err(Exception):
        def __init__(self, value):
            super().__init__(value)
            self.value = value

    c = pytypes.ModuleType("componentize_py_types")
    c.Err = Err
    world = pytypes.ModuleType("wit_world")
    imports = pytypes.ModuleType("wit_world.imports")
    world.imports, imports.types, imports.host = imports, t, h
    sys.modules.update({"wit_world": world, "wit_world.imports": imports, "wit_world.imports.types": t,
                        "wit_world.imports.host": h, "componentize_py_types": c})


BINDINGS = "generated" if _generated_bindings() else "stand-ins"
if BINDINGS == "stand-ins":
    _stand_in_bindings()

sys.path.insert(0, str(HERE))
from componentize_py_types import Err  # noqa: E402
from wit_world.imports import host  # noqa: E402
from wit_world.imports import types as T  # noqa: E402

LOG = []
COUNTERS = Counter()
host.log = lambda level, message: LOG.append((level, message))
host.counter_add = lambda name, delta: COUNTERS.update({name: delta})

import flowgate  # noqa: E402
from flowgate import Batch, Config, ConfigError  # noqa: E402

import app  # noqa: E402


def hit(name="allow-dns", action=T.Action.ALLOW):
    return T.PolicyHit(T.PolicyKind.CALICO_NETWORK_POLICY, "checkout", name, "default", action, 0, 1, None)


def sample(**changes):
    """A flow like the Rust SDK's `sample_flow`: checkout -> payments:5432, allowed."""
    f = T.Flow(
        source_name="checkout-api-7d9f8b6c4-*", source_namespace="checkout",
        source_type=T.EndpointType.WORKLOAD_ENDPOINT, dest_name="payments-db-0", dest_namespace="payments",
        dest_type=T.EndpointType.WORKLOAD_ENDPOINT, dest_port=5432, dest_service_name="payments-db",
        dest_service_namespace="payments", dest_service_port_name="postgres", dest_service_port=5432, proto="tcp",
        reporter=T.Reporter.SRC, action=T.Action.ALLOW, enforced_policies=[hit()], pending_policies=[],
        start_time=1_764_970_845, end_time=1_764_970_860, source_labels=["app=checkout", "pod-template-hash=abc"],
        dest_labels=["app=payments"], packets_in=10, packets_out=12, bytes_in=1000, bytes_out=1200,
        num_connections_started=1, num_connections_completed=1, num_connections_live=0)
    return dataclasses.replace(f, **changes)


class FakeBatch:
    """The host's `batch` resource in plain Python: getters read the flows as given (a setter does not change
    what a getter returns, as in the host); every call is counted, every setter call recorded."""

    def __init__(self, flows):
        self.flows = [dataclasses.replace(f) for f in flows]
        self.calls = Counter()
        self.sets = []

    def _count(self, name, *args):
        self.calls[(name,) + args] += 1
        self.calls[name] += 1

    def len(self):
        self._count("len")
        return len(self.flows)

    def strings(self, field):
        self._count("strings", field)
        name = field.name.lower()
        values, index, at = [], {}, []
        for f in self.flows:
            v = getattr(f, name)
            if v not in index:
                index[v] = len(values)
                values.append(v)
            at.append(index[v])
        return T.StringColumn(values, at)

    def ints(self, field):
        self._count("ints", field)
        return [getattr(f, field.name.lower()) for f in self.flows]

    def actions(self):
        self._count("actions")
        return [f.action for f in self.flows]

    def reporters(self):
        self._count("reporters")
        return [f.reporter for f in self.flows]

    def endpoint_types(self, field):
        self._count("endpoint_types", field)
        return [getattr(f, field.name.lower()) for f in self.flows]

    def labels(self, flow, field):
        self._count("labels", flow, field)
        return list(getattr(self.flows[flow], field.name.lower()))

    def policies(self, flow, field):
        self._count("policies", flow, field)
        return list(getattr(self.flows[flow], field.name.lower()))

    def record(self, flow):
        self._count("record", flow)
        return dataclasses.replace(self.flows[flow])

    def _set(self, method, *args):
        self._count(method)
        self.sets.append((method,) + args)

    def set_string(self, flow, field, value):
        assert isinstance(field, T.StringField) and isinstance(value, str)
        self._set("set_string", flow, field, value)

    def set_int(self, flow, field, value):
        assert isinstance(field, T.IntField) and isinstance(value, int)
        self._set("set_int", flow, field, value)

    def set_action(self, flow, value):
        assert isinstance(value, T.Action)
        self._set("set_action", flow, value)

    def set_reporter(self, flow, value):
        assert isinstance(value, T.Reporter)
        self._set("set_reporter", flow, value)

    def set_endpoint_type(self, flow, field, value):
        assert isinstance(field, T.EndpointField) and isinstance(value, T.EndpointType)
        self._set("set_endpoint_type", flow, field, value)

    def set_labels(self, flow, field, value):
        assert isinstance(field, T.LabelsField) and isinstance(value, list)
        self._set("set_labels", flow, field, value)

    def set_policies(self, flow, field, value):
        assert isinstance(field, T.PoliciesField) and isinstance(value, list)
        self._set("set_policies", flow, field, value)


def varied(n):
    """`n` flows over a few namespaces, actions and ports."""
    namespaces = ["checkout", "payments", "kube-system", "kube-dns", "monitoring"]
    actions = [T.Action.ALLOW, T.Action.DENY, T.Action.PASS]
    return [sample(source_namespace=namespaces[i % 5], dest_namespace=namespaces[(i * 3 + 1) % 5],
                   action=actions[i % 3], dest_port=[443, 5432, 80, 53][i % 4], source_name=f"client-{i}-*")
            for i in range(n)]


class ColumnsAreFetchedOncePerBatch(unittest.TestCase):
    def test_three_fields_read_on_every_flow_make_three_calls(self):
        fake = FakeBatch(varied(200))
        b = Batch(fake)
        seen = [(f.source_namespace, f.action, f.dest_port) for f in b]
        self.assertEqual(seen, [(f.source_namespace, f.action, f.dest_port) for f in fake.flows])
        self.assertEqual(fake.calls["len"], 1)
        self.assertEqual(fake.calls["strings"], 1)
        self.assertEqual(fake.calls["actions"], 1)
        self.assertEqual(fake.calls["ints"], 1)
        # Reading again (same flows or new Flow objects of the same batch) makes no call.
        before = sum(fake.calls.values())
        for f in b:
            f.source_namespace, f.action, f.dest_port
        self.assertEqual(sum(fake.calls.values()), before)

    def test_a_new_batch_fetches_again(self):
        fake = FakeBatch(varied(10))
        for _ in range(3):
            [f.dest_namespace for f in Batch(fake)]
        self.assertEqual(fake.calls[("strings", T.StringField.DEST_NAMESPACE)], 3)

    def test_a_field_nobody_reads_is_never_fetched(self):
        fake = FakeBatch(varied(10))
        [f.proto for f in Batch(fake)]
        self.assertEqual(set(k for k in fake.calls if isinstance(k, str)), {"len", "strings"})

    def test_lists_are_fetched_per_flow_once(self):
        fake = FakeBatch(varied(5))
        b = Batch(fake)
        for _ in range(2):
            self.assertEqual(b[2].source_labels, ["app=checkout", "pod-template-hash=abc"])
            self.assertEqual(b[2].enforced_policies, [hit()])
        self.assertEqual(fake.calls["labels"], 1)
        self.assertEqual(fake.calls["policies"], 1)
        self.assertEqual(fake.calls[("labels", 2, T.LabelsField.SOURCE_LABELS)], 1)

    def test_every_field_of_the_record_reads_as_given(self):
        flows = varied(7)
        flows[3] = sample(source_type=T.EndpointType.NETWORK, dest_type=T.EndpointType.HOST_ENDPOINT,
                          reporter=T.Reporter.DST, pending_policies=[hit("staged", T.Action.DENY)],
                          dest_labels=[], proto="udp", bytes_out=7, num_connections_live=3)
        b = Batch(FakeBatch(flows))
        names = [f.name for f in dataclasses.fields(T.Flow)]
        self.assertEqual(names, [name for name, _ in flowgate.FIELDS], "FIELDS follows the WIT record")
        for f, want in zip(b, flows):
            for name in names:
                self.assertEqual(getattr(f, name), getattr(want, name), name)

    def test_whole_column_access(self):
        flows = varied(20)
        fake = FakeBatch(flows)
        b = Batch(fake)
        self.assertEqual(len(b), 20)
        col = b.strings("source_namespace")
        self.assertEqual(len(col.values), 5, "one value per distinct namespace")
        self.assertEqual([col.values[a] for a in col.at], [f.source_namespace for f in flows])
        self.assertEqual(b.column("dest_port"), [f.dest_port for f in flows])
        asked = []
        kube = b.map_distinct("dest_namespace", lambda ns: asked.append(ns) or ns.startswith("kube-"))
        self.assertEqual(kube, [f.dest_namespace.startswith("kube-") for f in flows])
        self.assertEqual(len(asked), 5, "decided once per distinct value")
        # The per-flow properties share the columns fetched for the whole batch.
        [f.source_namespace for f in b]
        self.assertEqual(fake.calls["strings"], 2)
        with self.assertRaises(KeyError):
            b.column("source_labels")
        with self.assertRaises(KeyError):
            b.strings("dest_port")


class Changes(unittest.TestCase):
    def test_assigning_calls_the_typed_setter_and_later_reads_see_it(self):
        fake = FakeBatch(varied(4))
        b = Batch(fake)
        f = b[1]
        self.assertEqual(f.source_name, "client-1-*")
        f.source_name = "redacted"
        f.dest_port = 8443
        f.action = T.Action.DENY
        f.reporter = "dst"
        f.dest_type = "network-set"
        f.dest_labels = ("app=x",)
        f.enforced_policies = []
        self.assertEqual(fake.sets, [
            ("set_string", 1, T.StringField.SOURCE_NAME, "redacted"),
            ("set_int", 1, T.IntField.DEST_PORT, 8443),
            ("set_action", 1, T.Action.DENY),
            ("set_reporter", 1, T.Reporter.DST),
            ("set_endpoint_type", 1, T.EndpointField.DEST_TYPE, T.EndpointType.NETWORK_SET),
            ("set_labels", 1, T.LabelsField.DEST_LABELS, ["app=x"]),
            ("set_policies", 1, T.PoliciesField.ENFORCED_POLICIES, []),
        ])
        # Read after write, through the same Flow or another one of the same position.
        for g in (f, b[1]):
            self.assertEqual((g.source_name, g.dest_port, g.action, g.reporter, g.dest_type, g.dest_labels,
                              g.enforced_policies),
                             ("redacted", 8443, T.Action.DENY, T.Reporter.DST, T.EndpointType.NETWORK_SET,
                              ["app=x"], []))
        # The other flows are untouched.
        self.assertEqual(b[0].source_name, "client-0-*")
        self.assertEqual(b[2].dest_port, 80)
        self.assertEqual(fake.calls["labels"], 0, "an assigned list is not fetched")

    def test_a_change_before_the_first_read_survives_the_fetch(self):
        fake = FakeBatch(varied(3))
        b = Batch(fake)
        b[0].dest_namespace = "elsewhere"
        self.assertEqual(fake.calls["strings"], 0, "a setter does not fetch the column")
        self.assertEqual([f.dest_namespace for f in b], ["elsewhere", "monitoring", "kube-system"])
        col = b.strings("dest_namespace")
        self.assertEqual([col.values[a] for a in col.at], ["elsewhere", "monitoring", "kube-system"])
        self.assertEqual(b.column("dest_namespace")[0], "elsewhere")
        rec = b[0].record()
        self.assertEqual((rec.dest_namespace, rec.source_namespace), ("elsewhere", "checkout"))
        self.assertEqual(b[1].record().dest_namespace, "monitoring")

    def test_wrong_types_are_refused_before_the_host_sees_them(self):
        fake = FakeBatch(varied(1))
        f = Batch(fake)[0]
        with self.assertRaises(TypeError):
            f.source_name = 3
        with self.assertRaises(TypeError):
            f.dest_port = "443"
        with self.assertRaises(ValueError):
            f.action = "block"
        self.assertEqual(fake.sets, [])


class Outcomes(unittest.TestCase):
    def test_builders(self):
        self.assertIsInstance(flowgate.keep(), T.Outcome_Keep)
        self.assertIsInstance(flowgate.DROP, T.Outcome_Drop)
        a = flowgate.annotate(attributes={"team": "billing", "n": 3, "ok": True, "r": 0.5, "l": ["a", "b"]},
                              severity="warn", body="attributes")
        self.assertIsInstance(a, T.Outcome_Annotate)
        self.assertEqual(a.value.attributes, [
            T.Attribute("team", T.Value_Str("billing")), T.Attribute("n", T.Value_Int(3)),
            T.Attribute("ok", T.Value_Boolean(True)), T.Attribute("r", T.Value_Float(0.5)),
            T.Attribute("l", T.Value_StrList(["a", "b"]))])
        self.assertEqual((a.value.severity, a.value.body), (T.Severity.WARN, T.Body_Attributes()))
        plain = flowgate.annotate()
        self.assertEqual((plain.value.attributes, plain.value.severity, plain.value.body), ([], None, None))
        self.assertEqual(flowgate.annotate(body=flowgate.text("hi")).value.body, T.Body_Text("hi"))
        self.assertEqual(flowgate.annotate(body={"k": "v"}).value.body,
                         T.Body_Structured([T.Attribute("k", T.Value_Str("v"))]))
        self.assertEqual(flowgate.annotate(body="flow-json").value.body, T.Body_FlowJson())
        with self.assertRaises(ValueError):
            flowgate.annotate(body="free text without text()")
        self.assertEqual(flowgate.error("bad").value, "bad")
        rec = sample()
        e = flowgate.expand([flowgate.output(rec, attributes={"copy": 1})])
        self.assertEqual(e.value[0].flow, rec)
        self.assertEqual(e.value[0].annotations.attributes, [T.Attribute("copy", T.Value_Int(1))])


class Configs(unittest.TestCase):
    def test_reading_and_lists(self):
        c = Config([("a", " x, y ,,z"), ("n", "7"), ("a", "last, wins"), ("team.payments", "billing")])
        self.assertEqual(c.list("a"), ["last", "wins"])
        self.assertEqual(c.list("absent"), [])
        self.assertEqual(c.get("absent", "d"), "d")
        self.assertEqual(c.parse("n", int, 0), 7)
        self.assertEqual(c.with_prefix("team"), [("payments", "billing")])
        self.assertEqual(c.keys_read(), ["a", "absent", "n", "team.*"])
        c.finish()
        with self.assertRaises(ConfigError) as e:
            Config([("n", "x")]).parse("n", int, 0)
        self.assertEqual(str(e.exception), 'config key "n": "x" is not valid')
        with self.assertRaises(ConfigError) as e:
            Config([]).require("key")
        self.assertEqual(str(e.exception), 'config key "key" is required')

    def test_a_key_nobody_read_is_refused(self):
        c = Config([("drop_namespace", "kube-*"), ("ports", "443")])
        c.list("ports"), c.list("drop_namespaces"), c.list("actions")
        with self.assertRaises(ConfigError) as e:
            c.finish()
        self.assertEqual(str(e.exception),
                         'unknown config key "drop_namespace"; this transform reads: actions, drop_namespaces, ports')
        c = Config([("b", "1"), ("a", "2"), ("ports", "1")])
        c.get("ports")
        with self.assertRaises(ConfigError) as e:
            c.finish()
        self.assertEqual(str(e.exception), 'unknown config keys "a", "b"; this transform reads: ports')
        with self.assertRaises(ConfigError) as e:
            Config([("a", "1")]).finish()
        self.assertEqual(str(e.exception), 'unknown config key "a"; this transform reads no keys')

    def test_export_turns_refusals_into_err(self):
        class Reads:
            def __init__(self, config):
                if config.get("fail"):
                    raise ConfigError("fail: asked to")

            def process(self, flows):
                return [flowgate.KEEP for _ in flows]

        t = flowgate.export(Reads)
        t().init([("fail", "")])
        self.assertEqual(t().process(FakeBatch(varied(3))), [flowgate.KEEP] * 3)
        for config, message in [([("fail", "yes")], "fail: asked to"),
                                ([("fial", "yes")], 'unknown config key "fial"; this transform reads: fail')]:
            with self.assertRaises(Err) as e:
                t().init(config)
            self.assertEqual(e.exception.value, message)


def run_filter(config, flows):
    app.Transform().init(config)
    out = app.Transform().process(FakeBatch(flows))
    assert len(out) == len(flows)
    return [isinstance(o, T.Outcome_Keep) for o in out]


class TheFilter(unittest.TestCase):
    def test_no_option_keeps_everything(self):
        self.assertEqual(run_filter([], varied(30)), [True] * 30)

    def test_each_option_keeps_what_it_names_and_drops_the_rest(self):
        deny, pass_ = T.Action.DENY, T.Action.PASS
        self.assertEqual(run_filter([("actions", "Deny,Pass")],
                                    [sample(action=deny), sample(action=pass_), sample()]), [True, True, False])
        self.assertEqual(run_filter([("drop_namespaces", "kube-*,monitoring")], [
            sample(), sample(source_namespace="kube-system"), sample(dest_namespace="monitoring"),
            sample(dest_namespace="monitoring-2")]), [True, False, False, True])
        self.assertEqual(run_filter([("ports", "443, 5432")],
                                    [sample(), sample(dest_port=443), sample(dest_port=80)]), [True, True, False])

    def test_matches_the_rust_logic_on_varied_flows(self):
        flows = varied(300)
        config = [("actions", "Deny"), ("drop_namespaces", "kube-*")]
        want = [f.action == T.Action.DENY and not f.source_namespace.startswith("kube-")
                and not f.dest_namespace.startswith("kube-") for f in flows]
        self.assertEqual(run_filter(config, flows), want)
        self.assertTrue(any(want) and not all(want))

    def test_three_calls_a_batch_at_most(self):
        fake = FakeBatch(varied(512))
        app.Transform().init([("actions", "Allow,Deny"), ("drop_namespaces", "kube-*"), ("ports", "443,80")])
        app.Transform().process(fake)
        self.assertEqual(fake.calls["len"] + fake.calls["actions"] + fake.calls["strings"] + fake.calls["ints"],
                         sum(v for k, v in fake.calls.items() if isinstance(k, str)))
        self.assertEqual((fake.calls["actions"], fake.calls["strings"], fake.calls["ints"]), (1, 2, 1))

    def test_bad_config_is_refused_with_the_key_named(self):
        cases = [
            ([("actions", "Block")], "actions: 'Block' is not Allow, Deny or Pass"),
            ([("ports", "443,https")], "ports: invalid literal for int() with base 10: 'https'"),
            ([("drop_namespace", "kube-*")],
             'unknown config key "drop_namespace"; this transform reads: actions, drop_namespaces, ports'),
        ]
        for config, message in cases:
            with self.assertRaises(Err) as e:
                app.Transform().init(config)
            self.assertEqual(e.exception.value, message)

    def test_init_logs_a_line(self):
        LOG.clear()
        app.Transform().init([("actions", "Deny")])
        self.assertEqual(LOG, [(host.Level.INFO, "python filter ready: actions=['Deny']")])


if __name__ == "__main__":
    unittest.main()
