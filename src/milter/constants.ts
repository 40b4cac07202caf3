// Runs in: the milter process and the in-repo client (pure).
//
// Every byte value and bit of the milter protocol, in one place, each with the
// name libmilter gives it (mfdef.h / mfapi.h). Postfix's milter8.c uses the
// same values. [v6] marks what only protocol version 6 peers know.

// ---- framing ----------------------------------------------------------------

/** MILTER_LEN_BYTES: size of the big-endian length word before every packet. */
export const MILTER_LEN_BYTES = 4;
/** MILTER_OPTLEN: fixed part of OPTNEG data, three uint32 words. */
export const MILTER_OPTLEN = 12;
/** MILTER_CHUNK_SIZE: largest BODY / REPLBODY data block. We never send more data than this in one packet. */
export const MILTER_CHUNK_SIZE = 65535;
/** MILTER_MAX_DATA_SIZE: libmilter's default limit on the data part of a packet. */
export const MILTER_MAX_DATA_SIZE = 65535;
/**
 * Our default cap on an incoming packet (length word value). Larger than
 * libmilter's because Postfix sends each header in one packet whatever its
 * size, and header_size_limit (102400) allows HEADER packets above 64 KiB.
 */
export const DEFAULT_MAX_FRAME_LENGTH = 1024 * 1024;

/** SMFI_PROT_VERSION: the protocol version we speak and answer with. */
export const SMFI_PROT_VERSION = 6;
/** libmilter refuses MTA versions below this. */
export const SMFI_PROT_VERSION_MIN = 2;

// ---- commands, MTA -> milter (SMFIC_*) ------------------------------------------

export const SMFIC_ABORT = 0x41; // 'A'
export const SMFIC_BODY = 0x42; // 'B'
export const SMFIC_CONNECT = 0x43; // 'C'
export const SMFIC_MACRO = 0x44; // 'D'
export const SMFIC_BODYEOB = 0x45; // 'E'
export const SMFIC_HELO = 0x48; // 'H'
export const SMFIC_QUIT_NC = 0x4b; // 'K' [v6]
export const SMFIC_HEADER = 0x4c; // 'L'
export const SMFIC_MAIL = 0x4d; // 'M'
export const SMFIC_EOH = 0x4e; // 'N'
export const SMFIC_OPTNEG = 0x4f; // 'O'
export const SMFIC_QUIT = 0x51; // 'Q'
export const SMFIC_RCPT = 0x52; // 'R'
export const SMFIC_DATA = 0x54; // 'T' [v4+]
export const SMFIC_UNKNOWN = 0x55; // 'U' [v3+]

/** Names for logs and error messages, keyed by command byte. */
export const COMMAND_NAMES: Readonly<Record<number, string>> = {
  [SMFIC_ABORT]: 'SMFIC_ABORT',
  [SMFIC_BODY]: 'SMFIC_BODY',
  [SMFIC_CONNECT]: 'SMFIC_CONNECT',
  [SMFIC_MACRO]: 'SMFIC_MACRO',
  [SMFIC_BODYEOB]: 'SMFIC_BODYEOB',
  [SMFIC_HELO]: 'SMFIC_HELO',
  [SMFIC_QUIT_NC]: 'SMFIC_QUIT_NC',
  [SMFIC_HEADER]: 'SMFIC_HEADER',
  [SMFIC_MAIL]: 'SMFIC_MAIL',
  [SMFIC_EOH]: 'SMFIC_EOH',
  [SMFIC_OPTNEG]: 'SMFIC_OPTNEG',
  [SMFIC_QUIT]: 'SMFIC_QUIT',
  [SMFIC_RCPT]: 'SMFIC_RCPT',
  [SMFIC_DATA]: 'SMFIC_DATA',
  [SMFIC_UNKNOWN]: 'SMFIC_UNKNOWN',
};

// ---- responses, milter -> MTA (SMFIR_*) -----------------------------------------

export const SMFIR_ADDRCPT = 0x2b; // '+'
export const SMFIR_DELRCPT = 0x2d; // '-'
export const SMFIR_ADDRCPT_PAR = 0x32; // '2' [v6]
export const SMFIR_SHUTDOWN = 0x34; // '4' Postfix only; Sendmail calls it bogus
export const SMFIR_ACCEPT = 0x61; // 'a'
export const SMFIR_REPLBODY = 0x62; // 'b'
export const SMFIR_CONTINUE = 0x63; // 'c'
export const SMFIR_DISCARD = 0x64; // 'd'
export const SMFIR_CHGFROM = 0x65; // 'e' [v6]
export const SMFIR_CONN_FAIL = 0x66; // 'f' accepted by neither MTA: never sent
export const SMFIR_ADDHEADER = 0x68; // 'h'
export const SMFIR_INSHEADER = 0x69; // 'i'
export const SMFIR_SETSYMLIST = 0x6c; // 'l' a name only: never sent as a packet
export const SMFIR_CHGHEADER = 0x6d; // 'm'
export const SMFIR_PROGRESS = 0x70; // 'p'
export const SMFIR_QUARANTINE = 0x71; // 'q'
export const SMFIR_REJECT = 0x72; // 'r'
export const SMFIR_SKIP = 0x73; // 's' [v6]
export const SMFIR_TEMPFAIL = 0x74; // 't'
export const SMFIR_REPLYCODE = 0x79; // 'y'
/** The OPTNEG reply reuses the command byte 'O'. */
export const SMFIR_OPTNEG = SMFIC_OPTNEG;

export const REPLY_NAMES: Readonly<Record<number, string>> = {
  [SMFIR_ADDRCPT]: 'SMFIR_ADDRCPT',
  [SMFIR_DELRCPT]: 'SMFIR_DELRCPT',
  [SMFIR_ADDRCPT_PAR]: 'SMFIR_ADDRCPT_PAR',
  [SMFIR_SHUTDOWN]: 'SMFIR_SHUTDOWN',
  [SMFIR_ACCEPT]: 'SMFIR_ACCEPT',
  [SMFIR_REPLBODY]: 'SMFIR_REPLBODY',
  [SMFIR_CONTINUE]: 'SMFIR_CONTINUE',
  [SMFIR_DISCARD]: 'SMFIR_DISCARD',
  [SMFIR_CHGFROM]: 'SMFIR_CHGFROM',
  [SMFIR_CONN_FAIL]: 'SMFIR_CONN_FAIL',
  [SMFIR_ADDHEADER]: 'SMFIR_ADDHEADER',
  [SMFIR_INSHEADER]: 'SMFIR_INSHEADER',
  [SMFIR_SETSYMLIST]: 'SMFIR_SETSYMLIST',
  [SMFIR_CHGHEADER]: 'SMFIR_CHGHEADER',
  [SMFIR_PROGRESS]: 'SMFIR_PROGRESS',
  [SMFIR_QUARANTINE]: 'SMFIR_QUARANTINE',
  [SMFIR_REJECT]: 'SMFIR_REJECT',
  [SMFIR_SKIP]: 'SMFIR_SKIP',
  [SMFIR_TEMPFAIL]: 'SMFIR_TEMPFAIL',
  [SMFIR_REPLYCODE]: 'SMFIR_REPLYCODE',
  [SMFIR_OPTNEG]: 'SMFIR_OPTNEG',
};

// ---- action flags (SMFIF_*, OPTNEG word 2) --------------------------------------

export const SMFIF_NONE = 0x000;
export const SMFIF_ADDHDRS = 0x001; // ADDHEADER, INSHEADER
export const SMFIF_CHGBODY = 0x002; // REPLBODY
export const SMFIF_MODBODY = SMFIF_CHGBODY;
export const SMFIF_ADDRCPT = 0x004; // ADDRCPT
export const SMFIF_DELRCPT = 0x008; // DELRCPT
export const SMFIF_CHGHDRS = 0x010; // CHGHEADER (change or delete)
export const SMFIF_QUARANTINE = 0x020; // QUARANTINE
export const SMFIF_CHGFROM = 0x040; // CHGFROM [v6]
export const SMFIF_ADDRCPT_PAR = 0x080; // ADDRCPT_PAR [v6]
export const SMFIF_SETSYMLIST = 0x100; // macro lists in the OPTNEG reply [v6]

export const SMFI_V1_ACTS = 0x0f;
export const SMFI_V2_ACTS = 0x3f;
export const SMFI_CURR_ACTS = 0x1ff;

// ---- protocol flags (SMFIP_*, OPTNEG word 3) ------------------------------------

export const SMFIP_NOCONNECT = 0x00000001; // no-send: CONNECT
export const SMFIP_NOHELO = 0x00000002; // no-send: HELO
export const SMFIP_NOMAIL = 0x00000004; // no-send: MAIL
export const SMFIP_NORCPT = 0x00000008; // no-send: RCPT
export const SMFIP_NOBODY = 0x00000010; // no-send: BODY
export const SMFIP_NOHDRS = 0x00000020; // no-send: HEADER
export const SMFIP_NOEOH = 0x00000040; // no-send: EOH
export const SMFIP_NR_HDR = 0x00000080; // no-reply: HEADER
export const SMFIP_NOHREPL = SMFIP_NR_HDR;
export const SMFIP_NOUNKNOWN = 0x00000100; // no-send: UNKNOWN
export const SMFIP_NODATA = 0x00000200; // no-send: DATA
export const SMFIP_SKIP = 0x00000400; // MTA understands SKIP
export const SMFIP_RCPT_REJ = 0x00000800; // also send RCPTs the MTA rejected
export const SMFIP_NR_CONN = 0x00001000; // no-reply: CONNECT
export const SMFIP_NR_HELO = 0x00002000; // no-reply: HELO
export const SMFIP_NR_MAIL = 0x00004000; // no-reply: MAIL
export const SMFIP_NR_RCPT = 0x00008000; // no-reply: RCPT
export const SMFIP_NR_DATA = 0x00010000; // no-reply: DATA
export const SMFIP_NR_UNKN = 0x00020000; // no-reply: UNKNOWN
export const SMFIP_NR_EOH = 0x00040000; // no-reply: EOH
export const SMFIP_NR_BODY = 0x00080000; // no-reply: BODY
export const SMFIP_HDR_LEADSPC = 0x00100000; // header values keep their leading whitespace
export const SMFIP_MDS_256K = 0x10000000; // internal: 256K data limit
export const SMFIP_MDS_1M = 0x20000000; // internal: 1M data limit
export const SMFIP_TEST = 0x80000000; // internal: _FFR_MILTER_CHECK only

/** SMFI_INTERNAL: bits between the MTA and libmilter that a milter never echoes. */
export const SMFI_INTERNAL = 0x70000000;
export const SMFI_V1_PROT = 0x3f;
export const SMFI_V2_PROT = 0x7f;
export const SMFI_CURR_PROT = 0x1fffff;

/** Every no-send bit (the MTA does not send that command at all). */
export const SMFIP_NOSEND_MASK =
  SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY | SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA;
/** Every no-reply bit (the milter promises never to answer that command). */
export const SMFIP_NOREPLY_MASK =
  SMFIP_NR_HDR | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_BODY;

// ---- CONNECT address families (SMFIA_*) -----------------------------------------

export const SMFIA_UNKNOWN = 0x55; // 'U': no port or address follows
export const SMFIA_UNIX = 0x4c; // 'L'
export const SMFIA_INET = 0x34; // '4'
export const SMFIA_INET6 = 0x36; // '6'

// ---- macro stages in the OPTNEG reply (SMFIM_*) ---------------------------------

export const SMFIM_CONNECT = 0;
export const SMFIM_HELO = 1;
export const SMFIM_ENVFROM = 2;
export const SMFIM_ENVRCPT = 3;
export const SMFIM_DATA = 4;
/** Note the order: EOM (5) comes before EOH (6) in libmilter's numbering. */
export const SMFIM_EOM = 5;
export const SMFIM_EOH = 6;
