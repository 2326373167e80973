// Native tests of flowgate.js and filter.js, without a WebAssembly runtime: `node --test test/flowgate.test.js`
// in js-filter (build.sh runs them before building). The host's `batch` resource is `FakeBatch` below: its methods as
// componentize-js presents them (camelCase, kebab-case enum strings, Uint32Array / BigInt64Array columns),
// counting calls.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import './register.js';
import * as flowgate from '../flowgate.js';

const { Batch, Config, ConfigError, FIELDS, KEEP, DROP, exportTransform } = flowgate;
const { transform } = await import('../filter.js');

const camel = (kebab) => kebab.replace(/-([a-z])/g, (_, c) => c.toUpperCase());

const hit = (name = 'allow-dns', action = 'allow') => ({
  kind: 'calico-network-policy',
  namespace: 'checkout',
  name,
  tier: 'default',
  action,
  policyIndex: 0n,
  ruleIndex: 1n,
  trigger: undefined,
});

/** A flow like the Rust SDK's `sample_flow`: checkout -> payments:5432, allowed. */
const sample = (changes = {}) => ({
  sourceName: 'checkout-api-7d9f8b6c4-*',
  sourceNamespace: 'checkout',
  sourceType: 'workload-endpoint',
  destName: 'payments-db-0',
  destNamespace: 'payments',
  destType: 'workload-endpoint',
  destPort: 5432n,
  destServiceName: 'payments-db',
  destServiceNamespace: 'payments',
  destServicePortName: 'postgres',
  destServicePort: 5432n,
  proto: 'tcp',
  reporter: 'src',
  action: 'allow',
  enforcedPolicies: [hit()],
  pendingPolicies: [],
  startTime: 1764970845n,
  endTime: 1764970860n,
  sourceLabels: ['app=checkout', 'pod-template-hash=abc'],
  destLabels: ['app=payments'],
  packetsIn: 10n,
  packetsOut: 12n,
  bytesIn: 1000n,
  bytesOut: 1200n,
  numConnectionsStarted: 1n,
  numConnectionsCompleted: 1n,
  numConnectionsLive: 0n,
  ...changes,
});

const STRING_FIELDS = ['source-name', 'source-namespace', 'dest-name', 'dest-namespace', 'dest-service-name',
  'dest-service-namespace', 'dest-service-port-name', 'proto'];
const INT_FIELDS = ['dest-port', 'dest-service-port', 'start-time', 'end-time', 'packets-in', 'packets-out',
  'bytes-in', 'bytes-out', 'num-connections-started', 'num-connections-completed', 'num-connections-live'];

/** The host's `batch` resource: getters read the flows as given (a setter does not change what a getter returns,
 * as in the host); every call is counted, every setter call recorded. */
class FakeBatch {
  constructor(flows) {
    this.flows = flows.map((f) => ({ ...f }));
    this.calls = new Map();
    this.sets = [];
  }
  count(...key) {
    for (const k of new Set([key[0], key.join(' ')])) this.calls.set(k, (this.calls.get(k) ?? 0) + 1);
  }
  n(key) {
    return this.calls.get(key) ?? 0;
  }
  field(kebab, allowed) {
    assert.ok(allowed.includes(kebab), `${kebab} is a case of the selector enum`);
    return camel(kebab);
  }
  len() {
    this.count('len');
    return this.flows.length;
  }
  strings(field) {
    this.count('strings', field);
    const name = this.field(field, STRING_FIELDS);
    const values = [];
    const index = new Map();
    const at = new Uint32Array(this.flows.length);
    this.flows.forEach((f, i) => {
      const v = f[name];
      if (!index.has(v)) index.set(v, values.push(v) - 1);
      at[i] = index.get(v);
    });
    return { values, at };
  }
  ints(field) {
    this.count('ints', field);
    const name = this.field(field, INT_FIELDS);
    return BigInt64Array.from(this.flows, (f) => f[name]);
  }
  actions() {
    this.count('actions');
    return this.flows.map((f) => f.action);
  }
  reporters() {
    this.count('reporters');
    return this.flows.map((f) => f.reporter);
  }
  endpointTypes(field) {
    this.count('endpointTypes', field);
    const name = this.field(field, ['source-type', 'dest-type']);
    return this.flows.map((f) => f[name]);
  }
  labels(i, field) {
    this.count('labels', i, field);
    return [...this.flows[i][this.field(field, ['source-labels', 'dest-labels'])]];
  }
  policies(i, field) {
    this.count('policies', i, field);
    return [...this.flows[i][this.field(field, ['enforced-policies', 'pending-policies'])]];
  }
  record(i) {
    this.count('record', i);
    return { ...this.flows[i] };
  }
  set(method, ...args) {
    this.count(method);
    this.sets.push([method, ...args]);
  }
  setString(i, field, value) {
    this.field(field, STRING_FIELDS);
    assert.equal(typeof value, 'string');
    this.set('setString', i, field, value);
  }
  setInt(i, field, value) {
    this.field(field, INT_FIELDS);
    assert.equal(typeof value, 'bigint');
    this.set('setInt', i, field, value);
  }
  setAction(i, value) {
    this.set('setAction', i, value);
  }
  setReporter(i, value) {
    this.set('setReporter', i, value);
  }
  setEndpointType(i, field, value) {
    this.field(field, ['source-type', 'dest-type']);
    this.set('setEndpointType', i, field, value);
  }
  setLabels(i, field, value) {
    assert.ok(Array.isArray(value));
    this.set('setLabels', i, field, value);
  }
  setPolicies(i, field, value) {
    assert.ok(Array.isArray(value));
    this.set('setPolicies', i, field, value);
  }
}

/** `n` flows over a few namespaces, actions and ports. */
function varied(n) {
  const namespaces = ['checkout', 'payments', 'kube-system', 'kube-dns', 'monitoring'];
  const actions = ['allow', 'deny', 'pass'];
  return Array.from({ length: n }, (_, i) =>
    sample({
      sourceNamespace: namespaces[i % 5],
      destNamespace: namespaces[(i * 3 + 1) % 5],
      action: actions[i % 3],
      destPort: [443n, 5432n, 80n, 53n][i % 4],
      sourceName: `client-${i}-*`,
    }),
  );
}

describe('columns are fetched once a batch', () => {
  it('three fields read on every flow make three calls', () => {
    const fake = new FakeBatch(varied(200));
    const b = new Batch(fake);
    const seen = b.map((f) => [f.sourceNamespace, f.action, f.destPort]);
    assert.deepEqual(seen, fake.flows.map((f) => [f.sourceNamespace, f.action, f.destPort]));
    assert.deepEqual([fake.n('len'), fake.n('strings'), fake.n('actions'), fake.n('ints')], [1, 1, 1, 1]);
    const before = fake.sets.length + [...fake.calls.values()].reduce((a, b) => a + b);
    for (const f of b) void [f.sourceNamespace, f.action, f.destPort];
    assert.equal(fake.sets.length + [...fake.calls.values()].reduce((a, b) => a + b), before);
  });

  it('a new batch fetches again; a field nobody reads is never fetched', () => {
    const fake = new FakeBatch(varied(10));
    for (let r = 0; r < 3; r++) new Batch(fake).map((f) => f.destNamespace);
    assert.equal(fake.n('strings dest-namespace'), 3);
    assert.deepEqual([...fake.calls.keys()].filter((k) => !k.includes(' ')).sort(), ['len', 'strings']);
  });

  it('lists are fetched per flow, once', () => {
    const fake = new FakeBatch(varied(5));
    const b = new Batch(fake);
    for (let r = 0; r < 2; r++) {
      assert.deepEqual(b.at(2).sourceLabels, ['app=checkout', 'pod-template-hash=abc']);
      assert.deepEqual(b.at(2).enforcedPolicies, [hit()]);
    }
    assert.deepEqual([fake.n('labels'), fake.n('policies'), fake.n('labels 2 source-labels')], [1, 1, 1]);
  });

  it('every field of the record reads as given', () => {
    const flows = varied(7);
    flows[3] = sample({ sourceType: 'network', destType: 'host-endpoint', reporter: 'dst', proto: 'udp',
      pendingPolicies: [hit('staged', 'deny')], destLabels: [], bytesOut: 7n, numConnectionsLive: 3n });
    assert.deepEqual(FIELDS.map(([p]) => p), Object.keys(sample()), 'FIELDS follows the WIT record');
    assert.deepEqual(FIELDS.map(([p, w]) => [p, camel(w)]), FIELDS.map(([p]) => [p, p]));
    const b = new Batch(new FakeBatch(flows));
    b.map((f, i) => {
      for (const [prop] of FIELDS) assert.deepEqual(f[prop], flows[i][prop], prop);
    });
  });

  it('whole-column access', () => {
    const flows = varied(20);
    const fake = new FakeBatch(flows);
    const b = new Batch(fake);
    assert.equal(b.length, 20);
    const col = b.strings('sourceNamespace');
    assert.equal(col.values.length, 5, 'one value per distinct namespace');
    assert.deepEqual(Array.from(col.at, (a) => col.values[a]), flows.map((f) => f.sourceNamespace));
    assert.deepEqual([...b.column('destPort')], flows.map((f) => f.destPort));
    const asked = [];
    const kube = b.mapDistinct('destNamespace', (ns) => (asked.push(ns), ns.startsWith('kube-')));
    assert.deepEqual(kube, flows.map((f) => f.destNamespace.startsWith('kube-')));
    assert.equal(asked.length, 5, 'decided once per distinct value');
    b.map((f) => f.sourceNamespace);
    assert.equal(fake.n('strings'), 2, 'the properties share the columns fetched for the whole batch');
    assert.throws(() => b.column('sourceLabels'), TypeError);
    assert.throws(() => b.strings('destPort'), TypeError);
  });
});

describe('changes', () => {
  it('assigning calls the typed setter and later reads see it', () => {
    const fake = new FakeBatch(varied(4));
    const b = new Batch(fake);
    const f = b.at(1);
    assert.equal(f.sourceName, 'client-1-*');
    f.sourceName = 'redacted';
    f.destPort = 8443; // a Number is taken as a BigInt
    f.action = 'deny';
    f.reporter = 'dst';
    f.destType = 'network-set';
    f.destLabels = ['app=x'];
    f.enforcedPolicies = [];
    assert.deepEqual(fake.sets, [
      ['setString', 1, 'source-name', 'redacted'],
      ['setInt', 1, 'dest-port', 8443n],
      ['setAction', 1, 'deny'],
      ['setReporter', 1, 'dst'],
      ['setEndpointType', 1, 'dest-type', 'network-set'],
      ['setLabels', 1, 'dest-labels', ['app=x']],
      ['setPolicies', 1, 'enforced-policies', []],
    ]);
    for (const g of [f, b.at(1)]) {
      assert.deepEqual(
        [g.sourceName, g.destPort, g.action, g.reporter, g.destType, g.destLabels, g.enforcedPolicies],
        ['redacted', 8443n, 'deny', 'dst', 'network-set', ['app=x'], []],
      );
    }
    assert.equal(b.at(0).sourceName, 'client-0-*');
    assert.equal(b.at(2).destPort, 80n);
    assert.equal(fake.n('labels'), 0, 'an assigned list is not fetched');
  });

  it('a change before the first read survives the fetch', () => {
    const fake = new FakeBatch(varied(3));
    const b = new Batch(fake);
    b.at(0).destNamespace = 'elsewhere';
    b.at(2).bytesIn = 5n;
    assert.equal(fake.n('strings') + fake.n('ints'), 0, 'a setter does not fetch the column');
    const want = ['elsewhere', 'monitoring', 'kube-system'];
    assert.deepEqual(b.map((f) => f.destNamespace), want);
    const col = b.strings('destNamespace');
    assert.deepEqual(Array.from(col.at, (a) => col.values[a]), want);
    assert.deepEqual([...b.column('bytesIn')], [1000n, 1000n, 5n]);
    const rec = b.at(0).record();
    assert.deepEqual([rec.destNamespace, rec.sourceNamespace], ['elsewhere', 'checkout']);
    assert.equal(b.at(1).record().destNamespace, 'monitoring');
  });

  it('wrong types are refused before the host sees them', () => {
    const fake = new FakeBatch(varied(1));
    const f = new Batch(fake).at(0);
    assert.throws(() => (f.sourceName = 3), TypeError);
    assert.throws(() => (f.destPort = '443'), TypeError);
    assert.throws(() => (f.action = 'Deny'), TypeError);
    assert.deepEqual(fake.sets, []);
  });
});

describe('outcomes', () => {
  it('builders make what componentize-js lowers', () => {
    assert.deepEqual([flowgate.keep(), flowgate.drop()], [{ tag: 'keep' }, { tag: 'drop' }]);
    assert.deepEqual(
      flowgate.annotate({ attributes: { team: 'billing', n: 3, big: 2n, ok: true, r: 0.5, l: ['a', 'b'] },
        severity: 'warn', body: 'attributes' }),
      {
        tag: 'annotate',
        val: {
          attributes: [
            { key: 'team', value: { tag: 'str', val: 'billing' } },
            { key: 'n', value: { tag: 'int', val: 3n } },
            { key: 'big', value: { tag: 'int', val: 2n } },
            { key: 'ok', value: { tag: 'boolean', val: true } },
            { key: 'r', value: { tag: 'float', val: 0.5 } },
            { key: 'l', value: { tag: 'str-list', val: ['a', 'b'] } },
          ],
          severity: 'warn',
          body: { tag: 'attributes' },
        },
      },
    );
    assert.deepEqual(flowgate.annotate(),
      { tag: 'annotate', val: { attributes: [], severity: undefined, body: undefined } });
    assert.deepEqual(flowgate.annotate({ body: flowgate.text('hi') }).val.body, { tag: 'text', val: 'hi' });
    assert.deepEqual(flowgate.annotate({ body: { k: 'v' } }).val.body,
      { tag: 'structured', val: [{ key: 'k', value: { tag: 'str', val: 'v' } }] });
    assert.deepEqual(flowgate.annotate({ body: 'flow-json' }).val.body, { tag: 'flow-json' });
    assert.deepEqual(flowgate.annotate({ attributes: { x: flowgate.float(2) } }).val.attributes[0].value,
      { tag: 'float', val: 2 });
    assert.throws(() => flowgate.annotate({ body: 'free text without text()' }), TypeError);
    assert.throws(() => flowgate.annotate({ severity: 'loud' }), TypeError);
    assert.deepEqual(flowgate.error('bad'), { tag: 'error', val: 'bad' });
    const rec = sample();
    assert.deepEqual(flowgate.expand([flowgate.output(rec, { attributes: { copy: 1 } })]), {
      tag: 'expand',
      val: [{ flow: rec, annotations: { attributes: [{ key: 'copy', value: { tag: 'int', val: 1n } }],
        severity: undefined, body: undefined } }],
    });
  });
});

describe('config', () => {
  const refusal = (fn) => {
    try {
      fn();
    } catch (e) {
      return e;
    }
    assert.fail('not refused');
  };

  it('reads values and lists', () => {
    const c = new Config([['a', ' x, y ,,z'], ['n', '7'], ['a', 'last, wins'], ['team.payments', 'billing']]);
    assert.deepEqual(c.list('a'), ['last', 'wins']);
    assert.deepEqual(c.list('absent'), []);
    assert.equal(c.get('absent', 'd'), 'd');
    assert.equal(c.parse('n', Number, 0), 7);
    assert.deepEqual(c.withPrefix('team'), [['payments', 'billing']]);
    assert.deepEqual(c.keysRead(), ['a', 'absent', 'n', 'team.*']);
    c.finish();
    assert.equal(refusal(() => new Config([['n', 'x']]).parse('n', Number, 0)).message,
      'config key "n": "x" is not valid');
    assert.equal(refusal(() => new Config([]).require('key')).message, 'config key "key" is required');
  });

  it('a key nobody read is refused, in the same words as the Rust SDK', () => {
    const c = new Config([['drop_namespace', 'kube-*'], ['ports', '443']]);
    c.list('ports'), c.list('drop_namespaces'), c.list('actions');
    const e = refusal(() => c.finish());
    assert.ok(e instanceof ConfigError);
    assert.equal(e.message,
      'unknown config key "drop_namespace"; this transform reads: actions, drop_namespaces, ports');
    const d = new Config([['b', '1'], ['a', '2'], ['ports', '1']]);
    d.get('ports');
    assert.equal(refusal(() => d.finish()).message, 'unknown config keys "a", "b"; this transform reads: ports');
  });

  it('exportTransform turns refusals into the thrown string componentize-js sends as Err', () => {
    class Reads {
      constructor(config) {
        if (config.get('fail')) throw new ConfigError('fail: asked to');
      }
      process(flows) {
        return flows.map(() => KEEP);
      }
    }
    const t = exportTransform(Reads);
    t.init([['fail', '']]);
    assert.deepEqual(t.process(new FakeBatch(varied(3))), [KEEP, KEEP, KEEP]);
    assert.equal(refusal(() => t.init([['fail', 'yes']])), 'fail: asked to');
    assert.equal(refusal(() => t.init([['fial', 'yes']])), 'unknown config key "fial"; this transform reads: fail');
    assert.equal(new ConfigError('m').payload, 'm', 'thrown directly, componentize-js sends its payload');
  });
});

function runFilter(config, flows) {
  transform.init(config);
  const out = transform.process(new FakeBatch(flows));
  assert.equal(out.length, flows.length);
  return out.map((o) => o.tag === 'keep');
}

describe('the filter', () => {
  it('keeps everything with no option', () => {
    assert.deepEqual(runFilter([], varied(30)), new Array(30).fill(true));
  });

  it('each option keeps what it names and drops the rest', () => {
    assert.deepEqual(runFilter([['actions', 'Deny,Pass']],
      [sample({ action: 'deny' }), sample({ action: 'pass' }), sample()]),
      [true, true, false]);
    assert.deepEqual(runFilter([['drop_namespaces', 'kube-*,monitoring']], [sample(),
      sample({ sourceNamespace: 'kube-system' }), sample({ destNamespace: 'monitoring' }),
      sample({ destNamespace: 'monitoring-2' })]), [true, false, false, true]);
    assert.deepEqual(runFilter([['ports', '443, 5432']],
      [sample(), sample({ destPort: 443n }), sample({ destPort: 80n })]),
      [true, true, false]);
  });

  it('matches the Rust logic on varied flows', () => {
    const flows = varied(300);
    const want = flows.map((f) => f.action === 'deny' && !f.sourceNamespace.startsWith('kube-') &&
      !f.destNamespace.startsWith('kube-'));
    assert.deepEqual(runFilter([['actions', 'Deny'], ['drop_namespaces', 'kube-*']], flows), want);
    assert.ok(want.includes(true) && want.includes(false));
  });

  it('makes one call per field a batch', () => {
    const fake = new FakeBatch(varied(512));
    transform.init([['actions', 'Allow,Deny'], ['drop_namespaces', 'kube-*'], ['ports', '443,80']]);
    transform.process(fake);
    assert.deepEqual([...fake.calls.keys()].filter((k) => !k.includes(' ')).sort(),
      ['actions', 'ints', 'len', 'strings']);
    assert.deepEqual([fake.n('actions'), fake.n('strings'), fake.n('ints')], [1, 2, 1]);
  });

  it('refuses a bad config with the key named', () => {
    const cases = [
      [[['actions', 'Block']], 'actions: "Block" is not Allow, Deny or Pass'],
      [[['actions', 'toString']], 'actions: "toString" is not Allow, Deny or Pass'],
      [[['ports', '443,https']], 'ports: "https" is not a port'],
      [[['drop_namespace', 'kube-*']],
        'unknown config key "drop_namespace"; this transform reads: actions, drop_namespaces, ports'],
    ];
    for (const [config, message] of cases) {
      let thrown;
      try {
        transform.init(config);
      } catch (e) {
        thrown = e;
      }
      assert.equal(thrown, message);
    }
  });

  it('logs a line at init', () => {
    globalThis.flowgateHost = [];
    transform.init([['actions', 'Deny,Pass']]);
    assert.deepEqual(globalThis.flowgateHost, [['log', 'info', 'js filter ready: actions=Deny,Pass']]);
  });
});
