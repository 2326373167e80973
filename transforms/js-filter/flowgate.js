// Flowgate's JavaScript helper for `flowgate:transform@0.2.0`: flows with getters and setters, a config that
// refuses typos, outcome builders. Ship it next to your transform; componentize-js follows relative imports.
//
//   import { Config, ConfigError, KEEP, DROP, exportTransform } from './flowgate.js';
//
//   class Filter {
//     constructor(config) { this.namespaces = config.list('namespaces'); }   // `init`; throw ConfigError to refuse
//     process(flows) { return flows.map((f) => (this.namespaces.includes(f.sourceNamespace) ? DROP : KEEP)); }
//   }
//   export const transform = exportTransform(Filter);
//
// Cost model. The host keeps the batch; `process` gets a `batch` resource. Reading `f.sourceNamespace` on any
// flow fetches that field for every flow of the batch in one call (a column, cached for the rest of the call), so
// a transform pays one call per field it reads, not per flow, and one string per distinct value. Labels and
// policies are fetched per flow on first read. Assigning `f.sourceName = 'x'` is one setter call, and later
// reads of that flow in the same call see it. `flows.column(field)`, `flows.strings(field)` and
// `flows.mapDistinct(field, fn)` are the whole-batch fast path: decide once per distinct value.
//
// Types as componentize-js maps them: enums are kebab-case strings (`'deny'`), s64 is a BigInt (`443n`), records
// are objects with camelCase fields, `option` is a value or `undefined`, variants are `{ tag, val }`.

// Every field of the WIT `flow` record, in order: [property, WIT name, kind]. Kinds: 'str' (string column), 'int'
// (s64 column), 'action', 'reporter', 'endpoint' (enum columns), 'labels', 'policies' (per-flow lists).
export const FIELDS = [
  ['sourceName', 'source-name', 'str'],
  ['sourceNamespace', 'source-namespace', 'str'],
  ['sourceType', 'source-type', 'endpoint'],
  ['destName', 'dest-name', 'str'],
  ['destNamespace', 'dest-namespace', 'str'],
  ['destType', 'dest-type', 'endpoint'],
  ['destPort', 'dest-port', 'int'],
  ['destServiceName', 'dest-service-name', 'str'],
  ['destServiceNamespace', 'dest-service-namespace', 'str'],
  ['destServicePortName', 'dest-service-port-name', 'str'],
  ['destServicePort', 'dest-service-port', 'int'],
  ['proto', 'proto', 'str'],
  ['reporter', 'reporter', 'reporter'],
  ['action', 'action', 'action'],
  ['enforcedPolicies', 'enforced-policies', 'policies'],
  ['pendingPolicies', 'pending-policies', 'policies'],
  ['startTime', 'start-time', 'int'],
  ['endTime', 'end-time', 'int'],
  ['sourceLabels', 'source-labels', 'labels'],
  ['destLabels', 'dest-labels', 'labels'],
  ['packetsIn', 'packets-in', 'int'],
  ['packetsOut', 'packets-out', 'int'],
  ['bytesIn', 'bytes-in', 'int'],
  ['bytesOut', 'bytes-out', 'int'],
  ['numConnectionsStarted', 'num-connections-started', 'int'],
  ['numConnectionsCompleted', 'num-connections-completed', 'int'],
  ['numConnectionsLive', 'num-connections-live', 'int'],
];

// The WIT enums' cases, for the setters' checks.
export const ACTION = ['unspecified', 'allow', 'deny', 'pass', 'unknown'];
export const REPORTER = ['unspecified', 'src', 'dst', 'unknown'];
export const ENDPOINT_TYPE = ['unspecified', 'workload-endpoint', 'host-endpoint', 'network-set', 'network', 'unknown'];
export const SEVERITY = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
const ENUMS = { action: ACTION, reporter: REPORTER, endpoint: ENDPOINT_TYPE };

const KIND = new Map(); // property -> kind
const WIT = new Map(); // property -> WIT field name (the selector the resource's methods take)
const COL = new Map(); // column property -> slot
const LST = new Map(); // list property -> slot
for (const [prop, wit, kind] of FIELDS) {
  KIND.set(prop, kind);
  WIT.set(prop, wit);
  if (kind === 'labels' || kind === 'policies') LST.set(prop, LST.size);
  else COL.set(prop, COL.size);
}

function fetchColumn(r, prop) {
  switch (KIND.get(prop)) {
    case 'int':
      return r.ints(WIT.get(prop));
    case 'action':
      return r.actions();
    case 'reporter':
      return r.reporters();
    default:
      return r.endpointTypes(WIT.get(prop));
  }
}

function send(r, i, prop, value) {
  const kind = KIND.get(prop);
  const wit = WIT.get(prop);
  switch (kind) {
    case 'str':
      if (typeof value !== 'string') throw new TypeError(`${prop} is a string, not ${typeof value}`);
      r.setString(i, wit, value);
      return value;
    case 'int':
      if (typeof value === 'number' && Number.isInteger(value)) value = BigInt(value);
      if (typeof value !== 'bigint') throw new TypeError(`${prop} is an integer (BigInt), not ${typeof value}`);
      r.setInt(i, wit, value);
      return value;
    case 'action':
    case 'reporter':
    case 'endpoint':
      if (!ENUMS[kind].includes(value)) {
        throw new TypeError(`${prop}: ${JSON.stringify(value)} is not one of ${ENUMS[kind].join(', ')}`);
      }
      if (kind === 'action') r.setAction(i, value);
      else if (kind === 'reporter') r.setReporter(i, value);
      else r.setEndpointType(i, wit, value);
      return value;
    case 'labels':
      value = Array.from(value);
      r.setLabels(i, wit, value);
      return value;
    default:
      value = Array.from(value);
      r.setPolicies(i, wit, value);
      return value;
  }
}

/** The flows of one `process` call: iterable (`for (const f of flows)`), `flows.map(fn)`, `flows.length`,
 * `flows.at(i)`, and whole columns. Valid only during the call (the host's resource is). */
export class Batch {
  constructor(resource) {
    this.resource = resource;
    this.length = resource.len();
    this._c = new Array(COL.size).fill(undefined); // per-flow values per column, once fetched (own changes in)
    this._raw = new Array(COL.size).fill(undefined); // string columns as they came ({ values, at })
    this._l = new Array(LST.size).fill(undefined); // per list field: Map(flow -> list)
    this._w = undefined; // changes: Map(property -> Map(flow -> value))
  }

  *[Symbol.iterator]() {
    for (let i = 0; i < this.length; i++) yield new Flow(this, i);
  }

  /** `fn(flow, i)` for every flow, as an array (the outcomes, usually). */
  map(fn) {
    const out = new Array(this.length);
    for (let i = 0; i < this.length; i++) out[i] = fn(new Flow(this, i), i);
    return out;
  }

  at(i) {
    if (i < 0) i += this.length;
    if (!(i >= 0 && i < this.length)) throw new RangeError(`flow ${i} of a batch of ${this.length}`);
    return new Flow(this, i);
  }

  _rawStrings(k, prop) {
    let raw = this._raw[k];
    if (raw === undefined) raw = this._raw[k] = this.resource.strings(WIT.get(prop));
    return raw;
  }

  _load(k, prop) {
    let values;
    if (KIND.get(prop) === 'str') {
      const raw = this._rawStrings(k, prop);
      const v = raw.values;
      const at = raw.at;
      values = new Array(at.length);
      for (let i = 0; i < at.length; i++) values[i] = v[at[i]];
    } else {
      values = fetchColumn(this.resource, prop);
    }
    const changed = this._w?.get(prop);
    if (changed) for (const [i, v] of changed) values[i] = v;
    this._c[k] = values;
    return values;
  }

  /** Every flow's value of a scalar field (string, number or enum) in flow order: an Array (strings, enums) or
   * a BigInt64Array (numbers). The helper's cache: read it, do not change it (assign `flow.<field>` instead). */
  column(field) {
    const k = COL.get(field);
    if (k === undefined) throw new TypeError(`${field} is not a column field (labels and policies are read per flow)`);
    return this._c[k] ?? this._load(k, field);
  }

  /** A string field as `{ values, at }`: the distinct values, and per flow the index of its value
   * (`values[at[i]]`). Decide once per distinct value, then look the answer up per flow. */
  strings(field) {
    if (KIND.get(field) !== 'str') throw new TypeError(`${field} is not a string field`);
    const raw = this._rawStrings(COL.get(field), field);
    const changed = this._w?.get(field);
    if (!changed) return raw;
    const values = Array.from(raw.values);
    const at = Uint32Array.from(raw.at);
    for (const [i, v] of changed) {
      at[i] = values.length;
      values.push(v);
    }
    return { values, at };
  }

  /** `fn(value)` of every flow's string field, as an array, calling `fn` once per distinct value. */
  mapDistinct(field, fn) {
    const { values, at } = this.strings(field);
    const answers = values.map((v) => fn(v));
    const out = new Array(at.length);
    for (let i = 0; i < at.length; i++) out[i] = answers[at[i]];
    return out;
  }

  _set(i, prop, value) {
    value = send(this.resource, i, prop, value);
    this._w ??= new Map();
    let changed = this._w.get(prop);
    if (!changed) this._w.set(prop, (changed = new Map()));
    changed.set(i, value);
    const k = COL.get(prop);
    if (k !== undefined) {
      if (this._c[k] !== undefined) this._c[k][i] = value;
    } else {
      (this._l[LST.get(prop)] ??= new Map()).set(i, value);
    }
  }

  _list(i, prop) {
    const cache = (this._l[LST.get(prop)] ??= new Map());
    let v = cache.get(i);
    if (v === undefined) {
      const wit = WIT.get(prop);
      v = KIND.get(prop) === 'labels' ? this.resource.labels(i, wit) : this.resource.policies(i, wit);
      cache.set(i, v);
    }
    return v;
  }

  _record(i) {
    const rec = this.resource.record(i);
    if (this._w) for (const [prop, changed] of this._w) if (changed.has(i)) rec[prop] = changed.get(i);
    return rec;
  }
}

/** One flow of a batch. Every field of the WIT `flow` record is a camelCase property (`f.sourceNamespace`,
 * `f.destPort` (BigInt), `f.action` ('deny'), `f.sourceLabels`, ...); assigning one changes the flow (a setter
 * call). Lists (labels, policies) are the helper's cache: to change one, assign a new array. */
export class Flow {
  constructor(batch, index) {
    this.batch = batch;
    this.index = index;
  }

  /** The whole flow as the WIT record (one call), with this call's changes: for transforms that read nearly
   * everything, and for `output(...)` in an expansion. */
  record() {
    return this.batch._record(this.index);
  }
}

for (const [prop, k] of COL) {
  Object.defineProperty(Flow.prototype, prop, {
    get() {
      const b = this.batch;
      return (b._c[k] ?? b._load(k, prop))[this.index];
    },
    set(value) {
      this.batch._set(this.index, prop, value);
    },
  });
}
for (const prop of LST.keys()) {
  Object.defineProperty(Flow.prototype, prop, {
    get() {
      return this.batch._list(this.index, prop);
    },
    set(value) {
      this.batch._set(this.index, prop, value);
    },
  });
}

// --- config -------------------------------------------------------------------------------------------------------

/** Thrown from a transform's constructor (or by `Config`): refuses the configuration with its message. Its
 * `payload` is what componentize-js sends as the `Err` of `init` when it is thrown there directly. */
export class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ConfigError';
    this.payload = message;
  }
}

const quote = (s) => JSON.stringify(s);

/** The transform's configuration (`list<tuple<string, string>>`; a later pair wins). Every key read is noted;
 * `finish()` (called by `exportTransform` after the constructor) refuses keys nobody read. */
export class Config {
  constructor(pairs) {
    this._map = new Map(pairs);
    this._read = new Set();
    this._prefixes = new Set();
  }

  /** The value of `key`, or `fallback`. */
  get(key, fallback = undefined) {
    this._read.add(key);
    return this._map.has(key) ? this._map.get(key) : fallback;
  }

  has(key) {
    this._read.add(key);
    return this._map.has(key);
  }

  /** The value of `key`; refused when absent. */
  require(key) {
    this._read.add(key);
    if (!this._map.has(key)) throw new ConfigError(`config key ${quote(key)} is required`);
    return this._map.get(key);
  }

  /** A comma-separated list: items trimmed, empty items dropped; `[]` when absent. */
  list(key) {
    return (this.get(key) ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  }

  /** `convert(value)` (it may throw), `fallback` when absent; refused when `convert` throws or gives NaN. */
  parse(key, convert, fallback) {
    const value = this.get(key);
    if (value === undefined) return fallback;
    let out;
    try {
      out = convert(value.trim());
    } catch {
      out = NaN;
    }
    if (Number.isNaN(out)) throw new ConfigError(`config key ${quote(key)}: ${quote(value)} is not valid`);
    return out;
  }

  /** Every `prefix.<rest>` key as [rest, value]: maps written flat, e.g. `team.payments: billing`. */
  withPrefix(prefix) {
    this._prefixes.add(prefix);
    const start = prefix + '.';
    return [...this._map].filter(([k]) => k.startsWith(start)).map(([k, v]) => [k.slice(start.length), v]);
  }

  /** The keys read so far (and `prefix.*` for prefixes), sorted. */
  keysRead() {
    return [...new Set([...this._read, ...[...this._prefixes].map((p) => p + '.*')])].sort(byCodePoint);
  }

  /** The keys given that nothing read, sorted. */
  unknown() {
    const starts = [...this._prefixes].map((p) => p + '.');
    return [...this._map.keys()]
      .filter((k) => !this._read.has(k) && !starts.some((s) => k.startsWith(s)))
      .sort(byCodePoint);
  }

  /** Refuses the configuration when it has a key the transform never read. */
  finish() {
    const unknown = this.unknown();
    if (unknown.length === 0) return;
    const noun = unknown.length === 1 ? 'key' : 'keys';
    throw new ConfigError(
      `unknown config ${noun} ${unknown.map(quote).join(', ')}; this transform ${
        this.keysRead().length ? `reads: ${this.keysRead().join(', ')}` : 'reads no keys'
      }`,
    );
  }
}

// Sorted as Rust and Python sort strings (by code point), not by UTF-16 unit.
function byCodePoint(a, b) {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

// --- the export ---------------------------------------------------------------------------------------------------

/** The object componentize-js exports (`export const transform = exportTransform(MyTransform)`).
 *
 * `init` builds `new Factory(config)`, then refuses keys it never read; a `ConfigError` (or a thrown string)
 * reaches the host as `Err(message)`. `process` wraps the batch resource in a `Batch` and returns
 * `instance.process(batch)`. */
export function exportTransform(Factory) {
  let instance;
  return {
    init(pairs) {
      const config = new Config(pairs);
      try {
        const t = new Factory(config);
        config.finish();
        instance = t;
      } catch (e) {
        if (e instanceof ConfigError) throw e.message;
        throw e;
      }
    },
    process(batch) {
      return instance.process(new Batch(batch));
    },
  };
}

// --- outcomes -----------------------------------------------------------------------------------------------------

/** Pass the flow on (with the changes made to it): nothing crosses back. */
export const KEEP = Object.freeze({ tag: 'keep' });
/** Do not export the flow. */
export const DROP = Object.freeze({ tag: 'drop' });
export const keep = () => KEEP;
export const drop = () => DROP;
/** This flow could not be processed: the failure policy decides. */
export const error = (message) => ({ tag: 'error', val: String(message) });

/** A float attribute value, for a number that happens to be whole (`float(2)`). */
export const float = (x) => ({ tag: 'float', val: Number(x) });

const VALUE_TAGS = new Set(['str', 'int', 'float', 'boolean', 'str-list']);

function value(v) {
  switch (typeof v) {
    case 'string':
      return { tag: 'str', val: v };
    case 'bigint':
      return { tag: 'int', val: v };
    case 'number':
      return Number.isInteger(v) ? { tag: 'int', val: BigInt(v) } : { tag: 'float', val: v };
    case 'boolean':
      return { tag: 'boolean', val: v };
    default:
      if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return { tag: 'str-list', val: v };
      if (v && VALUE_TAGS.has(v.tag)) return v;
      throw new TypeError(`an attribute value is a string, number, BigInt, boolean or array of strings, not ${v}`);
  }
}

/** OTLP attributes from an object (or a Map, or [key, value] pairs). */
export function attributes(attrs) {
  if (!attrs) return [];
  const entries = attrs instanceof Map || Array.isArray(attrs) ? [...attrs] : Object.entries(attrs);
  return entries.map(([key, v]) => ({ key: String(key), value: value(v) }));
}

/** A free-text body. */
export const text = (s) => ({ tag: 'text', val: String(s) });
/** A structured (OTLP kvlist) body from an object. */
export const structured = (attrs) => ({ tag: 'structured', val: attributes(attrs) });

const BODY_TAGS = new Set(['flow-json', 'structured', 'attributes', 'text']);

function body(b) {
  if (b === undefined || b === null) return undefined;
  if (b === 'flow-json' || b === 'attributes') return { tag: b };
  if (typeof b === 'object' && BODY_TAGS.has(b.tag)) return b;
  if (typeof b === 'object' && !Array.isArray(b)) return structured(b);
  throw new TypeError(`body is 'flow-json', 'attributes', an object, text(...) or structured(...), not ${b}`);
}

/** The WIT `annotations`: attributes as an object, severity as 'warn', body as 'flow-json', 'attributes', an
 * object (structured), `text('...')` or `structured({...})`. */
export function annotations({ attributes: attrs, severity, body: b } = {}) {
  if (severity !== undefined && severity !== null && !SEVERITY.includes(severity)) {
    throw new TypeError(`severity: ${JSON.stringify(severity)} is not one of ${SEVERITY.join(', ')}`);
  }
  return { attributes: attributes(attrs), severity: severity ?? undefined, body: body(b) };
}

/** Pass the flow on (with its changes) and shape its record; see `annotations`. */
export const annotate = (a = {}) => ({ tag: 'annotate', val: annotations(a) });

/** One record of an expansion: a whole flow record (e.g. `f.record()`, changed) and its annotations. */
export const output = (flow, a = {}) => ({ flow, annotations: annotations(a) });

/** Several records from one flow (`[output(...), ...]`; an empty array drops it). */
export const expand = (outputs) => ({ tag: 'expand', val: Array.from(outputs) });
