/** Text for the status bar and the "Show model info" message, from the server's bashlsp.modelInfo. */

type Info = Record<string, unknown>;

function isObject(value: unknown): value is Info {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A short name for the model in use: its store id, else the checkpoint directory's name. */
export function modelLabel(info: unknown): string {
  if (!isObject(info)) {
    return 'bashlsp';
  }
  for (const key of ['id', 'name', 'checkpoint']) {
    const value = info[key];
    if (typeof value === 'string' && value) {
      return value;
    }
  }
  if (typeof info.path === 'string' && info.path) {
    return info.path.split(/[\\/]/).filter(Boolean).pop() ?? info.path;
  }
  return 'bashlsp';
}

/** Every field, one `key: value` line each; nested objects as dotted keys. */
export function modelDetails(info: unknown, prefix = ''): string {
  if (!isObject(info)) {
    return String(info);
  }
  const lines: string[] = [];
  for (const [key, value] of Object.entries(info)) {
    if (isObject(value)) {
      lines.push(modelDetails(value, `${prefix}${key}.`));
    } else {
      lines.push(`${prefix}${key}: ${Array.isArray(value) ? value.join(', ') : String(value)}`);
    }
  }
  return lines.filter(Boolean).join('\n');
}
