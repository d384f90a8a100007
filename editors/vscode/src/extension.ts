/**
 * bashlsp for VS Code: starts `bashlsp serve --stdio` for shell scripts and wires the server's
 * completion, inline completion (ghost text) and "Generate script from comment" into the editor.
 *
 * Completion and inline completion need no code here: vscode-languageclient 11 registers both
 * features (inline completion is stable in LSP 3.18). This file adds the settings plumbing,
 * the three commands and the status bar item.
 */

import * as os from 'os';
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
} from 'vscode-languageclient/node';
import { modelDetails, modelStatus } from './modelInfo';
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

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  settingKeys = serverSettingKeys(context.extension.packageJSON);
  output = vscode.window.createOutputChannel('bashlsp', { log: true });
  statusItem = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  statusItem.command = 'bashlsp.showModelInfo';
  context.subscriptions.push(
    output,
    statusItem,
    vscode.commands.registerCommand('bashlsp.generateScript', generateScript),
    vscode.commands.registerCommand('bashlsp.reload', reloadModel),
    vscode.commands.registerCommand('bashlsp.showModelInfo', showModelInfo),
    vscode.workspace.onDidChangeConfiguration(onConfigurationChanged),
    // The trainer may have published a new model since we last looked.
    vscode.window.onDidChangeWindowState((state) => state.focused && void refreshStatus()),
  );
  await startClient();
}

export async function deactivate(): Promise<void> {
  clearTimeout(statusTimer);
  await stopClient();
}

/** The server settings as the server wants them (nested), from the user's VS Code settings. */
function currentServerSettings(): Record<string, unknown> {
  const config = vscode.workspace.getConfiguration('bashlsp');
  return nestSettings(settingKeys, (key) => config.get(key));
}

function serverCommand(): string {
  const configured = vscode.workspace.getConfiguration('bashlsp').get<string>('path') || 'bashlsp';
  return configured.startsWith('~/') ? os.homedir() + configured.slice(1) : configured;
}

async function startClient(): Promise<void> {
  const command = serverCommand();
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
  statusItem.text = '$(loading~spin) bashlsp';
  statusItem.tooltip = 'bashlsp: starting the language server';
  statusItem.show();
  try {
    await client.start();
  } catch (error) {
    client = undefined;
    statusItem.text = '$(error) bashlsp';
    statusItem.tooltip = `bashlsp could not start: ${errorText(error)}`;
    const choice = await vscode.window.showErrorMessage(
      `bashlsp: could not start "${command} serve --stdio" (${errorText(error)}). ` +
        'Install it with `pip install bashlsp` or set "bashlsp.path".',
      'Open settings',
    );
    if (choice) {
      await vscode.commands.executeCommand('workbench.action.openSettings', 'bashlsp.path');
    }
    return;
  }
  await refreshStatus();
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
  if (event.affectsConfiguration('bashlsp.path') || !client) {
    await stopClient();
    await startClient();
    return;
  }
  await client.sendNotification(DidChangeConfigurationNotification.type, {
    settings: { bashlsp: currentServerSettings() },
  });
  await refreshStatus();
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
    const icon = status.loading ? '$(loading~spin)' : status.problem ? '$(warning)' : '$(hubot)';
    statusItem.text = `${icon} ${status.text}`;
    statusItem.tooltip = `${modelDetails(info)}\n\nClick for details`;
    if (status.loading) {
      // The server loads its model in the background after it starts: look again shortly.
      statusTimer = setTimeout(() => void refreshStatus(), 1000);
    }
  } catch (error) {
    statusItem.text = '$(warning) bashlsp';
    statusItem.tooltip = `bashlsp: no model info (${errorText(error)})`;
  }
  statusItem.show();
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
