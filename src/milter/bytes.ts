// Runs in: the milter process and the in-repo client (pure).
//
// Byte strings at the milter boundary: a string is latin1 (one character per
// byte), never UTF-8, so 8-bit header and address bytes survive untouched.
export const toBuffer = (value: string | Buffer): Buffer => (typeof value === 'string' ? Buffer.from(value, 'latin1') : value);
