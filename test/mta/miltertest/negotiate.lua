-- Negotiation as libmilter's test peer sees it: the actions and protocol
-- bits the demo application declared, nothing more.
-- usage: miltertest -D port=N -s negotiate.lua
local sock = "inet:" .. port .. "@127.0.0.1"
local function fail(msg) mt.echo("FAIL: " .. msg); error(msg) end

local conn = mt.connect(sock, 20, 0.25)
if conn == nil then fail("cannot connect to " .. sock) end
if mt.negotiate(conn, nil, nil, nil) ~= nil then fail("negotiate") end

if not mt.test_action(conn, SMFIF_ADDHDRS) then fail("ADDHDRS not negotiated") end
if not mt.test_action(conn, SMFIF_DELRCPT) then fail("DELRCPT not negotiated") end
if not mt.test_action(conn, SMFIF_SETSYMLIST) then fail("SETSYMLIST not negotiated") end
if mt.test_action(conn, SMFIF_CHGBODY) then fail("CHGBODY negotiated but never declared") end
if not mt.test_option(conn, SMFIP_NOUNKNOWN) then fail("NOUNKNOWN missing: the demo declines UNKNOWN") end
-- Answer every step: no no-reply bits (the TCP delayed-ACK stall).
for _, bit in ipairs({SMFIP_NR_CONN, SMFIP_NR_HELO, SMFIP_NR_MAIL, SMFIP_NR_RCPT,
                      SMFIP_NR_DATA, SMFIP_NR_HDR, SMFIP_NR_EOH, SMFIP_NR_BODY}) do
  if mt.test_option(conn, bit) then fail("a no-reply bit was negotiated: " .. bit) end
end
if mt.test_option(conn, SMFIP_NOCONNECT) or mt.test_option(conn, SMFIP_NOHDRS) then
  fail("a needed step was negotiated away")
end

mt.disconnect(conn)
mt.echo("PASS: negotiation")
