// `filter`, in JavaScript (componentize-js): the same behaviour as transforms/filter (Rust), written with the
// `flowgate.js` helper.
//
// Config: `actions` (keep only these: Allow,Deny,Pass), `drop_namespaces` (globs against source and destination
// namespace), `ports` (keep only these destination ports). Any other key is refused (a typo fails loudly).
import { log } from 'flowgate:transform/host@0.2.0';
import { ConfigError, DROP, KEEP, exportTransform } from './flowgate.js';

const ACTIONS = { Allow: 'allow', Deny: 'deny', Pass: 'pass' };

// Globs with `*` and `?`, anchored: compiled once to a RegExp.
const glob = (pattern) =>
  new RegExp('^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$');

class Filter {
  constructor(config) {
    const names = config.list('actions');
    this.actions = names.map((a) => {
      if (!Object.hasOwn(ACTIONS, a)) throw new ConfigError(`actions: ${JSON.stringify(a)} is not Allow, Deny or Pass`);
      return ACTIONS[a];
    });
    this.ports = config.list('ports').map((p) => {
      if (!/^\d+$/.test(p)) throw new ConfigError(`ports: ${JSON.stringify(p)} is not a port`);
      return BigInt(p);
    });
    this.globs = config.list('drop_namespaces').map(glob);
    // Whether a namespace is kept, per distinct value: a cache that may outlive a batch (the answer depends on the
    // config only), which the instance-reuse contract allows.
    this.decided = new Map();
    log('info', `js filter ready: actions=${names}`);
  }

  kept(namespace) {
    if (this.decided.size > 4096) this.decided.clear(); // bounded: namespaces are few, but they are the host's input
    let k = this.decided.get(namespace);
    if (k === undefined) this.decided.set(namespace, (k = !this.globs.some((g) => g.test(namespace))));
    return k;
  }

  // Whole columns: one call per field for the batch, each distinct namespace decided once. The same logic per flow
  // (`flows.map((f) => ... f.action, f.sourceNamespace, f.destPort ...)`) reads as well and costs more.
  process(flows) {
    let keep = new Array(flows.length).fill(true);
    if (this.actions.length > 0) keep = Array.from(flows.column('action'), (a) => this.actions.includes(a));
    if (this.globs.length > 0) {
      const src = flows.mapDistinct('sourceNamespace', (ns) => this.kept(ns));
      const dst = flows.mapDistinct('destNamespace', (ns) => this.kept(ns));
      keep = keep.map((k, i) => k && src[i] && dst[i]);
    }
    if (this.ports.length > 0) {
      const ports = flows.column('destPort');
      keep = keep.map((k, i) => k && this.ports.includes(ports[i]));
    }
    return keep.map((k) => (k ? KEEP : DROP));
  }
}

export const transform = exportTransform(Filter);
