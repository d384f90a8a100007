#!/usr/bin/env node
/*
 * Drives the real bashlsp server over stdio with the client library the extension uses
 * (vscode-languageserver-protocol / vscode-jsonrpc), the way VS Code would: initialize with the
 * extension's settings, open a script, ask for completion, inline completion and the
 * "Generate script from comment" code action, apply it, change a setting, shut down.
 *
 * It only records what happened; tests/editors/test_editors_vscode.py judges it.
 *
 *   node test/protocol-client.js SCENARIO.json > RESULT.json
 *
 * SCENARIO: {
 *   "serverCommand": ["bashlsp", "serve", "--stdio"],
 *   "settings": {"checkpoint": "/path"},   // overrides of package.json defaults, by flat key
 *   "document": "/path/script.sh",            // completion and inline completion here
 *   "completionAt": {"line": 10, "character": 3},
 *   "inlineAt": {"line": 10, "character": 3},
 *   "generateDocument": "/path/other.sh",     // the code action here, on this line
 *   "commentLine": 1,
 *   "commandDocument": "/path/third.sh",      // the extension's command here, on commentLine
 *   "timeoutMs": 60000
 * }
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');
const { pathToFileURL } = require('url');
const {
  createProtocolConnection,
  StreamMessageReader,
  StreamMessageWriter,
  InitializeRequest,
  InitializedNotification,
  DidOpenTextDocumentNotification,
  DidChangeTextDocumentNotification,
  DidChangeConfigurationNotification,
  CompletionRequest,
  InlineCompletionRequest,
  InlineCompletionTriggerKind,
  CodeActionRequest,
  CodeActionResolveRequest,
  CodeActionTriggerKind,
  ExecuteCommandRequest,
  ApplyWorkspaceEditRequest,
  ConfigurationRequest,
  RegistrationRequest,
  UnregistrationRequest,
  WorkDoneProgressCreateRequest,
  ShowMessageRequest,
  LogMessageNotification,
  ShowMessageNotification,
  PublishDiagnosticsNotification,
  ShutdownRequest,
  ExitNotification,
} = require('vscode-languageserver-protocol/node');
const { TextDocument } = require('vscode-languageserver-textdocument');

// The extension's own settings code and manifest: the server gets what the extension would send.
const extensionRoot = path.join(__dirname, '..');
const { declaredDefaults, nestSettings, serverSettingKeys } = require(path.join(extensionRoot, 'out', 'settings.js'));
const { modelStatus } = require(path.join(extensionRoot, 'out', 'modelInfo.js'));
const packageJson = require(path.join(extensionRoot, 'package.json'));

const GENERATE_TITLE = 'Generate script from comment';

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function editsFor(workspaceEdit, uri) {
  const edits = [...((workspaceEdit.changes || {})[uri] || [])];
  for (const change of workspaceEdit.documentChanges || []) {
    if (change.textDocument && change.textDocument.uri === uri) {
      edits.push(...change.edits);
    }
  }
  return edits;
}

let server;

async function main() {
  const scenario = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const timeoutMs = scenario.timeoutMs || 60000;
  const result = { logMessages: [], shownMessages: [], appliedEdits: [], diagnostics: [], stderr: '' };

  const keys = serverSettingKeys(packageJson);
  const values = { ...declaredDefaults(packageJson), ...(scenario.settings || {}) };
  let settings = nestSettings(keys, (key) => values[key]);
  result.initializationOptions = settings;

  const [command, ...args] = scenario.serverCommand;
  server = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  server.stderr.on('data', (chunk) => (result.stderr += chunk.toString()));
  const exited = new Promise((resolve) => server.on('exit', (code, signal) => resolve({ code, signal })));

  const connection = createProtocolConnection(
    new StreamMessageReader(server.stdout),
    new StreamMessageWriter(server.stdin),
  );

  // The open documents, as the editor holds them: uri -> TextDocument.
  const documents = new Map();
  function open(file) {
    const uri = pathToFileURL(file).toString();
    documents.set(uri, TextDocument.create(uri, 'shellscript', 1, fs.readFileSync(file, 'utf8')));
    return uri;
  }
  const uri = open(scenario.document);
  const generateUri = open(scenario.generateDocument);
  const commandUri = open(scenario.commandDocument);

  // Apply an edit the way the editor would, and tell the server about the new text.
  async function applyEdit(workspaceEdit, origin) {
    for (const [docUri, document] of documents) {
      const edits = editsFor(workspaceEdit, docUri);
      if (edits.length === 0) {
        continue;
      }
      result.appliedEdits.push({ origin, uri: docUri, edits });
      const text = TextDocument.applyEdits(document, edits);
      const changed = TextDocument.create(docUri, 'shellscript', document.version + 1, text);
      documents.set(docUri, changed);
      await connection.sendNotification(DidChangeTextDocumentNotification.type, {
        textDocument: { uri: docUri, version: changed.version },
        contentChanges: [{ text }],
      });
    }
  }

  connection.onNotification(LogMessageNotification.type, (params) => result.logMessages.push(params));
  connection.onNotification(ShowMessageNotification.type, (params) => result.shownMessages.push(params));
  connection.onNotification(PublishDiagnosticsNotification.type, (params) => result.diagnostics.push(params));
  connection.onRequest(ShowMessageRequest.type, (params) => {
    result.shownMessages.push(params);
    return null;
  });
  connection.onRequest(ApplyWorkspaceEditRequest.type, async (params) => {
    await applyEdit(params.edit, 'workspace/applyEdit');
    return { applied: true };
  });
  connection.onRequest(ConfigurationRequest.type, (params) =>
    params.items.map((item) => (item.section === 'bashlsp' ? settings : null)),
  );
  connection.onRequest(RegistrationRequest.type, () => null);
  connection.onRequest(UnregistrationRequest.type, () => null);
  connection.onRequest(WorkDoneProgressCreateRequest.type, () => null);
  connection.listen();

  const request = (type, params, what) => withTimeout(connection.sendRequest(type, params), timeoutMs, what);

  // What vscode-languageclient 11 announces for the features the server offers.
  const capabilities = {
    workspace: {
      applyEdit: true,
      workspaceEdit: { documentChanges: true },
      configuration: true,
      didChangeConfiguration: { dynamicRegistration: true },
      executeCommand: { dynamicRegistration: true },
    },
    textDocument: {
      synchronization: { dynamicRegistration: true, didSave: true, willSave: true, willSaveWaitUntil: true },
      completion: {
        dynamicRegistration: true,
        contextSupport: true,
        completionItem: {
          snippetSupport: true,
          insertReplaceSupport: true,
          labelDetailsSupport: true,
          documentationFormat: ['markdown', 'plaintext'],
        },
      },
      inlineCompletion: { dynamicRegistration: true },
      codeAction: {
        dynamicRegistration: true,
        isPreferredSupport: true,
        dataSupport: true,
        resolveSupport: { properties: ['edit'] },
        codeActionLiteralSupport: {
          codeActionKind: {
            valueSet: ['', 'quickfix', 'refactor', 'refactor.extract', 'refactor.inline', 'refactor.rewrite', 'source', 'source.organizeImports'],
          },
        },
      },
      publishDiagnostics: { relatedInformation: true },
    },
    window: { workDoneProgress: true, showMessage: {} },
    general: { positionEncodings: ['utf-16'] },
  };

  const started = Date.now();
  const init = await request(
    InitializeRequest.type,
    {
      processId: process.pid,
      clientInfo: { name: 'bashlsp-protocol-test', version: packageJson.version },
      rootUri: pathToFileURL(path.dirname(scenario.document)).toString(),
      workspaceFolders: null,
      capabilities,
      initializationOptions: settings,
    },
    'initialize',
  );
  result.initializeMs = Date.now() - started;
  result.serverInfo = init.serverInfo || null;
  result.capabilities = init.capabilities;
  await connection.sendNotification(InitializedNotification.type, {});

  const sync = init.capabilities.textDocumentSync;
  result.syncKind = typeof sync === 'number' ? sync : sync && sync.change;
  for (const document of documents.values()) {
    await connection.sendNotification(DidOpenTextDocumentNotification.type, {
      textDocument: { uri: document.uri, languageId: 'shellscript', version: document.version, text: document.getText() },
    });
  }

  // The server loads its model in the background after `initialize`; the extension's status bar
  // polls bashlsp.modelInfo until it is loaded, and so do we (requests before that get nothing).
  const modelInfo = () => request(ExecuteCommandRequest.type, { command: 'bashlsp.modelInfo', arguments: [] }, 'bashlsp.modelInfo');
  result.modelInfoAtStart = await modelInfo();
  const deadline = Date.now() + timeoutMs;
  result.modelInfo = result.modelInfoAtStart;
  while (result.modelInfo && result.modelInfo.loaded === false && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    result.modelInfo = await modelInfo();
  }
  result.loadMs = Date.now() - started;
  result.statusBar = { atStart: modelStatus(result.modelInfoAtStart), loaded: modelStatus(result.modelInfo) };

  result.completion = await request(
    CompletionRequest.type,
    { textDocument: { uri }, position: scenario.completionAt, context: { triggerKind: 1 } },
    'completion',
  );

  const inlineParams = {
    textDocument: { uri },
    position: scenario.inlineAt,
    context: { triggerKind: InlineCompletionTriggerKind.Invoked, selectedCompletionInfo: null },
  };
  result.inlineCompletion = await request(InlineCompletionRequest.type, inlineParams, 'inline completion');

  // The code action on the comment line; apply it as VS Code does: resolve if needed, edit, command.
  const before = documents.get(generateUri);
  const commentEnd = before.getText().split('\n')[scenario.commentLine].length;
  const commentPosition = { line: scenario.commentLine, character: commentEnd };
  const actions = await request(
    CodeActionRequest.type,
    {
      textDocument: { uri: generateUri },
      range: { start: commentPosition, end: commentPosition },
      context: { diagnostics: [], triggerKind: CodeActionTriggerKind.Invoked },
    },
    'code action',
  );
  result.codeActions = actions;
  result.textBefore = before.getText();
  let action = (actions || []).find((candidate) => candidate.title === GENERATE_TITLE);
  if (action) {
    const provider = init.capabilities.codeActionProvider;
    if (!action.edit && !action.command && provider && provider.resolveProvider) {
      action = await request(CodeActionResolveRequest.type, action, 'code action resolve');
      result.resolvedAction = action;
    }
    if (action.edit) {
      await applyEdit(action.edit, 'codeAction.edit');
    }
    if (action.command) {
      result.commandResult = await request(
        ExecuteCommandRequest.type,
        { command: action.command.command, arguments: action.command.arguments },
        action.command.command,
      );
    }
  }
  result.textAfter = documents.get(generateUri).getText();

  // The extension's "Generate script from comment" command: the cursor's selection goes to the
  // server, which inserts the script itself with workspace/applyEdit.
  const commandPosition = { line: scenario.commentLine, character: 0 };
  result.commandTextBefore = documents.get(commandUri).getText();
  result.generateCommandResult = await request(
    ExecuteCommandRequest.type,
    { command: 'bashlsp.generateFromComment', arguments: [{ uri: commandUri, range: { start: commandPosition, end: commandPosition } }] },
    'bashlsp.generateFromComment',
  );
  result.commandTextAfter = documents.get(commandUri).getText();

  // A settings change, sent as the extension sends it: ghost text off, then ask again.
  values['inlineCompletion.enable'] = false;
  settings = nestSettings(keys, (key) => values[key]);
  await connection.sendNotification(DidChangeConfigurationNotification.type, { settings: { bashlsp: settings } });
  result.inlineAfterDisable = await request(InlineCompletionRequest.type, inlineParams, 'inline completion after disabling it');

  await request(ShutdownRequest.type, undefined, 'shutdown');
  await connection.sendNotification(ExitNotification.type);
  result.exit = await withTimeout(exited, timeoutMs, 'the server to exit');
  connection.dispose();
  process.stdout.write(JSON.stringify(result));
}

main().catch((error) => {
  process.stderr.write(`protocol-client: ${error.stack || error}\n`);
  if (server && server.exitCode === null) {
    server.kill();
  }
  process.exit(1);
});
