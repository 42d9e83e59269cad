-- tls_check.lua URL CA_PEM OTHER_CA_PEM: used by tls_test.sh.
local t = require "support"
local http = weft.http
local url, ca, other = arg[1], arg[2], arg[3]

local r = http.request { url = url, ca_file = ca }
t.check(r.status == 200 and r.body == "tls ok\n", "HTTPS with the right CA answers", r.status)
t.check(r.http_version == 2, "HTTP/2 is used when the server offers it", r.http_version)

local err = t.raised(http.request, { url = url })
t.check(err and err.kind == "auth" and tostring(err.message):find("certificate verification failed"),
    "an unknown CA fails verification (kind auth), never silently accepted", err)

err = t.raised(http.request, { url = url, ca_file = other })
t.check(err and err.kind == "auth", "a certificate from another CA is refused", err)

err = t.raised(http.request, { url = url, ca_file = "/nonexistent/ca.pem" })
t.check(err and err.kind == "invalid_request", "an unreadable CA file is a configuration error", err)

-- Connections are reused over TLS too: many requests, all answered.
local fns = {}
for i = 1, 50 do fns[i] = function() return http.request { url = url, ca_file = ca }.status end end
local statuses = weft.all(fns)
local all200 = true
for i = 1, 50 do all200 = all200 and statuses[i] == 200 end
t.check(all200, "50 concurrent HTTPS requests over HTTP/2 all answered")
t.done()
