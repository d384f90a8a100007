/**
 * Finding the `bashlsp` command, and installing it into a private venv when there is none.
 * No `vscode` here: plain node runs it in tests.
 */

import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export const DEFAULT_COMMAND = 'bashlsp';

export interface FoundServer {
  command: string;
  /** Where it came from, for the log: the setting, PATH, or the extension's own venv. */
  source: 'setting' | 'PATH' | 'private venv';
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

export function expandHome(command: string): string {
  return command === '~' || command.startsWith('~/') ? os.homedir() + command.slice(1) : command;
}

/** The first executable `name` on a PATH string, or undefined. */
export function onPath(name: string, pathVariable: string | undefined): string | undefined {
  for (const dir of (pathVariable ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, name))) {
      return path.join(dir, name);
    }
  }
  return undefined;
}

/** The server binary inside the private venv the Install button makes. */
export function privateServer(venv: string): string {
  return path.join(venv, 'bin', DEFAULT_COMMAND);
}

/**
 * The command to start: the `bashlsp.path` setting when the user set one (a full path must exist;
 * a bare name must be on PATH), else `bashlsp` on PATH, else the private venv's. Undefined when
 * none is there, so the caller can say so instead of failing with `spawn bashlsp ENOENT`.
 */
export function findServer(configured: string | undefined, pathVariable: string | undefined, venv: string): FoundServer | undefined {
  const setting = expandHome((configured ?? '').trim());
  if (setting && setting !== DEFAULT_COMMAND) {
    const command = setting.includes('/') ? (isExecutable(setting) ? setting : undefined) : onPath(setting, pathVariable);
    return command ? { command, source: 'setting' } : undefined;
  }
  const command = onPath(DEFAULT_COMMAND, pathVariable);
  if (command) {
    return { command, source: 'PATH' };
  }
  return isExecutable(privateServer(venv)) ? { command: privateServer(venv), source: 'private venv' } : undefined;
}

/** Run a command, passing its output lines to `log`; resolves with its exit code. */
function run(command: string, args: string[], log: (line: string) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const forward = (data: Buffer) => data.toString().split('\n').filter(Boolean).forEach(log);
    child.stdout.on('data', forward);
    child.stderr.on('data', forward);
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? 1));
  });
}

/**
 * Make `venv` with `python -m venv` and pip-install `requirement` (a name or a wheel file) into it.
 * Resolves with the server command, or rejects with what failed.
 */
export async function installServer(python: string, venv: string, requirement: string, log: (line: string) => void): Promise<string> {
  log(`creating ${venv} with ${python} -m venv`);
  if ((await run(python, ['-m', 'venv', venv], log)) !== 0) {
    throw new Error(`"${python} -m venv ${venv}" failed (see the bashlsp output)`);
  }
  const pip = path.join(venv, 'bin', 'python');
  log(`installing ${requirement}`);
  if ((await run(pip, ['-m', 'pip', 'install', '--disable-pip-version-check', requirement], log)) !== 0) {
    throw new Error(`"pip install ${requirement}" failed (see the bashlsp output)`);
  }
  if (!isExecutable(privateServer(venv))) {
    throw new Error(`${requirement} installed no ${privateServer(venv)}`);
  }
  return privateServer(venv);
}
