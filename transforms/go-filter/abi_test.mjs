// The Go filter's core module (before it becomes a component) driven through the canonical ABI by a fake host
// in Node: WASI preview1 from node:wasi, and flowgate:transform@0.2.0 implemented here the way wasmtime lowers
// it (results placed in guest memory through the guest's cabi_realloc, re-entering Go in the middle of an
// import). It also plays the WASI adapter's part that matters for memory: on the first WASI call it takes two
// 64 KiB blocks through cabi_realloc and fills them with a pattern, which must survive every batch.
//
// Usage: node abi_test.mjs core.wasm   (build.sh runs it when node is installed)
import { readFileSync } from "node:fs";
import { WASI } from "node:wasi";
import assert from "node:assert/strict";

const [, , wasmPath] = process.argv;
const module = await WebAssembly.compile(readFileSync(wasmPath));
const enc = new TextEncoder();
const dec = new TextDecoder();

function instantiate() {
  const wasi = new WASI({ version: "preview1", returnOnExit: true });
  let exports;
  const adapterBlocks = [];
  // The adapter's state and stack: allocated on its first use, which comes while the Go runtime starts.
  const wasiImports = {};
  for (const [name, f] of Object.entries(wasi.wasiImport)) {
    wasiImports[name] = (...args) => {
      if (adapterBlocks.length === 0 && exports) {
        for (let k = 0; k < 2; k++) {
          const p = exports.cabi_realloc(0, 0, 8, 65536);
          assert.equal(p % 8, 0);
          new Uint8Array(exports.memory.buffer, p, 65536).fill(0xa5 + k);
          adapterBlocks.push(p);
        }
      }
      return f(...args);
    };
  }

  const state = { batch: null, handle: 0, dropped: 0, calls: {}, logs: [] };
  const mem = () => exports.memory.buffer;
  const dv = () => new DataView(mem());
  const realloc = (align, size) => {
    const p = exports.cabi_realloc(0, 0, align, size);
    assert.equal(p % align, 0, `cabi_realloc returned ${p}, not aligned to ${align}`);
    return p;
  };
  const lowerString = (s) => {
    const bytes = enc.encode(s);
    const p = realloc(1, bytes.length);
    new Uint8Array(mem(), p, bytes.length).set(bytes);
    return [p, bytes.length];
  };
  const lowerStrings = (list) => {
    const p = realloc(4, 8 * list.length);
    list.forEach((s, i) => {
      const [sp, sn] = lowerString(s);
      dv().setUint32(p + 8 * i, sp, true);
      dv().setUint32(p + 8 * i + 4, sn, true);
    });
    return [p, list.length];
  };
  const liftString = (p, n) => dec.decode(new Uint8Array(mem(), p, n));
  const batch = (self) => {
    assert.equal(self, state.handle, "handle");
    assert.equal(state.dropped, 0, "the batch is used after its borrow was dropped");
    return state.batch;
  };
  const count = (name) => (state.calls[name] = (state.calls[name] ?? 0) + 1);
  const stringFields = ["sourceName", "sourceNamespace", "destName", "destNamespace", "destServiceName",
    "destServiceNamespace", "destServicePortName", "proto"];
  const intFields = ["destPort", "destServicePort", "startTime", "endTime", "packetsIn", "packetsOut", "bytesIn",
    "bytesOut", "numConnectionsStarted", "numConnectionsCompleted", "numConnectionsLive"];

  const types = {
    "[method]batch.len": (self) => (count("len"), batch(self).length),
    "[method]batch.strings": (self, field, ret) => {
      count("strings:" + field);
      const flows = batch(self);
      const distinct = [], index = new Map(), at = [];
      for (const f of flows) {
        const v = f[stringFields[field]];
        if (!index.has(v)) index.set(v, distinct.push(v) - 1);
        at.push(index.get(v));
      }
      const [vp, vn] = lowerStrings(distinct);
      const ap = realloc(4, 4 * at.length);
      at.forEach((k, i) => dv().setUint32(ap + 4 * i, k, true));
      for (const [off, v] of [[0, vp], [4, vn], [8, ap], [12, at.length]]) dv().setUint32(ret + off, v, true);
    },
    "[method]batch.ints": (self, field, ret) => {
      count("ints:" + field);
      const flows = batch(self);
      const p = realloc(8, 8 * flows.length);
      flows.forEach((f, i) => dv().setBigInt64(p + 8 * i, BigInt(f[intFields[field]]), true));
      dv().setUint32(ret, p, true);
      dv().setUint32(ret + 4, flows.length, true);
    },
    "[method]batch.actions": (self, ret) => {
      count("actions");
      const flows = batch(self);
      const p = realloc(1, flows.length);
      flows.forEach((f, i) => dv().setUint8(p + i, f.action));
      dv().setUint32(ret, p, true);
      dv().setUint32(ret + 4, flows.length, true);
    },
    "[method]batch.labels": (self, flow, field, ret) => {
      count("labels");
      const f = batch(self)[flow];
      const [p, n] = lowerStrings(field === 0 ? f.sourceLabels : f.destLabels);
      dv().setUint32(ret, p, true);
      dv().setUint32(ret + 4, n, true);
    },
    "[method]batch.set-string": (self, flow, field, p, n) => {
      count("set-string");
      batch(self)[flow]["changed_" + stringFields[field]] = liftString(p, n);
    },
    "[resource-drop]batch": (self) => {
      assert.equal(self, state.handle);
      state.dropped++;
    },
  };
  const host = {
    log: (level, p, n) => state.logs.push([level, liftString(p, n)]),
    "counter-add": () => {},
  };
  // Whatever else the module imports from the contract is not used by the filter: trap if called.
  const imports = { wasi_snapshot_preview1: wasiImports, "flowgate:transform/types@0.2.0": {}, "flowgate:transform/host@0.2.0": {} };
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module === "flowgate:transform/types@0.2.0") {
      imports[imp.module][imp.name] = types[imp.name] ?? (() => { throw new Error(`unexpected ${imp.name}`); });
    } else if (imp.module === "flowgate:transform/host@0.2.0") {
      imports[imp.module][imp.name] = host[imp.name];
    }
  }
  const instance = new WebAssembly.Instance(module, imports);
  exports = instance.exports;
  wasi.initialize(instance);
  assert.equal(adapterBlocks.length, 2, "the Go runtime used WASI while starting");

  return {
    exports, state, adapterBlocks,
    init(pairs) {
      // The host places the config through cabi_realloc, between calls.
      const p = realloc(4, 16 * pairs.length);
      pairs.forEach(([k, v], i) => {
        const [kp, kn] = lowerString(k), [vp, vn] = lowerString(v);
        for (const [off, x] of [[0, kp], [4, kn], [8, vp], [12, vn]]) dv().setUint32(p + 16 * i + off, x, true);
      });
      const ret = exports["flowgate:transform/transform@0.2.0#init"](p, pairs.length);
      const isErr = dv().getUint8(ret);
      const err = isErr ? liftString(dv().getUint32(ret + 4, true), dv().getUint32(ret + 8, true)) : null;
      exports["cabi_post_flowgate:transform/transform@0.2.0#init"](ret);
      return err;
    },
    process(flows) {
      state.batch = flows;
      state.handle = 1 + Math.floor(Math.random() * 1000);
      state.dropped = 0;
      const ret = exports["flowgate:transform/transform@0.2.0#process"](state.handle);
      assert.equal(state.dropped, 1, "the borrowed batch is dropped once, before process returns");
      const p = dv().getUint32(ret, true), n = dv().getUint32(ret + 4, true);
      assert.equal(n, flows.length, "one outcome per flow");
      const tags = [];
      for (let i = 0; i < n; i++) tags.push(dv().getUint8(p + 32 * i));
      exports["cabi_post_flowgate:transform/transform@0.2.0#process"](ret);
      return tags;
    },
    canariesIntact() {
      return adapterBlocks.every((p, k) => new Uint8Array(mem(), p, 65536).every((b) => b === 0xa5 + k));
    },
  };
}

// Config errors: each from a fresh instance, as the host does.
for (const [pairs, want] of [
  [[["actions", "Deny"], ["drop_namespace", "kube-*"]],
    'unknown config key "drop_namespace"; this transform reads: actions, drop_namespaces, ports'],
  [[["actions", "Block"]], 'actions: "Block" is not Allow, Deny or Pass'],
  [[["ports", "https"]], "ports: not a list of port numbers"],
]) {
  assert.equal(instantiate().init(pairs), want);
}

// The agreement test's configuration, batch after batch on one instance.
const g = instantiate();
assert.equal(g.init([["actions", "Deny"], ["drop_namespaces", "kube-*"]]), null);
assert.deepEqual(g.state.logs, [[1, "go filter ready"]]);
const namespaces = ["checkout", "payments", "kube-system", "kube-dns", "monitoring", "kube", "team-kube-x"];
let seed = 21;
const rand = (n) => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
const flow = (i, long) => ({
  sourceName: `client-${i % 17}-*`,
  sourceNamespace: long ? `${namespaces[rand(namespaces.length)]}-${i}-`.padEnd(400, "x") : namespaces[rand(namespaces.length)],
  destName: "db-*", destNamespace: namespaces[rand(namespaces.length)], destServiceName: "", destServiceNamespace: "",
  destServicePortName: "", proto: "tcp", destPort: [443, 5432, 80][rand(3)], destServicePort: 0,
  startTime: 1764970845, endTime: 1764970860, packetsIn: i, packetsOut: 0, bytesIn: 0, bytesOut: 0,
  numConnectionsStarted: 0, numConnectionsCompleted: 0, numConnectionsLive: 0,
  action: 1 + rand(3), sourceLabels: [], destLabels: [],
});
const expected = (f) => f.action === 2 && !/^kube-/.test(f.sourceNamespace) && !/^kube-/.test(f.destNamespace);
let kept = 0, total = 0;
const sizes = [0, 1, 7, 512, 400, 3000, 20000, 512];
for (let round = 0; round < 60; round++) {
  const n = sizes[round % sizes.length];
  const long = n === 3000; // names that overflow the estimate: cabi_realloc's Go-heap fallback
  const flows = Array.from({ length: n }, (_, i) => flow(i, long));
  g.state.calls = {};
  const tags = g.process(flows);
  tags.forEach((t, i) => {
    assert.equal(t, expected(flows[i]) ? 0 : 1, `round ${round} flow ${i}`);
    kept += t === 0;
  });
  total += n;
  if (n > 0) {
    // Only what it needs, once (actions not at all when the namespaces dropped every flow).
    const { actions = 0, ...rest } = g.state.calls;
    assert.ok(actions <= 1, "actions fetched more than once");
    assert.deepEqual(rest, { len: 1, "strings:1": 1, "strings:3": 1 }, "only what it needs, once");
  }
}
assert.ok(g.canariesIntact(), "the adapter's blocks were overwritten");
console.log(`go-filter ABI test: ${total} flows in 60 batches through the canonical ABI, ${kept} kept; adapter blocks intact`);
