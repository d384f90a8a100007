-- bashlsp for Neovim: starts `bashlsp serve --stdio` for sh/bash buffers and wires in completion
-- (omnifunc), native ghost text (Neovim 0.12+) and "Generate script from comment".
--
--   require("bashlsp").setup({ settings = { maxTokens = 64 } })
--
-- Works with Neovim 0.7 (vim.lsp.start_client + buf_attach_client), 0.8+ (vim.lsp.start) and 0.11+
-- (vim.lsp.config + vim.lsp.enable; lsp/bashlsp.lua lets `vim.lsp.enable('bashlsp')` work alone).

local M = {}

local NAME = 'bashlsp'
local GENERATE_TITLE = 'Generate script from comment'
local SERVER_GENERATE = 'bashlsp.generateFromComment'
local SERVER_RELOAD = 'bashlsp.reloadModel'
local SERVER_MODEL_INFO = 'bashlsp.modelInfo'

M.defaults = {
  -- The server command; use a full path if bashlsp is in a virtual environment.
  cmd = { 'bashlsp', 'serve', '--stdio' },
  filetypes = { 'sh', 'bash' },
  -- Server settings, nested as the server reads them (see README "Settings"), e.g.
  -- { device = 'cpu', maxTokens = 64, inlineCompletion = { multiline = false } }.
  settings = {},
  -- A server is shared by the buffers under one root: the nearest folder holding one of these.
  root_markers = { '.git' },
  keys = {
    generate = '<leader>bg', -- normal/visual mode: Generate script from comment (false: no mapping)
    accept_inline = '<Tab>', -- insert mode, 0.12+: accept the ghost text, else a plain <Tab>
  },
  omnifunc = true, -- set 'omnifunc' so <C-x><C-o> asks the server
  inline_completion = true, -- native ghost text where Neovim has it (0.12+)
  capabilities = nil, -- client capabilities, e.g. require('cmp_nvim_lsp').default_capabilities()
  on_attach = nil, -- function(client, bufnr) run after bashlsp's own setup of the buffer
}

local config = vim.deepcopy(M.defaults)
local clients_by_root = {} -- Neovim 0.7: root_dir -> client id (0.8+ lets vim.lsp.start reuse)
local model_info = {} -- client id -> last bashlsp.modelInfo answer

local function notify(message, level)
  vim.notify('bashlsp: ' .. message, level or vim.log.levels.INFO)
end

-- JSON needs {} for an empty object; an empty Lua table would be sent as [].
local function as_object(tbl)
  if type(tbl) ~= 'table' then
    return tbl
  end
  if next(tbl) == nil then
    return vim.empty_dict()
  end
  local copy = {}
  for key, value in pairs(tbl) do
    copy[key] = as_object(value)
  end
  return copy
end

-- Method calls changed from client.request(...) to client:request(...) in 0.11.
local has_method_calls = vim.fn.has('nvim-0.11') == 1

local function client_request(client, method, params, handler, bufnr)
  if has_method_calls then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

local function client_stopped(client)
  if has_method_calls then
    return client:is_stopped()
  end
  return client.is_stopped()
end

local function client_notify(client, method, params)
  if has_method_calls then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

--- The bashlsp client attached to a buffer (0 or nil: the current one), if any.
function M.client(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local attached
  if vim.lsp.get_clients then
    attached = vim.lsp.get_clients({ bufnr = bufnr, name = NAME })
  else
    attached = vim.tbl_values(vim.lsp.buf_get_clients(bufnr))
  end
  for _, client in ipairs(attached) do
    if client.name == NAME then
      return client
    end
  end
  return nil
end

local function root_dir(bufnr)
  local file = vim.api.nvim_buf_get_name(bufnr)
  local start = file ~= '' and vim.fn.fnamemodify(file, ':p:h') or vim.fn.getcwd()
  for _, marker in ipairs(config.root_markers) do
    local dir = vim.fn.finddir(marker, start .. ';')
    if dir ~= '' then
      return vim.fn.fnamemodify(dir, ':p:h:h') -- ':p' of a folder ends in '/'
    end
    local file = vim.fn.findfile(marker, start .. ';')
    if file ~= '' then
      return vim.fn.fnamemodify(file, ':p:h')
    end
  end
  return start
end

-- -- model info (for a statusline and :BashlspModelInfo) ------------------------------------------

local function ask_model_info(client, callback)
  client_request(client, 'workspace/executeCommand', { command = SERVER_MODEL_INFO, arguments = {} }, function(err, result)
    if not err and type(result) == 'table' then
      model_info[client.id] = result
    end
    if callback then
      callback(err, result)
    end
  end)
end

-- The server loads its model in the background after it starts: ask until it has one.
local function follow_loading(client)
  ask_model_info(client, function(err, info)
    local loading = not err and type(info) == 'table' and M._is_loading(info)
    if loading and not client_stopped(client) then
      vim.defer_fn(function()
        follow_loading(client)
      end, 500)
    end
  end)
end

-- Until its first load finishes the server says "the model is not loaded yet".
function M._is_loading(info)
  return info.loaded == false and (info.loading == true or tostring(info.problem or ''):find('not loaded yet', 1, true) ~= nil)
end

--- The last bashlsp.modelInfo answer for the buffer's server (nil before the first).
function M.model_info(bufnr)
  local client = M.client(bufnr)
  return client and model_info[client.id] or nil
end

--- Short text for a statusline: "bashlsp: <checkpoint> (<device>)", or what the server is doing.
function M.status(bufnr)
  local info = M.model_info(bufnr)
  if not info then
    return M.client(bufnr) and 'bashlsp: starting' or ''
  end
  if info.loaded == false then
    return M._is_loading(info) and 'bashlsp: loading model' or 'bashlsp: no model'
  end
  return string.format('bashlsp: %s (%s)', tostring(info.id), tostring(info.device))
end

-- -- Generate script from comment ---------------------------------------------------------------

local function apply_action(client, action, bufnr, done)
  if action.edit then
    vim.lsp.util.apply_workspace_edit(action.edit, client.offset_encoding)
  end
  if action.command then
    -- The server generates and inserts the code itself (workspace/applyEdit).
    local command = type(action.command) == 'table' and action.command or action
    client_request(client, 'workspace/executeCommand', { command = command.command, arguments = command.arguments },
      function(err)
        if err then
          notify(err.message or tostring(err), vim.log.levels.ERROR)
        end
        done()
      end, bufnr)
    return
  end
  done()
end

--- Generate a script below the comment at the cursor (or the selected comment lines).
--- opts.on_done: called once the edit is applied (or nothing could be generated).
function M.generate(opts)
  opts = opts or {}
  local done = opts.on_done or function() end
  local bufnr = vim.api.nvim_get_current_buf()
  local client = M.client(bufnr)
  if not client then
    notify('the server is not attached to this buffer', vim.log.levels.WARN)
    return done()
  end
  local params
  if opts.range then
    params = vim.lsp.util.make_given_range_params(opts.range[1], opts.range[2], bufnr, client.offset_encoding)
  else
    params = vim.lsp.util.make_range_params(0, client.offset_encoding)
  end
  params.context = { diagnostics = {}, only = { 'refactor' } }
  client_request(client, 'textDocument/codeAction', params, function(err, actions)
    if err then
      notify(err.message or tostring(err), vim.log.levels.ERROR)
      return done()
    end
    local action
    for _, candidate in ipairs(actions or {}) do
      if candidate.title == GENERATE_TITLE then
        action = candidate
      end
    end
    if not action then
      notify('put the cursor on a comment line (or select comment lines) to generate a script', vim.log.levels.WARN)
      return done()
    end
    if action.edit or action.command then
      return apply_action(client, action, bufnr, done)
    end
    -- The edit is computed when the action is picked (codeAction/resolve).
    client_request(client, 'codeAction/resolve', action, function(resolve_err, resolved)
      if resolve_err then
        notify(resolve_err.message or tostring(resolve_err), vim.log.levels.ERROR)
        return done()
      end
      if not (resolved and (resolved.edit or resolved.command)) then
        -- The server has told the user why (window/showMessage).
        return done()
      end
      apply_action(client, resolved, bufnr, done)
    end, bufnr)
  end, bufnr)
end

-- -- attaching ----------------------------------------------------------------------------------

local function on_attach(client, bufnr)
  if config.omnifunc then
    vim.bo[bufnr].omnifunc = 'v:lua.vim.lsp.omnifunc'
  end
  local keys = config.keys or {}
  if keys.generate then
    vim.keymap.set('n', keys.generate, function()
      M.generate()
    end, { buffer = bufnr, desc = 'bashlsp: ' .. GENERATE_TITLE })
    vim.keymap.set('x', keys.generate, ':BashlspGenerate<CR>', { buffer = bufnr, silent = true, desc = 'bashlsp: ' .. GENERATE_TITLE })
  end
  local inline = vim.lsp.inline_completion
  if config.inline_completion and inline and inline.enable then
    inline.enable(true, { bufnr = bufnr })
    if keys.accept_inline then
      vim.keymap.set('i', keys.accept_inline, function()
        if not inline.get() then
          return keys.accept_inline
        end
      end, { buffer = bufnr, expr = true, replace_keycodes = true, desc = 'bashlsp: accept ghost text' })
    end
  end
  if not model_info[client.id] then
    follow_loading(client)
  end
  if config.on_attach then
    config.on_attach(client, bufnr)
  end
end

local function client_config(bufnr)
  local capabilities = config.capabilities or vim.lsp.protocol.make_client_capabilities()
  return {
    name = NAME,
    cmd = config.cmd,
    root_dir = root_dir(bufnr),
    init_options = as_object(config.settings),
    -- Answered to workspace/configuration {section = "bashlsp"}; 0.10+ also sends it as
    -- workspace/didChangeConfiguration {settings = {bashlsp = ...}} after initialize.
    settings = { bashlsp = as_object(config.settings) },
    capabilities = capabilities,
    on_attach = on_attach,
    on_exit = function(_, _, client_id)
      model_info[client_id] = nil
    end,
  }
end

--- The client config for Neovim 0.11+'s vim.lsp.config (lsp/bashlsp.lua returns it, so
--- `vim.lsp.enable('bashlsp')` works without setup()). Same server, settings and attach as M.start.
function M.lsp_config()
  local client_cfg = client_config(vim.api.nvim_get_current_buf())
  client_cfg.filetypes = config.filetypes
  -- The same root as M.start: the nearest folder with a marker, else the file's own folder.
  client_cfg.root_dir = function(bufnr, on_dir)
    on_dir(root_dir(bufnr))
  end
  return client_cfg
end

-- Neovim 0.11+ configures servers by name and attaches them to buffers of their filetypes.
local has_lsp_config = vim.lsp.config ~= nil and vim.lsp.enable ~= nil

--- Start (or reuse) the server for a buffer and attach it.
function M.start(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local client_cfg = client_config(bufnr)
  if vim.lsp.start then
    return vim.lsp.start(client_cfg, { bufnr = bufnr })
  end
  -- Neovim 0.7: no vim.lsp.start; one client per root, attached by hand.
  local id = clients_by_root[client_cfg.root_dir]
  if not id or vim.lsp.client_is_stopped(id) then
    id = vim.lsp.start_client(client_cfg)
    if not id then
      notify('could not start ' .. table.concat(config.cmd, ' '), vim.log.levels.ERROR)
      return nil
    end
    clients_by_root[client_cfg.root_dir] = id
  end
  vim.lsp.buf_attach_client(bufnr, id)
  return id
end

--- Change server settings at run time (merged into the current ones); running servers are told
--- with workspace/didChangeConfiguration, as VS Code does, and apply them without a restart.
function M.configure(settings)
  config.settings = vim.tbl_deep_extend('force', config.settings, settings or {})
  local message = { settings = { bashlsp = as_object(config.settings) } }
  for _, client in ipairs(vim.lsp.get_clients and vim.lsp.get_clients({ name = NAME }) or vim.lsp.get_active_clients()) do
    if client.name == NAME then
      client.config.settings = message.settings
      client_notify(client, 'workspace/didChangeConfiguration', message)
    end
  end
end

local function command_for_current_buffer(command, on_result)
  local client = M.client(0)
  if not client then
    return notify('the server is not attached to this buffer', vim.log.levels.WARN)
  end
  client_request(client, 'workspace/executeCommand', { command = command, arguments = {} }, function(err, result)
    if err then
      return notify(err.message or tostring(err), vim.log.levels.ERROR)
    end
    on_result(client, result)
  end)
end

local function describe(info)
  local lines = { M.status() }
  for _, key in ipairs({ 'path', 'params', 'loadedAt', 'store', 'problem' }) do
    if info[key] ~= nil and info[key] ~= vim.NIL then
      table.insert(lines, string.format('%s: %s', key, vim.inspect(info[key])))
    end
  end
  if type(info.meta) == 'table' then
    table.insert(lines, 'meta: ' .. vim.inspect(info.meta, { newline = ' ', indent = '' }))
  end
  return table.concat(lines, '\n')
end

local function create_commands()
  vim.api.nvim_create_user_command('BashlspGenerate', function(args)
    local range
    if args.range > 0 then
      -- Whole lines: make_given_range_params takes (row, byte col) and makes the end exclusive.
      range = { { args.line1, 0 }, { args.line2, math.max(#vim.fn.getline(args.line2) - 1, 0) } }
    end
    M.generate({ range = range })
  end, { range = true, desc = 'bashlsp: ' .. GENERATE_TITLE })
  vim.api.nvim_create_user_command('BashlspReload', function()
    command_for_current_buffer(SERVER_RELOAD, function(client)
      ask_model_info(client, function()
        notify('reloaded: ' .. M.status())
      end)
    end)
  end, { desc = 'bashlsp: reload the model' })
  vim.api.nvim_create_user_command('BashlspModelInfo', function()
    command_for_current_buffer(SERVER_MODEL_INFO, function(client, info)
      model_info[client.id] = info
      vim.notify(describe(info))
    end)
  end, { desc = 'bashlsp: show the model in use' })
end

--- Start bashlsp for sh/bash buffers. opts: see M.defaults.
function M.setup(opts)
  config = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  create_commands()
  if has_lsp_config then
    vim.lsp.config(NAME, M.lsp_config())
    vim.lsp.enable(NAME)
    return
  end
  local group = vim.api.nvim_create_augroup('bashlsp', { clear = true })
  vim.api.nvim_create_autocmd('FileType', {
    group = group,
    pattern = config.filetypes,
    callback = function(args)
      if vim.bo[args.buf].buftype == '' then
        M.start(args.buf)
      end
    end,
  })
  -- Buffers opened before setup().
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(config.filetypes, vim.bo[bufnr].filetype) then
      M.start(bufnr)
    end
  end
end

return M
