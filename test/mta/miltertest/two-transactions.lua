-- Two transactions on one connection with an ABORT between them; the
-- second one's end-of-message result reflects only its own body.
-- usage: miltertest -D port=N -s two-transactions.lua
local sock = "inet:" .. port .. "@127.0.0.1"
local function fail(msg) mt.echo("FAIL: " .. msg); error(msg) end
local function expect(conn, step, want)
  local r = mt.getreply(conn)
  if r ~= want then fail(step .. ": got reply " .. string.char(r) .. ", wanted " .. string.char(want)) end
end
local function ok(result, step) if result ~= nil then fail(step .. ": " .. result) end end

local conn = mt.connect(sock, 20, 0.25)
if conn == nil then fail("cannot connect to " .. sock) end
ok(mt.negotiate(conn, nil, nil, nil), "negotiate")
mt.macro(conn, SMFIC_CONNECT, "j", "mx.example.org")
ok(mt.conninfo(conn, "client.example.net", "192.0.2.1"), "connect")
expect(conn, "connect", SMFIR_CONTINUE)
ok(mt.helo(conn, "client.example.net"), "helo")
expect(conn, "helo", SMFIR_CONTINUE)

-- First transaction: abandoned in the middle of the body.
ok(mt.mailfrom(conn, "<first@example.net>"), "mail 1")
expect(conn, "mail 1", SMFIR_CONTINUE)
ok(mt.rcptto(conn, "<drop.first@example.org>"), "rcpt 1")
expect(conn, "rcpt 1", SMFIR_CONTINUE)
ok(mt.header(conn, "Subject", "one"), "header 1")
ok(mt.eoh(conn), "eoh 1")
ok(mt.bodystring(conn, "this body is abandoned\r\n"), "body 1")
expect(conn, "body 1", SMFIR_CONTINUE)
ok(mt.abort(conn), "abort")

-- Second transaction, complete.
mt.macro(conn, SMFIC_MAIL, "{mail_addr}", "second@example.net")
ok(mt.mailfrom(conn, "<second@example.net>"), "mail 2")
expect(conn, "mail 2", SMFIR_CONTINUE)
mt.macro(conn, SMFIC_RCPT, "{rcpt_mailer}", "local", "{rcpt_addr}", "bob@example.org")
ok(mt.rcptto(conn, "<bob@example.org>"), "rcpt 2")
expect(conn, "rcpt 2", SMFIR_CONTINUE)
mt.macro(conn, string.byte("T"), "i", "QID2")
ok(mt.data(conn), "data 2")
ok(mt.header(conn, "Subject", "two"), "header 2")
ok(mt.eoh(conn), "eoh 2")
ok(mt.bodystring(conn, "ab\r\n"), "body 2a")
ok(mt.bodystring(conn, "cd\r\n"), "body 2b")
ok(mt.eom(conn), "eom 2")
expect(conn, "eom 2", SMFIR_CONTINUE)
if not mt.eom_check(conn, MT_HDRADD, "X-Demo-Body", "8 bytes in 2 chunks") then
  fail("second transaction saw the first one's body: " .. tostring(mt.getheader(conn, "X-Demo-Body", 0)))
end
if mt.eom_check(conn, MT_RCPTDELETE, "<drop.first@example.org>") then fail("a recipient of the aborted transaction came back") end
if not mt.eom_check(conn, MT_HDRADD, "X-Demo-Macros", "i=QID2 j=mx.example.org tls= mail=second@example.net rcpt=bob@example.org") then
  fail("macros of the second transaction: " .. tostring(mt.getheader(conn, "X-Demo-Macros", 0)))
end

mt.disconnect(conn)
mt.echo("PASS: two transactions")
