-- Ghost text through the plugin on Neovim 0.12+ (vim.lsp.inline_completion), run headless by
-- tests/editors/test_editors_neovim.py:
--
--   nvim --headless -u NONE -i NONE -n -c 'luafile editors/neovim/test/inline.lua'
--
-- Environment: BASHLSP_TEST_CMD, BASHLSP_TEST_SETTINGS, BASHLSP_TEST_TYPED (a script ending in
-- "ech"), BASHLSP_TEST_RESULT (as for headless.lua), and BASHLSP_TEST_PATH: "setup" (the
-- plugin's setup()) or "enable" (only vim.lsp.config + vim.lsp.enable, as a 0.11+ user would).
-- Insert mode needs Neovim's main loop, so after the server is up the steps run from timers
-- that poll a condition (never fixed sleeps) and the script returns.

local result = { notifications = {}, version = vim.version(), path = vim.env.BASHLSP_TEST_PATH, steps = {} }
local plugin_root = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h:h')

local function finish(err)
  if err then
    result.error = err
  end
  result.mode_at_end = vim.api.nvim_get_mode().mode
  local file = assert(io.open(vim.env.BASHLSP_TEST_RESULT, 'w'))
  file:write(vim.fn.json_encode(result))
  file:close()
  vim.cmd('qall!')
end

local function guarded(fn)
  return function()
    local ok, err = xpcall(fn, debug.traceback)
    if not ok then
      finish(err)
    end
  end
end

-- Call `next` once `condition` holds, checking every 20 ms for at most `ms`.
local function poll(what, ms, condition, next)
  local deadline = vim.uv.now() + ms
  local function check()
    if condition() then
      return guarded(next)()
    end
    if vim.uv.now() > deadline then
      return finish(string.format('timed out after %d ms waiting for %s', ms, what))
    end
    vim.defer_fn(guarded(check), 20)
  end
  check()
end

local function wait(what, ms, condition)
  if not vim.wait(ms, condition, 20) then
    error(string.format('timed out after %d ms waiting for %s', ms, what))
  end
end

local function ghost_extmarks(bufnr)
  local ns = vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
  return ns and vim.api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true }) or {}
end

local function texts(chunks)
  local parts = {}
  for _, chunk in ipairs(chunks or {}) do
    table.insert(parts, chunk[1])
  end
  return table.concat(parts)
end

local function main()
  vim.opt.runtimepath:prepend(plugin_root)
  vim.cmd('filetype on')
  vim.notify = function(message, level)
    table.insert(result.notifications, { message = message, level = level })
  end
  local cmd = vim.fn.json_decode(vim.env.BASHLSP_TEST_CMD)
  local settings = vim.fn.json_decode(vim.env.BASHLSP_TEST_SETTINGS)
  local bashlsp = require('bashlsp')
  if result.path == 'setup' then
    bashlsp.setup({ cmd = cmd, settings = settings })
  else
    -- No setup(): the plugin's lsp/bashlsp.lua supplies the rest of the config.
    vim.lsp.config('bashlsp', { cmd = cmd, init_options = settings, settings = { bashlsp = settings } })
    vim.lsp.enable('bashlsp')
  end
  result.enabled = vim.lsp.is_enabled('bashlsp')

  vim.cmd('edit ' .. vim.fn.fnameescape(vim.env.BASHLSP_TEST_TYPED))
  local bufnr = vim.api.nvim_get_current_buf()
  result.filetype = vim.bo[bufnr].filetype
  wait('the server to initialize', 120000, function()
    local client = bashlsp.client(bufnr)
    return client ~= nil and client.initialized == true
  end)
  local client = bashlsp.client(bufnr)
  result.clients = #vim.lsp.get_clients({ bufnr = bufnr })
  result.root_dir = client.root_dir
  result.inline_provider = client.server_capabilities.inlineCompletionProvider ~= nil
  wait('the model to load', 120000, function()
    local info = bashlsp.model_info(bufnr)
    return info ~= nil and info.loaded == true
  end)
  result.status = bashlsp.status(bufnr)
  result.inline_enabled = vim.lsp.inline_completion.is_enabled({ bufnr = bufnr })
  local mapping = vim.fn.maparg('<Tab>', 'i', false, true)
  result.tab_mapping = { buffer = mapping.buffer, desc = mapping.desc }

  -- Insert mode at the end of "ech": Neovim asks for inline completion and draws an extmark.
  local last = vim.api.nvim_buf_line_count(bufnr)
  result.line_before = vim.api.nvim_buf_get_lines(bufnr, last - 1, last, true)[1]
  vim.api.nvim_win_set_cursor(0, { last, #result.line_before })
  vim.cmd('startinsert!')
  poll('ghost text (an inline-completion extmark)', 60000, function()
    return #ghost_extmarks(bufnr) > 0
  end, function()
    local mark = ghost_extmarks(bufnr)[1]
    local details = mark[4]
    result.mode_with_ghost = vim.api.nvim_get_mode().mode
    result.ghost = { row = mark[2], col = mark[3], text = texts(details.virt_text), lines = {} }
    for _, line in ipairs(details.virt_lines or {}) do
      table.insert(result.ghost.lines, texts(line))
    end
    -- <Tab> through the plugin's insert-mode mapping accepts it.
    vim.api.nvim_feedkeys(vim.keycode('<Tab>'), 'm', false)
    poll('the ghost text to be accepted', 10000, function()
      return vim.api.nvim_buf_line_count(bufnr) ~= last
        or vim.api.nvim_buf_get_lines(bufnr, last - 1, last, true)[1] ~= result.line_before
    end, function()
      result.lines_after = vim.api.nvim_buf_get_lines(bufnr, last - 1, -1, true)
      result.cursor_after = vim.api.nvim_win_get_cursor(0)
      result.ghost_after_accept = #ghost_extmarks(bufnr)
      vim.cmd('stopinsert')
      client:stop()
      poll('the server to stop', 30000, function()
        return client:is_stopped()
      end, function()
        result.stopped = true
        finish()
      end)
    end)
  end)
end

guarded(main)()
