// Drives VS Code itself (code-server in headless Chromium, through playwright-core) with the
// packaged extension installed, as a user would. Run by tests/editors/test_editors_vscode_real.py:
//
//   node test/code-server.js SCENARIO.json
//
// SCENARIO: {playwright (the playwright-core folder), chromium, url, typedFile, typedLine,
// commentedFile, settingsFile, newCheckpoint, screenshots, timeoutMs}. Prints one JSON object
// (what it saw); pytest judges it. Every wait is for something on the page, never a fixed sleep.

'use strict';

const fs = require('fs');
const path = require('path');

const scenario = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { chromium } = require(scenario.playwright);
const timeout = scenario.timeoutMs;
const seen = { steps: [], screenshots: [] };

function step(name) {
  seen.steps.push(name);
  process.stderr.write(`code-server test: ${name}\n`);
}

async function shot(page, name) {
  const file = path.join(scenario.screenshots, `${String(seen.screenshots.length + 1).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  seen.screenshots.push(file);
}

async function statusText(page) {
  const item = page.locator('.statusbar-item', { hasText: 'bashlsp' }).first();
  return (await item.count()) ? (await item.innerText()).trim() : '';
}

async function waitForStatus(page, wanted) {
  await page.waitForFunction(
    (text) => [...document.querySelectorAll('.statusbar-item')].some((el) => el.innerText.includes(text)),
    wanted,
    { timeout },
  );
  return statusText(page);
}

async function runCommand(page, title) {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout });
  await input.fill(`>${title}`);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor({ timeout });
  await page.keyboard.press('Enter');
}

async function openFile(page, file) {
  await page.keyboard.press('Control+P');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout });
  await input.fill(path.basename(file));
  await page.locator('.quick-input-list .monaco-list-row', { hasText: path.basename(file) }).first().waitFor({ timeout });
  await page.keyboard.press('Enter');
  await page.locator(`.tab[aria-label*="${path.basename(file)}"]`).first().waitFor({ timeout });
  await page.locator('.monaco-editor .view-lines').first().click();
}

async function goToLineEnd(page, line) {
  await page.keyboard.press('Control+G');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout });
  await input.fill(`:${line}`);
  await page.keyboard.press('Enter');
  await page.keyboard.press('End');
}

async function ghostText(page) {
  const ghost = page.locator('.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text').first();
  await ghost.waitFor({ state: 'visible', timeout });
  const parts = await page.locator('.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text').allInnerTexts();
  return parts.join('').replace(/\u00a0/g, ' '); // the editor renders spaces as no-break spaces
}

// No server anywhere: the status bar says so, the notification's Install button makes the private
// venv from scenario.requirement (bashlsp.install.requirement), and the server starts from there.
async function installFlow(page) {
  step('open a script with no server installed: the extension says so');
  await openFile(page, scenario.typedFile);
  seen.status = await waitForStatus(page, 'bashlsp: no server');
  const install = page.locator('.notification-list-item .monaco-button', { hasText: 'Install bashlsp' }).first();
  await install.waitFor({ state: 'visible', timeout });
  seen.notifications = await page.locator('.notification-list-item-message').allInnerTexts();
  await shot(page, 'no-server');
  step('Install bashlsp: python -m venv + pip install, then the server starts with the bundled model');
  await install.click();
  await page.waitForFunction(
    () => [...document.querySelectorAll('.statusbar-item')].some((el) => /bashlsp: .+ \(cpu\)/.test(el.innerText)),
    null,
    { timeout: scenario.installTimeoutMs },
  );
  seen.statusAfterInstall = await statusText(page);
  await shot(page, 'installed');
  step('ghost text from the installed server');
  await page.locator('.monaco-editor .view-lines').first().click();
  await goToLineEnd(page, scenario.typedLine);
  await page.keyboard.press('Alt+Backslash');
  seen.ghostText = await ghostText(page);
  await shot(page, 'installed-ghost-text');
}

async function main() {
  const browser = await chromium.launch({
    executablePath: scenario.chromium,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('console', (message) => {
      if (message.type() === 'error') {
        (seen.consoleErrors ??= []).push(message.text().slice(0, 300));
      }
    });
    step('open the workbench');
    await page.goto(scenario.url, { timeout });
    await page.locator('.monaco-workbench').waitFor({ timeout });

    if (scenario.mode === 'install') {
      return await installFlow(page);
    }
    step('open the typed script; the extension activates and the status bar shows the model');
    await openFile(page, scenario.typedFile);
    seen.statusAtStart = await statusText(page);
    seen.status = await waitForStatus(page, `bashlsp: ${scenario.checkpointId} (cpu)`);
    await shot(page, 'status-bar');

    step('ghost text after "ech" (Trigger Inline Suggestion, bound in keybindings.json)');
    await goToLineEnd(page, scenario.typedLine);
    await page.keyboard.press('Alt+Backslash');
    seen.ghostText = await ghostText(page);
    await shot(page, 'ghost-text');
    await page.keyboard.press('Escape');

    step('the suggest widget lists the model line');
    await page.keyboard.press('Control+Space');
    const rows = page.locator('.suggest-widget.visible .monaco-list-row');
    await rows.first().waitFor({ state: 'visible', timeout });
    await page.locator('.suggest-widget.visible .monaco-list-row', { hasText: 'echo' }).first().waitFor({ timeout });
    seen.suggestions = await rows.allInnerTexts();
    await shot(page, 'suggest-widget');
    await page.keyboard.press('Escape');

    step('change a setting (another checkpoint), run Reload model, the status bar shows it');
    const settings = JSON.parse(fs.readFileSync(scenario.settingsFile, 'utf8'));
    settings['bashlsp.checkpoint'] = scenario.newCheckpoint;
    fs.writeFileSync(scenario.settingsFile, JSON.stringify(settings, null, 2));
    await runCommand(page, 'bashlsp: Reload model');
    seen.statusAfterReload = await waitForStatus(page, `bashlsp: ${path.basename(scenario.newCheckpoint)} (cpu)`);
    await shot(page, 'reloaded');

    step('Generate script from comment from the lightbulb');
    await openFile(page, scenario.commentedFile);
    await goToLineEnd(page, 2);
    const bulb = page.locator('.lightBulbWidget, [class*="codicon-light-bulb"], [class*="codicon-lightbulb"]').first();
    await bulb.waitFor({ state: 'visible', timeout });
    await shot(page, 'lightbulb');
    await bulb.click();
    const action = page.locator('.action-widget .monaco-list-row', { hasText: 'Generate script from comment' }).first();
    await action.waitFor({ state: 'visible', timeout });
    seen.actions = await page.locator('.action-widget .monaco-list-row').allInnerTexts();
    await shot(page, 'code-actions');
    await action.click();
    // The edit lands below the comment (the editor then has more lines than the two it had), or
    // the server says why it inserted nothing (a notification).
    await page.waitForFunction(
      () =>
        document.querySelectorAll('.editor-group-container.active .monaco-editor .view-line').length > 3 ||
        [...document.querySelectorAll('.notification-list-item-message')].some((el) =>
          el.innerText.includes('Generate script from comment'),
        ),
      null,
      { timeout },
    );
    const refusal = page.locator('.notification-list-item-message', { hasText: 'Generate script from comment' });
    if (await refusal.count()) {
      throw new Error(`nothing was inserted; VS Code showed: ${await refusal.first().innerText()}`);
    }
    await shot(page, 'generated');
    // Save from the editor (focus may sit in another part, such as the chat view), then wait
    // until the script is on disk: a tab that never looked dirty must not pass for a save.
    await page.locator('.editor-group-container.active .monaco-editor .view-lines').first().click();
    await runCommand(page, 'File: Save');
    const deadline = Date.now() + timeout;
    while (fs.readFileSync(scenario.commentedFile, 'utf8').trim().split('\n').length <= 2) {
      if (Date.now() > deadline) throw new Error('the generated script was inserted but never saved to disk');
      await page.waitForTimeout(100);
    }
    seen.generatedSaved = true;
  } catch (error) {
    seen.error = String(error && error.stack ? error.stack : error);
    const pages = browser.contexts().flatMap((context) => context.pages());
    if (pages.length) {
      await shot(pages[0], 'failure').catch(() => {});
      // What VS Code told the user (the server's window/showMessage lands here).
      seen.notifications = await pages[0].locator('.notification-list-item-message').allInnerTexts().catch(() => []);
    }
  } finally {
    await browser.close();
  }
}

main().then(() => process.stdout.write(JSON.stringify(seen)));
