/**
 * Text for the status bar and "Show model info", from the server's bashlsp.modelInfo:
 * {loaded, problem, id, path, device, params, meta: {created, data, metrics}, store, pinned, ...}.
 * Only plain data in, plain strings out (no `vscode`), so node can run it in tests.
 */

type Info = Record<string, unknown>;

function isObject(value: unknown): value is Info {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function formatValue(value: unknown): string {
  if (typeof value === 'number' && !Number.isInteger(value)) {
    return value.toPrecision(4);
  }
  if (Array.isArray(value)) {
    return value.map(formatValue).join(', ');
  }
  if (isObject(value)) {
    return Object.entries(value)
      .map(([key, inner]) => `${key} ${formatValue(inner)}`)
      .join(', ');
  }
  return String(value);
}

export interface ModelStatus {
  /** Short text for the status bar. */
  text: string;
  /** True while the server is still loading its first model. */
  loading: boolean;
  /** Whether the server reports a problem (no model, or a rejected checkpoint). */
  problem: boolean;
}

/** The status bar's view of the model: its id and device, "loading", or a problem. */
export function modelStatus(info: unknown): ModelStatus {
  if (!isObject(info)) {
    return { text: 'bashlsp', loading: false, problem: true };
  }
  const problem = typeof info.problem === 'string' ? info.problem : '';
  if (info.loaded === false) {
    // Until its first load finishes the server says "the model is not loaded yet".
    return /not loaded yet/.test(problem) || info.loading === true
      ? { text: 'bashlsp: loading model', loading: true, problem: false }
      : { text: 'bashlsp: no model', loading: false, problem: true };
  }
  const id = typeof info.id === 'string' && info.id ? info.id : 'model';
  const device = typeof info.device === 'string' && info.device ? ` (${info.device})` : '';
  return { text: `bashlsp: ${id}${device}`, loading: false, problem: problem !== '' };
}

const SHOWN: [string, string][] = [
  ['id', 'checkpoint'],
  ['path', 'path'],
  ['device', 'device'],
  ['params', 'parameters'],
  ['meta.created', 'created'],
  ['meta.parent', 'fine-tuned from'],
  ['meta.data', 'trained on'],
  ['meta.metrics', 'metrics'],
  ['loadedAt', 'loaded at'],
  ['swaps', 'hot-swaps'],
  ['pinned', 'pinned'],
  ['store', 'store'],
  ['problem', 'problem'],
];

function lookup(info: Info, dotted: string): unknown {
  let node: unknown = info;
  for (const part of dotted.split('.')) {
    node = isObject(node) ? node[part] : undefined;
  }
  return node;
}

/** One "label: value" line for each field a person wants to see (empty ones left out). */
export function modelDetails(info: unknown): string {
  if (!isObject(info)) {
    return String(info);
  }
  const lines: string[] = [];
  for (const [key, label] of SHOWN) {
    const value = lookup(info, key);
    if (value === undefined || value === null || value === '') {
      continue;
    }
    const text = key === 'params' && typeof value === 'number' ? `${(value / 1e6).toFixed(1)} M` : formatValue(value);
    lines.push(`${label}: ${text}`);
  }
  return lines.join('\n');
}
