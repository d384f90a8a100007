/**
 * bashlsp for VS Code: starts `bashlsp serve --stdio` for shell scripts and wires the server's
 * completion, inline completion (ghost text) and "Generate script from comment" into the editor.
 *
 * Completion and inline completion need no code here: vscode-languageclient 11 registers both
 * features (inline completion is stable in LSP 3.18). This file adds the settings plumbing,
 * the commands, finding (or installing) the server, and the status bar item.
 */

import * as path from 'path';
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
} from 'vscode-languageclient/node';
import { modelDetails, modelStatus } from './modelInfo';
import { DEFAULT_COMMAND, findServer, installServer } from './server';
import { nestSettings, serverSettingKeys } from './settings';

// Commands the server implements (workspace/executeCommand).
const SERVER_GENERATE = 'bashlsp.generateFromComment';
const SERVER_RELOAD = 'bashlsp.reloadModel';
const SERVER_MODEL_INFO = 'bashlsp.modelInfo';

let client: LanguageClient | undefined;
let statusItem: vscode.StatusBarItem;
let output: vscode.LogOutputChannel;
let settingKeys: string[] = [];
let statusTimer: NodeJS.Timeout | undefined;
let privateVenv = '';

// Starts, stops and restarts run one at a time, in order. Without this a settings change that
// arrived while the first start was still spawning (VS Code can deliver the user's settings to
// the extension host after activation) stopped a half-started client, which threw, so the
// restart with the new bashlsp.path never ran and the first start failed: `spawn bashlsp ENOENT`.
let lifecycle: Promise<void> = Promise.resolve();

function serially(operation: () => Promise<void>): Promise<void> {
  lifecycle = lifecycle.then(operation).catch((error) => output.error(`bashlsp: ${errorText(error)}`));
  return lifecycle;
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  settingKeys = serverSettingKeys(context.extension.packageJSON);
  privateVenv = path.join(context.globalStorageUri.fsPath, 'venv');
  output = vscode.window.createOutputChannel('bashlsp', { log: true });
  statusItem = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  statusItem.command = 'bashlsp.showModelInfo';
  context.subscriptions.push(
    output,
    statusItem,
    vscode.commands.registerCommand('bashlsp.generateScript', generateScript),
    vscode.commands.registerCommand('bashlsp.reload', reloadModel),
    vscode.commands.registerCommand('bashlsp.showModelInfo', showModelInfo),
    vscode.commands.registerCommand('bashlsp.installServer', installInPrivateVenv),
    vscode.workspace.onDidChangeConfiguration(onConfigurationChanged),
    // The trainer may have published a new model since we last looked.
    vscode.window.onDidChangeWindowState((state) => state.focused && void refreshStatus()),
  );
  await serially(startClient);
}

export async function deactivate(): Promise<void> {
  clearTimeout(statusTimer);
  await serially(stopClient);
}

/** The server settings as the server wants them (nested), from the user's VS Code settings. */
function currentServerSettings(): Record<string, unknown> {
  const config = vscode.workspace.getConfiguration('bashlsp');
  return nestSettings(settingKeys, (key) => config.get(key));
}

type State = 'starting' | 'loading' | 'ready' | 'warning' | 'error';
const ICONS: Record<State, string> = {
  starting: '$(loading~spin)',
  loading: '$(loading~spin)',
  ready: '$(hubot)',
  warning: '$(warning)',
  error: '$(error)',
};

/** The status bar: starting / loading model / the model in use / an error, with details on hover. */
function setStatus(state: State, text: string, tooltip: string): void {
  statusItem.text = `${ICONS[state]} ${text}`;
  statusItem.tooltip = tooltip;
  statusItem.show();
}

async function startClient(): Promise<void> {
  const pathSetting = vscode.workspace.getConfiguration('bashlsp').inspect<string>('path');
  const configured = vscode.workspace.getConfiguration('bashlsp').get<string>('path');
  const found = findServer(configured, process.env.PATH, privateVenv);
  output.info(
    `bashlsp.path: ${JSON.stringify(configured)} (user ${JSON.stringify(pathSetting?.globalValue)}, ` +
      `workspace ${JSON.stringify(pathSetting?.workspaceValue)}); server: ${found ? `${found.command} (${found.source})` : 'none'}`,
  );
  if (!found) {
    const custom = configured && configured.trim() !== DEFAULT_COMMAND;
    const problem = custom
      ? `"${configured}" (the bashlsp.path setting) is not an executable`
      : 'no "bashlsp" command on PATH';
    setStatus('error', 'bashlsp: no server', `bashlsp: ${problem}`);
    void offerInstall(problem);
    return;
  }
  const command = found.command;
  const serverOptions: ServerOptions = { command, args: ['serve', '--stdio'] };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [
      { scheme: 'file', language: 'shellscript' },
      { scheme: 'untitled', language: 'shellscript' },
    ],
    initializationOptions: currentServerSettings(),
    outputChannel: output,
    middleware: {
      workspace: {
        // A server that pulls its settings gets the same object, without the client-only keys.
        configuration: (params) =>
          params.items.map((item) => (item.section === 'bashlsp' ? currentServerSettings() : undefined)),
      },
    },
  };
  client = new LanguageClient('bashlsp', 'bashlsp', serverOptions, clientOptions);
  setStatus('starting', 'bashlsp: starting', `bashlsp: starting ${command} serve --stdio`);
  try {
    await client.start();
  } catch (error) {
    client = undefined;
    const problem = `could not start "${command} serve --stdio" (${errorText(error)})`;
    setStatus('error', 'bashlsp: error', `bashlsp ${problem}`);
    void offerInstall(problem);
    return;
  }
  await refreshStatus();
}

/** Say what is wrong, with a button that installs the server (or opens the setting). Not awaited
 * by the caller: a notification left open must not hold up later starts. */
async function offerInstall(problem: string): Promise<void> {
  const install = 'Install bashlsp';
  const settings = 'Open settings';
  const choice = await vscode.window.showErrorMessage(
    `bashlsp: ${problem}. Install the server into a private environment of this extension, ` +
      'or set "bashlsp.path" to your bashlsp command (e.g. ~/.venv/bin/bashlsp).',
    install,
    settings,
  );
  if (choice === install) {
    await installInPrivateVenv();
  } else if (choice === settings) {
    await vscode.commands.executeCommand('workbench.action.openSettings', 'bashlsp.path');
  }
}

/** python3 -m venv + pip install into the extension's storage, then start the server from there. */
async function installInPrivateVenv(): Promise<void> {
  const config = vscode.workspace.getConfiguration('bashlsp');
  const python = config.get<string>('install.python') || 'python3';
  const requirement = config.get<string>('install.requirement') || 'bashlsp';
  output.show(true);
  try {
    await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `bashlsp: installing ${requirement}` },
      () => installServer(python, privateVenv, requirement, (line) => output.info(line)),
    );
  } catch (error) {
    setStatus('error', 'bashlsp: install failed', `bashlsp: ${errorText(error)}`);
    void vscode.window.showErrorMessage(`bashlsp: ${errorText(error)}`);
    return;
  }
  output.info(`installed ${requirement} into ${privateVenv}`);
  await serially(async () => {
    await stopClient();
    await startClient();
  });
}

async function stopClient(): Promise<void> {
  const running = client;
  client = undefined;
  if (running) {
    await running.stop();
  }
}

async function onConfigurationChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
  if (!event.affectsConfiguration('bashlsp')) {
    return;
  }
  await serially(async () => {
    if (event.affectsConfiguration('bashlsp.path') || !client) {
      await stopClient();
      await startClient();
      return;
    }
    await client.sendNotification(DidChangeConfigurationNotification.type, {
      settings: { bashlsp: currentServerSettings() },
    });
    await refreshStatus();
  });
}

async function executeServerCommand(command: string, args: unknown[] = []): Promise<unknown> {
  if (!client) {
    throw new Error('the bashlsp server is not running');
  }
  return client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
}

/** Show the model in use in the status bar (the server's bashlsp.modelInfo). */
async function refreshStatus(): Promise<void> {
  clearTimeout(statusTimer);
  if (!client) {
    return;
  }
  try {
    const info = await executeServerCommand(SERVER_MODEL_INFO);
    const status = modelStatus(info);
    const state = status.loading ? 'loading' : status.problem ? 'warning' : 'ready';
    setStatus(state, status.text, `${modelDetails(info)}\n\nClick for details`);
    if (status.loading) {
      // The server loads its model in the background after it starts: look again shortly.
      statusTimer = setTimeout(() => void refreshStatus(), 1000);
    }
  } catch (error) {
    setStatus('warning', 'bashlsp', `bashlsp: no model info (${errorText(error)})`);
  }
}

async function generateScript(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor || editor.document.languageId !== 'shellscript') {
    void vscode.window.showInformationMessage('bashlsp: open a shell script and put the cursor on a comment line.');
    return;
  }
  // The server generates, checks (bash -n, shellcheck) and inserts the script below the comment
  // block itself, with workspace/applyEdit; when nothing passes it says why (window/showMessage).
  const selection = editor.selection;
  const target = {
    uri: editor.document.uri.toString(),
    range: {
      start: { line: selection.start.line, character: selection.start.character },
      end: { line: selection.end.line, character: selection.end.character },
    },
  };
  try {
    await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: 'bashlsp: generating script' },
      () => executeServerCommand(SERVER_GENERATE, [target]),
    );
  } catch (error) {
    void vscode.window.showErrorMessage(`bashlsp: ${errorText(error)}`);
  }
}

async function reloadModel(): Promise<void> {
  try {
    await executeServerCommand(SERVER_RELOAD);
  } catch (error) {
    void vscode.window.showErrorMessage(`bashlsp: reload failed: ${errorText(error)}`);
  }
  await refreshStatus();
}

async function showModelInfo(): Promise<void> {
  try {
    const info = await executeServerCommand(SERVER_MODEL_INFO);
    output.info(`model info:\n${modelDetails(info)}`);
    const choice = await vscode.window.showInformationMessage(
      modelStatus(info).text,
      { modal: false, detail: modelDetails(info) },
      'Show details',
    );
    if (choice) {
      output.show(true);
    }
  } catch (error) {
    void vscode.window.showErrorMessage(`bashlsp: ${errorText(error)}`);
  }
  await refreshStatus();
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
