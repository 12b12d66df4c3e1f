//! SRTP key derivation (RFC 3711 §4.3) with the AES-CM PRF (§4.3.3),
//! AES-128 or AES-256 according to the master key length (RFC 6188 §7).
//!
//! Only a key derivation rate of 0 is supported (derive once per master key),
//! which is what every SDES peer uses: a non-zero `KDR` session parameter is
//! refused by the SDES parser.

use super::cipher::AesCtr;

//= https://www.rfc-editor.org/rfc/rfc3711#section-4.3.2
//# label  | key
//# 0x00   | SRTP encryption key
//# 0x01   | SRTP message authentication key
//# 0x02   | SRTP salting key
//# 0x03   | SRTCP encryption key
//# 0x04   | SRTCP message authentication key
//# 0x05   | SRTCP salting key
/// Key derivation labels (RFC 3711 §4.3.2).
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
pub(crate) enum Label {
    RtpEncryption = 0,
    RtpAuthentication = 1,
    RtpSalt = 2,
    RtcpEncryption = 3,
    RtcpAuthentication = 4,
    RtcpSalt = 5,
}

/// Derives `out.len()` octets for `label` from the master key and salt.
///
/// `master_salt` is 14 octets for counter mode and 12 for GCM (RFC 7714 §11
/// uses the same KDF; the shorter salt is zero-padded on the right to 112
/// bits, as libsrtp does).
pub(crate) fn derive(master_key: &[u8], master_salt: &[u8], label: Label, out: &mut [u8]) {
    //= https://www.rfc-editor.org/rfc/rfc3711#section-4.3.1
    //# Let "a DIV t" denote integer division of a by t ... key_id = label || r.
    //# x = key_id XOR master_salt ... IV = x * 2^16
    let mut x = [0u8; 16];
    let n = master_salt.len().min(14);
    x[..n].copy_from_slice(&master_salt[..n]);
    // key_id is label (8 bits) || r (48 bits, 0 for KDR 0), right-aligned in
    // the 112-bit salt: the label lands on octet 7.
    x[7] ^= label as u8;
    out.fill(0);
    let key = if master_key.len() == 32 {
        master_key
    } else {
        &master_key[..16]
    };
    AesCtr::new(key).apply(&x, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    //= https://www.rfc-editor.org/rfc/rfc3711#appendix-B.3
    #[test]
    fn rfc3711_b3_key_derivation() {
        let key = h("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = h("0EC675AD498AFEEBB6960B3AABE6");
        let mut enc = [0u8; 16];
        derive(&key, &salt, Label::RtpEncryption, &mut enc);
        assert_eq!(enc.to_vec(), h("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut s = [0u8; 14];
        derive(&key, &salt, Label::RtpSalt, &mut s);
        assert_eq!(s.to_vec(), h("30CBBC08863D8C85D49DB34A9AE1"));
        let mut a = [0u8; 94];
        derive(&key, &salt, Label::RtpAuthentication, &mut a);
        assert_eq!(
            a.to_vec(),
            h("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4
               8F0A0ACF3C34E2359E6CDBCE
               E049646C43D9327AD175578EF7227098
               6371C10C9A369AC2F94A8C5FBCDDDC25
               6D6E919A48B610EF17C2041E47403576
               6B68642C59BBFC2F34DB60DBDFB2"
                .replace(['\n', ' '], "")
                .as_str())
        );
    }

    //= https://www.rfc-editor.org/rfc/rfc6188#section-7.2
    #[test]
    fn rfc6188_aes256_key_derivation() {
        let key = h("f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6");
        let salt = h("3b04803de51ee7c96423ab5b78d2");
        let mut enc = [0u8; 32];
        derive(&key, &salt, Label::RtpEncryption, &mut enc);
        assert_eq!(
            enc.to_vec(),
            h("5ba1064e30ec51613cad926c5a28ef731ec7fb397f70a960653caf06554cd8c4")
        );
        let mut s = [0u8; 14];
        derive(&key, &salt, Label::RtpSalt, &mut s);
        assert_eq!(s.to_vec(), h("fa31791685ca444a9e07c6c64e93"));
        let mut a = [0u8; 20];
        derive(&key, &salt, Label::RtpAuthentication, &mut a);
        assert_eq!(a.to_vec(), h("fd9c32d39ed5fbb5a9dc96b30818454d1313dc05"));
    }
}
