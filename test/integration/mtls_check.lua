-- mtls_check.lua URL DIR: mutual TLS with certificates from the secrets
-- store (file: sources, mode 0600), passed to curl in memory.
local t = require "support"
local url, dir = arg[1], arg[2]
local http = weft.http
local ca = weft.secret("file:" .. dir .. "/ca.pem")
local cert = weft.secret("file:" .. dir .. "/client.pem")
local key = weft.secret("file:" .. dir .. "/client.key")
local r = http.request { url = url, tls = { cert = cert, key = key, ca = ca } }
t.check(r.status == 200, "the right client certificate is accepted", r.status)
local err = t.raised(http.request, { url = url, tls = { ca = ca } })
t.check(err ~= nil and (err.kind == "auth" or err.kind == "transient"), "no client certificate: the handshake fails", err)
local ocert = weft.secret("file:" .. dir .. "/other.pem")
local okey = weft.secret("file:" .. dir .. "/other.key")
err = t.raised(http.request, { url = url, tls = { cert = ocert, key = okey, ca = ca } })
t.check(err and err.kind == "auth" and tostring(err):find("client certificate", 1, true),
    "a certificate from another CA fails clearly (kind auth)", err)
err = t.raised(http.request, { url = url, tls = { cert = cert, key = okey, ca = ca } })
t.check(err and err.kind == "invalid_request" and tostring(err):find("client certificate or key", 1, true),
    "a key that does not match the certificate is a configuration error", err)
t.check(tostring(err):find("BEGIN", 1, true) == nil, "no PEM text in the error")
r = http.request { url = url, tls = { cert = cert, key = key, ca = ca } }
t.check(r.status == 200, "pooled handles do not keep the bad key", r.status)
t.done()
