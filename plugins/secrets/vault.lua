--- Secret source: HashiCorp Vault KV version 2, token auth.
---
---   weft.secrets.use("vault", { addr = "https://vault:8200", token = weft.secret("env:VAULT_TOKEN") })
---   local key = weft.secret("vault:secret/openai#api_key", { ttl = 300 })
---
--- The reference is `<mount>/<path>#<field>`: GET {addr}/v1/{mount}/data/{path}
--- with the token in X-Vault-Token (rendered by the host), field taken from
--- data.data. `addr` defaults to $VAULT_ADDR; `namespace` sets
--- X-Vault-Namespace. A missing field or a non-200 answer is an error that
--- names the path, never a value.
local json = require "weft.json"
local http = require "weft.http"
local errors = require "weft.error"

return {
    api = 1,
    name = "vault",
    kind = "secret_source",
    schema = {
        addr = { default = "$VAULT_ADDR", description = "Vault address, e.g. https://vault:8200" },
        token = { default = "env:VAULT_TOKEN", description = "secret handle holding the Vault token" },
        namespace = { default = nil, description = "X-Vault-Namespace (Vault Enterprise)" },
        timeout = { default = 10, description = "seconds per request" },
    },
    load = function(rest, opts, conf)
        local mount, path, field = rest:match("^([^/]+)/([^#]+)#(.+)$")
        if not mount then
            error(errors.new("invalid_request", "vault: the reference is <mount>/<path>#<field>, got " .. rest), 0)
        end
        local addr = conf.addr or os.getenv("VAULT_ADDR")
        if not addr then error(errors.new("invalid_request", "vault: no addr (set VAULT_ADDR)"), 0) end
        local token = conf.token or require("weft.secrets").secret("env:VAULT_TOKEN")
        local headers = { accept = "application/json" }
        if conf.namespace then headers["x-vault-namespace"] = conf.namespace end
        local res = http.request {
            url = addr:gsub("/+$", "") .. "/v1/" .. mount .. "/data/" .. path,
            headers = headers, timeout = conf.timeout or 10,
            auth = { secret = token, header = "x-vault-token" },
        }
        if res.status ~= 200 then
            error(errors.new(res.status == 403 and "auth" or "transient",
                ("vault: %s/%s answered %d"):format(mount, path, res.status), { status = res.status }), 0)
        end
        local v = json.decode(res.body)
        local value = type(v) == "table" and type(v.data) == "table" and type(v.data.data) == "table"
            and v.data.data[field]
        if type(value) ~= "string" then
            error(errors.new("integration", ("vault: %s/%s has no string field %s"):format(mount, path, field)), 0)
        end
        return value
    end,
}
