/**
 * The settings contract with the server (server/settings.py).
 *
 * package.json declares every server setting as `bashlsp.<flat key>` with the server's default;
 * the server wants them nested (`{"completion": {"enable": true}}`). This module turns one into
 * the other. It does not import `vscode`, so the protocol test runs it under plain node and the
 * server sees exactly what the extension would send.
 */

const PREFIX = 'bashlsp.';

/** Settings only the extension reads (how to start or install the server, tracing); never sent to it. */
export const CLIENT_ONLY_SETTINGS: ReadonlySet<string> = new Set(['path', 'trace.server', 'install.requirement', 'install.python']);

interface PackageJson {
  contributes?: { configuration?: { properties?: Record<string, { default?: unknown }> } };
}

/** The flat keys (without "bashlsp.") of the server settings that package.json declares. */
export function serverSettingKeys(packageJson: PackageJson): string[] {
  const properties = packageJson.contributes?.configuration?.properties ?? {};
  return Object.keys(properties)
    .filter((name) => name.startsWith(PREFIX))
    .map((name) => name.slice(PREFIX.length))
    .filter((key) => !CLIENT_ONLY_SETTINGS.has(key));
}

/** The defaults package.json declares for the server settings, by flat key. */
export function declaredDefaults(packageJson: PackageJson): Record<string, unknown> {
  const properties = packageJson.contributes?.configuration?.properties ?? {};
  const defaults: Record<string, unknown> = {};
  for (const key of serverSettingKeys(packageJson)) {
    defaults[key] = properties[PREFIX + key].default;
  }
  return defaults;
}

/**
 * The object the server expects, from flat keys and a lookup (VS Code's
 * `workspace.getConfiguration('bashlsp').get`). Keys whose value is undefined are left out,
 * so the server applies its own default.
 */
export function nestSettings(keys: readonly string[], get: (key: string) => unknown): Record<string, unknown> {
  const nested: Record<string, unknown> = {};
  for (const key of keys) {
    const value = get(key);
    if (value === undefined) {
      continue;
    }
    const parts = key.split('.');
    let node = nested;
    for (const part of parts.slice(0, -1)) {
      node = (node[part] ??= {}) as Record<string, unknown>;
    }
    node[parts[parts.length - 1]] = value;
  }
  return nested;
}
