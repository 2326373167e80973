"""Tests of the Flowgate chart with the real Helm engine (helm-python-sdk, no helm binary) and the Kubernetes
schemas (kubernetes-validate, offline), and of the configuration it renders with the real gateway
(`flowgate check --config-only`).

Run through `charts/tests/run.sh` (it installs the tools). `UPDATE_GOLDEN=1` rewrites the golden renders.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import helm_python as helm
import yaml
from kubernetes_validate import utils as kv

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flowgate"
GOLDEN = ROOT / "charts" / "tests" / "golden"
RELEASE, NAMESPACE = "flow-logs", "calico-system"
KUBE_VERSION = "1.30.0"
# Kinds from CRDs the offline schemas do not hold, with the fields checked instead.
CRD_KINDS = {"ServiceMonitor": ("monitoring.coreos.com/v1", ["selector", "endpoints"])}

SCENARIOS = {"default": {}} | {
    p.name.removesuffix("-values.yaml"): yaml.safe_load(p.read_text()) for p in sorted((CHART / "ci").glob("*-values.yaml"))
}

_chart = helm.Chart.load(str(CHART))


def render_raw(values: dict) -> dict[str, str]:
    return _chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(values: dict) -> list[dict]:
    docs = []
    for path, text in sorted(render_raw(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def containers(deploy: dict) -> list[dict]:
    return deploy["spec"]["template"]["spec"]["containers"]


# ---------------------------------------------------------------------------------------------------------------


def test_lint_is_clean_for_every_scenario():
    for name, values in SCENARIOS.items():
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version="v" + KUBE_VERSION)
        bad = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not bad, f"{name}: {bad}"


def test_every_rendered_manifest_is_valid_kubernetes():
    for name, values in SCENARIOS.items():
        docs = render(values)
        assert docs, name
        for d in docs:
            if d["kind"] in CRD_KINDS:
                api, fields = CRD_KINDS[d["kind"]]
                assert d["apiVersion"] == api and all(f in d["spec"] for f in fields), (name, d)
                continue
            try:
                kv.validate(d, KUBE_VERSION, strict=True)
            except kv.ValidationError as e:
                raise AssertionError(f"{name}: {d['kind']} {d['metadata']['name']}: {e.message}") from None


def test_defaults_pass_the_restricted_pod_security_standard():
    for name, values in SCENARIOS.items():
        for deploy in of_kind(render(values), "Deployment"):
            pod = deploy["spec"]["template"]["spec"]
            psc = pod["securityContext"]
            assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, name
            assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
            for c in containers(deploy):
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, name
                assert sc["readOnlyRootFilesystem"] is True, name
                assert sc["capabilities"]["drop"] == ["ALL"], name
                assert "add" not in sc["capabilities"], name
                assert c["resources"]["limits"]["memory"], name
                assert c["livenessProbe"]["httpGet"]["port"] == "http", name
                assert any(p["name"] == "http" for p in c["ports"]), name
            for v in pod["volumes"]:
                assert "hostPath" not in v, name
            if name != "seed-exporter":  # that file asks for the token (`automount: true`), as the old chart's did
                assert pod["automountServiceAccountToken"] is False, name


def test_mounts_are_directories_never_subpath():
    # subPath mounts never see ConfigMap or Secret updates: transforms, config and certificates would not reload.
    for name, values in SCENARIOS.items():
        for deploy in of_kind(render(values), "Deployment"):
            for c in containers(deploy):
                for m in c["volumeMounts"]:
                    assert "subPath" not in m and "subPathExpr" not in m, (name, m)
                mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
                assert mounts["/etc/flowgate/transforms"] == "transforms", name


def test_an_old_exporter_values_file_renders_a_working_deployment():
    values = SCENARIOS["seed-exporter"]
    docs = render(values)
    (deploy,) = of_kind(docs, "Deployment")
    assert deploy["metadata"]["namespace"] == "calico-system"
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"]["type"] == "Recreate", "never two readers of the stream during a rollout"
    (c,) = containers(deploy)
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    for k, v in values["env"].items():
        assert env[k] == str(v), f"{k}: every env value is a quoted string, as in the old chart"
    assert env["RECONNECT_WAIT_TIME_IN_MILLISECONDS"] == "3000"
    pod = deploy["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["goldmane-key-pair"]["secret"]["secretName"] == "goldmane-key-pair"
    assert vols["goldmane-ca-bundle"]["configMap"]["name"] == "goldmane-ca-bundle"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/etc/goldmane/certs", "/etc/goldmane/ca-cert"} <= mounts
    # The old helm-create probes (path /, port http) reach the admin server, which answers `/`.
    assert c["livenessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    # The old file's empty security contexts leave the restricted defaults in place (Helm merges maps).
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"} and pod["tolerations"][0]["operator"] == "Exists"
    assert pod["serviceAccountName"] == of_kind(docs, "ServiceAccount")[0]["metadata"]["name"]
    assert deploy["spec"]["template"]["metadata"]["annotations"]["team"] == "platform"


def test_no_scenario_renders_an_autoscaler():
    for name, values in SCENARIOS.items():
        assert not of_kind(render(values), "HorizontalPodAutoscaler"), name


def test_the_schema_refuses_what_would_duplicate_or_break():
    bad = {
        "two replicas": {"replicaCount": 2},
        "an autoscaler": {"autoscaling": {"enabled": True}},
        "an unknown key": {"replicas": 1},
        "an unknown config section": {"config": {"goldmain": {}}},
        "a nested env value": {"env": {"GOLDMANE_HOST": {"host": "x"}}},
        "a shard without a filter": {"shards": [{"name": "a"}]},
        "a shard name that is no DNS label": {"shards": [{"name": "Prod_1", "filter": {"actions": ["Deny"]}}]},
        "non-base64 binaryData": {"transforms": {"binaryData": {"x.wasm": "not base64!"}}},
        "an unknown persistence type": {"persistence": {"enabled": True, "type": "hostPath"}},
    }
    for what, values in bad.items():
        try:
            _chart.validate_schema(values)
        except helm.HelmValuesError:
            continue
        raise AssertionError(f"the schema accepted {what}: {values}")
    for name, values in SCENARIOS.items():
        _chart.validate_schema(values)


def test_a_state_directory_keeps_the_stream_cursor_by_default():
    # Without the persistent queue, an emptyDir holds the cursor so a restarted container resumes the stream.
    (deploy,) = of_kind(render(SCENARIOS["default"]), "Deployment")
    (c,) = containers(deploy)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["FLOWGATE_STATE_DIR"] == "/var/lib/flowgate/state"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/var/lib/flowgate/state"] == "state"
    vols = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in vols["state"], vols["state"]
    # With the persistent queue, the cursor lives beside it: no second directory.
    for d in of_kind(render(SCENARIOS["sharded"]), "Deployment"):
        (c,) = containers(d)
        assert "FLOWGATE_STATE_DIR" not in {e["name"] for e in c["env"]}
    off = dict(SCENARIOS["default"], state={"enabled": False})
    (deploy,) = of_kind(render(off), "Deployment")
    (c,) = containers(deploy)
    assert "FLOWGATE_STATE_DIR" not in {e["name"] for e in c["env"]}


def test_shards_get_a_deployment_each_with_its_own_filter_and_queue():
    docs = render(SCENARIOS["sharded"])
    deploys = of_kind(docs, "Deployment")
    assert [d["metadata"]["name"] for d in deploys] == ["flow-logs-flowgate-prod", "flow-logs-flowgate-nonprod"]
    (cm,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-config")]
    selectors = [d["spec"]["selector"]["matchLabels"]["flowgate.dev/shard"] for d in deploys]
    assert selectors == ["prod", "nonprod"], "selectors do not overlap"
    for d, shard in zip(deploys, SCENARIOS["sharded"]["shards"]):
        (c,) = containers(d)
        path = next(e["value"] for e in c["env"] if e["name"] == "FLOWGATE_CONFIG")
        cfg = yaml.safe_load(cm["data"][Path(path).name])
        assert cfg["goldmane"]["filter"] == shard["filter"]
        assert cfg["queue"]["persistent"]["dir"] == "/var/lib/flowgate/queue"


def test_config_changes_roll_the_pods_and_transform_changes_do_not():
    def template(values):
        (d,) = of_kind(render(values), "Deployment")
        return d["spec"]["template"]

    base = template({})
    changed = template({"config": {"shutdown_grace_ms": 20000, "admin": {"listen": "0.0.0.0:9090"}}})
    assert base["metadata"]["annotations"]["checksum/config"] != changed["metadata"]["annotations"]["checksum/config"]
    with_transform = template({"transforms": {"binaryData": {"filter.wasm": "AGFzbQ0AAQA="}}})
    assert with_transform == base, "transforms hot-reload: the pod template must not change"
    off = template({"rollOnConfigChange": False})
    assert "checksum/config" not in (off["metadata"].get("annotations") or {})


def test_the_rendered_configuration_is_accepted_by_the_gateway():
    binary = os.environ.get("FLOWGATE_BIN")
    assert binary, "FLOWGATE_BIN: the flowgate binary (run.sh builds it)"
    for name, values in SCENARIOS.items():
        docs = render(values)
        configs = {k: v for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-config") for k, v in d["data"].items()}
        for deploy in of_kind(docs, "Deployment"):
            (c,) = containers(deploy)
            env = {"PATH": os.environ["PATH"]}
            for e in c["env"]:
                # Values from Secrets are not known here; a plausible stand-in is checked instead.
                env[e["name"]] = e.get("value", "authorization=Bearer stand-in")
            key = Path(env.pop("FLOWGATE_CONFIG")).name
            with tempfile.TemporaryDirectory() as tmp:
                cfg = Path(tmp) / key
                cfg.write_text(configs[key])
                out = subprocess.run(
                    [binary, "check", "--config-only", "--config", str(cfg)], env=env, capture_output=True, text=True
                )
            assert out.returncode == 0, f"{name}/{deploy['metadata']['name']}: {out.stderr}"
            assert "configuration OK" in out.stdout
            # Flowgate alone listens on loopback: the probes and the Service need every address, on the port named http.
            port = next(p["containerPort"] for p in c["ports"] if p["name"] == "http")
            assert f"admin:     http://0.0.0.0:{port}/metrics" in out.stdout, f"{name}: {out.stdout}"
            if "authorization=Bearer stand-in" in env.values():
                assert "stand-in" not in out.stdout, "header values are redacted"


def flowgate_variables() -> dict[str, str]:
    """Flowgate's own variables, with the config key each sets, from the gateway's source (`env.rs`)."""
    text = (ROOT / "host" / "core" / "src" / "config" / "env.rs").read_text()
    found = re.findall(r"\(`([a-z_.]+)`\)\.?\n(?:///.*\n)*pub const ENV_(FLOWGATE_\w+): &str", text)
    return {var: key for key, var in found}


def test_every_flowgate_variable_is_documented_with_the_key_it_sets():
    documented = (CHART / "values.yaml").read_text()
    variables = flowgate_variables()
    assert len(variables) >= 15, variables
    for var, key in variables.items():
        assert f"`{var}` ({key})" in documented, f"values.yaml does not document {var} ({key})"


def test_flowgate_variables_in_env_reach_the_gateway():
    binary = os.environ.get("FLOWGATE_BIN")
    assert binary, "FLOWGATE_BIN: the flowgate binary (run.sh builds it)"
    values = {"env": {**yaml.safe_load((CHART / "values.yaml").read_text())["env"],
                      "FLOWGATE_TRANSFORM_WORKERS": 3, "FLOWGATE_SHUTDOWN_GRACE_MS": 20000,
                      "FLOWGATE_ROLLBACK_MAX_FAILURE_RATIO": 0.2, "FLOWGATE_ADMIN_LISTEN": "0.0.0.0:9191"}}
    docs = render(values)
    (deploy,) = of_kind(docs, "Deployment")
    (c,) = containers(deploy)
    names = [e["name"] for e in c["env"]]
    assert names.count("FLOWGATE_ADMIN_LISTEN") == 1, "a set FLOWGATE_ADMIN_LISTEN replaces the chart's"
    env = {"PATH": os.environ["PATH"]} | {e["name"]: e["value"] for e in c["env"]}
    config = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-config"))["data"]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / Path(env.pop("FLOWGATE_CONFIG")).name
        cfg.write_text(config[cfg.name])
        out = subprocess.run([binary, "check", "--config-only", "--config", str(cfg)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for expected in ["transforms: 3 workers", "over 20% failing", "shutdown:  20000 ms grace", "http://0.0.0.0:9191/metrics"]:
        assert expected in out.stdout, f"{expected!r} not in {out.stdout}"


def test_golden_renders_have_not_drifted():
    GOLDEN.mkdir(parents=True, exist_ok=True)
    update = os.environ.get("UPDATE_GOLDEN") == "1"
    for name, values in SCENARIOS.items():
        text = "".join(f"# Source: {p}\n{t.strip()}\n" for p, t in sorted(render_raw(values).items()) if t.strip())
        path = GOLDEN / f"{name}.yaml"
        if update:
            path.write_text(text)
            continue
        assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1"
        assert path.read_text() == text, f"{name}: the render differs from {path}; review and UPDATE_GOLDEN=1"


def values_table() -> str:
    """The values documentation, from the `# --` comments of values.yaml (helm-docs style)."""
    rows, comment, stack = [], [], []
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if comment and stripped.startswith("#") and not stripped.startswith("# -") and ":" not in stripped[:3]:
            if not re.match(r"#\s*-?\s*\w+:", stripped):
                comment.append(stripped[1:].strip())
                continue
        m = re.match(r"^(\s*)([A-Za-z][\w.-]*):(.*)$", line)
        if not m:
            continue
        depth = len(m.group(1)) // 2
        stack = stack[:depth] + [m.group(2)]
        if comment:
            default = m.group(3).strip() or "see values.yaml"
            rows.append(f"| `{'.'.join(stack)}` | `{default}` | {' '.join(comment)} |")
            comment = []
    return "| key | default | description |\n|---|---|---|\n" + "\n".join(rows) + "\n"


def test_the_values_documentation_is_current():
    readme = CHART / "README.md"
    begin, end = "<!-- values:begin -->\n", "<!-- values:end -->"
    text = readme.read_text()
    table = values_table()
    if os.environ.get("UPDATE_GOLDEN") == "1":
        head, rest = text.split(begin)
        readme.write_text(head + begin + table + end + rest.split(end, 1)[1])
        return
    assert begin + table + end in text, "charts/flowgate/README.md: values table out of date (UPDATE_GOLDEN=1)"


def main() -> int:
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    failed = 0
    for name, f in tests:
        try:
            f()
            print(f"ok      {name}")
        except Exception:  # noqa: BLE001 - every failure is reported, then the run fails
            failed += 1
            print(f"FAILED  {name}")
            traceback.print_exc(limit=3)
    print(f"\nchart tests: {len(tests) - failed} passed, {failed} failed ({len(SCENARIOS)} scenarios)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
