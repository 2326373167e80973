// `filter`, in JavaScript (componentize-js): the same behaviour as transforms/filter (Rust).
//
// Config: `actions` (keep only these: Allow,Deny,Pass), `drop_namespaces` (globs against source and destination
// namespace), `ports` (keep only these destination ports). WIT enums arrive as kebab-case strings, s64 as BigInt,
// variants as `{ tag }` objects; `init` refuses a configuration by throwing.
import { log } from 'flowgate:transform/host@0.1.0';

const ACTIONS = { Allow: 'allow', Deny: 'deny', Pass: 'pass' };
let settings = { actions: [], dropNamespaces: [], ports: [] };

const list = (config, key) => (config.get(key) ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');

// Globs with `*` and `?`, anchored: compiled once to a RegExp.
const glob = (pattern) =>
  new RegExp('^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$');

function keep(f) {
  if (settings.actions.length > 0 && !settings.actions.includes(f.action)) return false;
  if (settings.dropNamespaces.some((g) => g.test(f.sourceNamespace) || g.test(f.destNamespace))) return false;
  if (settings.ports.length > 0 && !settings.ports.includes(f.destPort)) return false;
  return true;
}

export const transform = {
  init(pairs) {
    const config = new Map(pairs);
    const actions = list(config, 'actions').map((a) => {
      if (!(a in ACTIONS)) throw `actions: ${JSON.stringify(a)} is not Allow, Deny or Pass`;
      return ACTIONS[a];
    });
    const ports = list(config, 'ports').map((p) => {
      if (!/^\d+$/.test(p)) throw `ports: ${JSON.stringify(p)} is not a port`;
      return BigInt(p);
    });
    settings = { actions, dropNamespaces: list(config, 'drop_namespaces').map(glob), ports };
    log('info', `js filter ready: actions=${list(config, 'actions')}`);
  },

  process(batch) {
    return batch.map((f) => (keep(f) ? { tag: 'keep' } : { tag: 'drop' }));
  },
};
