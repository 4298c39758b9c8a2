//! XO's ACL id function, ported exactly: `multiKeyHash(subject, object, action)` of xo-server's `utils.mjs` is
//! npm `multikey-hash` 1.0.4 (incremental MurmurHash3, x86 32-bit, seed 0, from npm `imurmurhash` 0.1.4, fed
//! each key's `simple-token`, i.e. `JSON.stringify(key)` for strings), written as a little-endian u32 and
//! encoded base64url without padding (6 characters).
//!
//! `imurmurhash` reads JavaScript strings as UTF-16 code units and mixes each unit's low 16 bits into the block
//! at 8-bit offsets (a quirk for non-ASCII text); this port reproduces it, quirks included.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

fn mix_k1(k1: u32) -> u32 {
    k1.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

/// `imurmurhash`'s incremental state.
#[derive(Debug, Default, Clone)]
struct MurmurHash3 {
    h1: u32,
    k1: u32,
    rem: usize,
    len: u32,
}

impl MurmurHash3 {
    /// `MurmurHash3.prototype.hash(key)` over `key`'s UTF-16 code units.
    fn hash(&mut self, key: &[u16]) {
        let at = |i: usize| u32::from(key[i]);
        let mut len = key.len();
        self.len = self.len.wrapping_add(len as u32);
        let mut k1 = self.k1;
        let mut i = 0;
        // fall-through switch on the bytes still missing from the partial block
        if self.rem == 0 && len > i {
            k1 ^= at(i) & 0xffff;
            i += 1;
        }
        if self.rem <= 1 && len > i {
            k1 ^= (at(i) & 0xffff) << 8;
            i += 1;
        }
        if self.rem <= 2 && len > i {
            k1 ^= (at(i) & 0xffff) << 16;
            i += 1;
        }
        if self.rem <= 3 && len > i {
            k1 ^= (at(i) & 0xff) << 24;
            k1 ^= (at(i) & 0xff00) >> 8;
            i += 1;
        }
        self.rem = (len + self.rem) & 3;
        // `len -= rem` in JavaScript may go negative: then no block is complete
        if len > self.rem {
            len -= self.rem;
            let mut h1 = self.h1;
            loop {
                h1 ^= mix_k1(k1);
                h1 = h1.rotate_left(13);
                h1 = h1.wrapping_mul(5).wrapping_add(0xe654_6b64);
                if i >= len {
                    break;
                }
                k1 = (at(i) & 0xffff) ^ ((at(i + 1) & 0xffff) << 8) ^ ((at(i + 2) & 0xffff) << 16);
                let top = at(i + 3);
                k1 ^= ((top & 0xff) << 24) ^ ((top & 0xff00) >> 8);
                i += 4;
            }
            k1 = 0;
            if self.rem >= 3 {
                k1 ^= (at(i + 2) & 0xffff) << 16;
            }
            if self.rem >= 2 {
                k1 ^= (at(i + 1) & 0xffff) << 8;
            }
            if self.rem >= 1 {
                k1 ^= at(i) & 0xffff;
            }
            self.h1 = h1;
        }
        self.k1 = k1;
    }

    /// `MurmurHash3.prototype.result()`.
    fn result(&self) -> u32 {
        let mut h1 = self.h1;
        // JavaScript compares the signed 32-bit value: a partial block with its top bit set is skipped
        if (self.k1 as i32) > 0 {
            h1 ^= mix_k1(self.k1);
        }
        h1 ^= self.len;
        h1 ^= h1 >> 16;
        h1 = h1.wrapping_mul(0x85eb_ca6b);
        h1 ^= h1 >> 13;
        h1 = h1.wrapping_mul(0xc2b2_ae35);
        h1 ^= h1 >> 16;
        h1
    }
}

/// npm `multikey-hash` over string keys (each hashed as its JSON text).
pub fn multikey_hash(keys: &[&str]) -> u32 {
    let mut m = MurmurHash3::default();
    for k in keys {
        let token = serde_json::to_string(k).unwrap_or_default();
        let units: Vec<u16> = token.encode_utf16().collect();
        m.hash(&units);
    }
    m.result()
}

/// xo-server's `multiKeyHash(...keys)`: base64url of the little-endian hash.
pub fn multikey_hash_id(keys: &[&str]) -> String {
    base64url(&multikey_hash(keys).to_le_bytes())
}

/// base64url without padding.
pub fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed with node 18 and the npm packages `multikey-hash` 1.0.4, `imurmurhash` 0.1.4, `simple-token`
    /// 0.1.0: `h(...keys)` and `Buffer.from(u32 LE).toString('base64url')`.
    #[test]
    fn matches_the_npm_package() {
        let cases: &[(&[&str], u32, &str)] = &[
            (&["a", "b", "viewer"], 490727719, "J-k_HQ"),
            (
                &[
                    "5b2f7a3c-1111-4000-8000-000000000001",
                    "f3a1b2c4-2222-4000-8000-000000000002",
                    "admin",
                ],
                2399726360,
                "GOsIjw",
            ),
            (&["user", "vm", "operator"], 3222310373, "5Y0QwA"),
            (&["", "", ""], 2943293859, "oxlvrw"),
            (&["ü", "é€😀", "x\"y\\z\n"], 1966777169, "UaM6dQ"),
            (&["abc", "defg", "hijkl"], 3413988073, "6VJ9yw"),
        ];
        for (keys, hash, id) in cases {
            assert_eq!(multikey_hash(keys), *hash, "{keys:?}");
            assert_eq!(multikey_hash_id(keys), *id, "{keys:?}");
        }
    }
}
