-- Reply codes: REPLYCODE with our own text at RCPT, MAIL and end of message
-- (with '%' escaped for Sendmail), plain TEMPFAIL from a failing handler.
-- usage: miltertest -D port=N -s replies.lua
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
ok(mt.conninfo(conn, "client.example.net", "192.0.2.1"), "connect")
expect(conn, "connect", SMFIR_CONTINUE)
ok(mt.helo(conn, "client.example.net"), "helo")
expect(conn, "helo", SMFIR_CONTINUE)

-- MAIL refused with our text.
ok(mt.mailfrom(conn, "<tempfail@example.net>"), "mail tempfail")
expect(conn, "mail tempfail", SMFIR_REPLYCODE)
ok(mt.abort(conn), "abort")

ok(mt.mailfrom(conn, "<s@example.net>"), "mail")
expect(conn, "mail", SMFIR_CONTINUE)
-- One recipient refused, the transaction goes on.
ok(mt.rcptto(conn, "<busy@example.org>"), "rcpt busy")
expect(conn, "rcpt busy", SMFIR_REPLYCODE)
-- A handler that throws: tempfail, never reject.
ok(mt.rcptto(conn, "<crash@example.org>"), "rcpt crash")
expect(conn, "rcpt crash", SMFIR_REPLYCODE)
ok(mt.rcptto(conn, "<alice@example.org>"), "rcpt alice")
expect(conn, "rcpt alice", SMFIR_CONTINUE)
ok(mt.header(conn, "Subject", "please reject"), "header")
expect(conn, "header", SMFIR_CONTINUE)
ok(mt.eoh(conn), "eoh")
ok(mt.bodystring(conn, "x\r\n"), "body")
ok(mt.eom(conn), "eom")
expect(conn, "eom", SMFIR_REPLYCODE)
if not mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", "Rejected by the demo, 100%% sure") then
  fail("eom reply text")
end
if mt.eom_check(conn, MT_HDRADD) then fail("no header changes with a reject") end

mt.disconnect(conn)
mt.echo("PASS: replies")
