-- End-to-end test of the plugin with Neovim's own LSP client, run headless by
-- tests/editors/test_editors_neovim.py:
--
--   nvim --headless -u NONE -i NONE -n -c 'luafile editors/neovim/test/headless.lua'
--
-- Environment: BASHLSP_TEST_CMD (JSON list: the server command), BASHLSP_TEST_SETTINGS (JSON
-- object: server settings), BASHLSP_TEST_TYPED (a script ending in "ech": completion there),
-- BASHLSP_TEST_COMMENTED (a script whose line 2 is a comment: the code action there),
-- BASHLSP_TEST_RESULT (where the JSON record of what happened goes; pytest judges it).
-- Waits are vim.wait() on a condition, never fixed sleeps.

local result = { notifications = {}, shown_messages = {}, version = vim.version() }
local plugin_root = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h:h')

local function wait(what, ms, condition)
  if not vim.wait(ms, condition, 20) then
    error(string.format('timed out after %d ms waiting for %s', ms, what))
  end
end

local function lines(bufnr)
  return vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
end

local function main()
  vim.opt.runtimepath:prepend(plugin_root)
  vim.cmd('filetype on')
  vim.notify = function(message, level)
    table.insert(result.notifications, { message = message, level = level })
  end
  local default_show_message = vim.lsp.handlers['window/showMessage']
  vim.lsp.handlers['window/showMessage'] = function(err, message, ctx, config)
    table.insert(result.shown_messages, message)
    return default_show_message(err, message, ctx, config)
  end

  local bashlsp = require('bashlsp')
  bashlsp.setup({
    cmd = vim.fn.json_decode(vim.env.BASHLSP_TEST_CMD),
    settings = vim.fn.json_decode(vim.env.BASHLSP_TEST_SETTINGS),
  })
  result.start_api = vim.lsp.start and 'vim.lsp.start' or 'vim.lsp.start_client'
  result.commands = {
    generate = vim.fn.exists(':BashlspGenerate') == 2,
    reload = vim.fn.exists(':BashlspReload') == 2,
    model_info = vim.fn.exists(':BashlspModelInfo') == 2,
  }

  -- A real .sh file: filetype detection starts the server through the plugin's FileType autocmd.
  vim.cmd('edit ' .. vim.fn.fnameescape(vim.env.BASHLSP_TEST_TYPED))
  local typed = vim.api.nvim_get_current_buf()
  result.filetype = vim.bo[typed].filetype
  wait('the server to initialize', 120000, function()
    local client = bashlsp.client(typed)
    return client ~= nil and client.initialized == true
  end)
  local client = bashlsp.client(typed)
  result.server_capabilities = client.server_capabilities
  result.omnifunc = vim.bo[typed].omnifunc

  -- The plugin follows bashlsp.modelInfo while the server loads its model (its statusline).
  result.status_at_start = bashlsp.status(typed)
  wait('the model to load', 120000, function()
    local info = bashlsp.model_info(typed)
    return info ~= nil and info.loaded == true
  end)
  result.status = bashlsp.status(typed)

  -- Completion at "ech|" on the last line, through Neovim's client.
  local last = vim.api.nvim_buf_line_count(typed)
  local params = {
    textDocument = vim.lsp.util.make_text_document_params(typed),
    position = { line = last - 1, character = #lines(typed)[last] },
  }
  result.completion_position = params.position
  local responses = vim.lsp.buf_request_sync(typed, 'textDocument/completion', params, 60000) or {}
  local response = responses[client.id] or {}
  result.completion_error = response.error or response.err
  result.completion = response.result

  -- The code action on a comment line, through the plugin's mapping (<leader>bg, leader "\").
  vim.cmd('edit ' .. vim.fn.fnameescape(vim.env.BASHLSP_TEST_COMMENTED))
  local commented = vim.api.nvim_get_current_buf()
  wait('the server to attach to the second buffer', 30000, function()
    return bashlsp.client(commented) ~= nil
  end)
  result.same_client = bashlsp.client(commented).id == client.id
  local mapping = vim.fn.maparg('\\bg', 'n', false, true)
  result.mapping = { buffer = mapping.buffer, desc = mapping.desc }
  result.lines_before = lines(commented)
  vim.api.nvim_win_set_cursor(0, { 2, 0 })
  local before_count = #result.lines_before
  vim.api.nvim_feedkeys('\\bg', 'mx', false)
  wait('the generated script (or the server saying why not)', 120000, function()
    return vim.api.nvim_buf_line_count(commented) > before_count or #result.shown_messages > 0
  end)
  result.lines_after = lines(commented)

  -- :BashlspModelInfo reports the model through vim.notify.
  local notified = #result.notifications
  vim.cmd('BashlspModelInfo')
  wait('BashlspModelInfo', 30000, function()
    return #result.notifications > notified
  end)
  result.model_info_message = result.notifications[#result.notifications].message

  vim.lsp.stop_client(client.id)
  wait('the server to stop', 30000, function()
    return vim.lsp.client_is_stopped(client.id)
  end)
  result.stopped = true
end

local ok, err = xpcall(main, debug.traceback)
if not ok then
  result.error = err
end
local file = assert(io.open(vim.env.BASHLSP_TEST_RESULT, 'w'))
file:write(vim.fn.json_encode(result))
file:close()
vim.cmd('qall!')
