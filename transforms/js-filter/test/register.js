// Lets node import what componentize-js provides inside the component: `flowgate:transform/host@0.2.0` becomes a
// stand-in whose `log` and `counterAdd` record into `globalThis.flowgateHost` (imported before filter.js).
import { register } from 'node:module';

const host = `
const record = (entry) => (globalThis.flowgateHost ??= []).push(entry);
export const log = (level, message) => record(['log', level, message]);
export const counterAdd = (name, delta) => record(['counter', name, delta]);
`;
const hooks = `
export async function resolve(specifier, context, next) {
  if (specifier.startsWith('flowgate:transform/host@')) {
    return { url: 'data:text/javascript,' + encodeURIComponent(${JSON.stringify(host)}), shortCircuit: true };
  }
  return next(specifier, context);
}
`;
register('data:text/javascript,' + encodeURIComponent(hooks));
