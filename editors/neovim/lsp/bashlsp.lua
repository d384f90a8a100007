-- Neovim 0.11+ reads lsp/<name>.lua from the runtimepath for vim.lsp.config(<name>): with this
-- plugin on the runtimepath, `vim.lsp.enable('bashlsp')` starts bashlsp for sh/bash buffers,
-- and `vim.lsp.config('bashlsp', { cmd = ..., settings = { bashlsp = ... } })` overrides it.
return require('bashlsp').lsp_config()
