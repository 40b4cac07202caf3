-- One full transaction: macros for every stage, a body in many chunks, and
-- header + recipient changes at end of message.
-- usage: miltertest -D port=N -s transaction.lua
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

mt.macro(conn, SMFIC_CONNECT, "j", "mx.example.org", "{daemon_name}", "mx", "{client_addr}", "192.0.2.1")
ok(mt.conninfo(conn, "client.example.net", "192.0.2.1"), "connect")
expect(conn, "connect", SMFIR_CONTINUE)
mt.macro(conn, SMFIC_HELO, "{tls_version}", "TLSv1.3")
ok(mt.helo(conn, "client.example.net"), "helo")
expect(conn, "helo", SMFIR_CONTINUE)
mt.macro(conn, SMFIC_MAIL, "{mail_addr}", "s@example.net", "{auth_type}", "PLAIN")
ok(mt.mailfrom(conn, "<s@example.net>", "SIZE=300"), "mail")
expect(conn, "mail", SMFIR_CONTINUE)
mt.macro(conn, SMFIC_RCPT, "{rcpt_mailer}", "local", "{rcpt_addr}", "alice@example.org")
ok(mt.rcptto(conn, "<alice@example.org>"), "rcpt alice")
expect(conn, "rcpt alice", SMFIR_CONTINUE)
mt.macro(conn, SMFIC_RCPT, "{rcpt_mailer}", "local", "{rcpt_addr}", "drop.me@example.org")
ok(mt.rcptto(conn, "<Drop.Me@Example.ORG>"), "rcpt drop")
expect(conn, "rcpt drop", SMFIR_CONTINUE)
mt.macro(conn, string.byte("T"), "i", "QID123")
ok(mt.data(conn), "data")
expect(conn, "data", SMFIR_CONTINUE)
ok(mt.header(conn, "From", "<s@example.net>"), "header From")
expect(conn, "header", SMFIR_CONTINUE)
ok(mt.header(conn, "Subject", "miltertest"), "header Subject")
expect(conn, "header", SMFIR_CONTINUE)
ok(mt.eoh(conn), "eoh")
expect(conn, "eoh", SMFIR_CONTINUE)
-- 40 chunks of 11 bytes, boundaries in odd places (one between CR and LF).
for n = 1, 40 do
  ok(mt.bodystring(conn, string.format("line %04d\r", n)), "body")
  expect(conn, "body", SMFIR_CONTINUE)
  ok(mt.bodystring(conn, "\n"), "body lf")
  expect(conn, "body lf", SMFIR_CONTINUE)
end
mt.macro(conn, string.byte("E"), "{msg_id}", "<m1@example.net>")
ok(mt.eom(conn), "eom")
expect(conn, "eom", SMFIR_CONTINUE)

if not mt.eom_check(conn, MT_HDRADD, "X-Demo-Body", "440 bytes in 80 chunks") then fail("X-Demo-Body header") end
if not mt.eom_check(conn, MT_HDRADD, "X-Demo-Macros", "i=QID123 j=mx.example.org tls=TLSv1.3 mail=s@example.net rcpt=drop.me@example.org") then
  fail("X-Demo-Macros header: " .. tostring(mt.getheader(conn, "X-Demo-Macros", 0)))
end
if not mt.eom_check(conn, MT_RCPTDELETE, "<Drop.Me@Example.ORG>") then fail("DELRCPT of the RCPT argument, byte for byte") end
if mt.eom_check(conn, MT_RCPTDELETE, "<alice@example.org>") then fail("alice must stay") end
if mt.eom_check(conn, MT_BODYCHANGE) then fail("no body change expected") end

mt.disconnect(conn)
mt.echo("PASS: transaction")
