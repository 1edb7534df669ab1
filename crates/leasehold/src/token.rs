//! Owner tokens: 128 random bits, written as 32 lowercase hex digits.

use std::fmt;

use rand::RngCore;

/// The secret that proves ownership of a lease.
///
/// Whoever knows the token can extend and release the lease, so leasehold
/// never prints it whole: `Display` and `Debug` show an 8-digit prefix,
/// enough to tell holders apart in logs. [`Token::as_str`] gives the whole
/// token for the rare places that must hand it on (a shell script that
/// releases later, say).
///
/// ```
/// let t = leasehold::Token::random();
/// assert_eq!(t.as_str().len(), 32);
/// assert_eq!(t.to_string().len(), 8 + "…".len());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token([u8; 32]);

impl Token {
    /// A new token from the thread-local CSPRNG (ChaCha, seeded by the OS).
    ///
    /// ```
    /// let a = leasehold::Token::random();
    /// assert_ne!(a, leasehold::Token::random());
    /// assert_eq!(a.as_str().len(), 32);
    /// ```
    pub fn random() -> Token {
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let mut hex = [0u8; 32];
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in raw.iter().enumerate() {
            hex[2 * i] = DIGITS[usize::from(b >> 4)];
            hex[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        Token(hex)
    }

    /// A new token whose last digits are `tail` (lowercase hex, at most
    /// 32 digits), the others random: the id of a fair waiter, which ends
    /// with its client's mark (see `scripts::fair::waiter_id`).
    pub(crate) fn random_ending_with(tail: &[u8]) -> Token {
        debug_assert!(
            tail.len() <= 32 && tail.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        );
        let mut t = Token::random();
        let tail = &tail[tail.len().saturating_sub(32)..];
        t.0[32 - tail.len()..].copy_from_slice(tail);
        t
    }

    /// Parses a token given back by a user (for example to `leasehold release`).
    ///
    /// Any 32 lowercase or uppercase hex digits are accepted; they are kept
    /// lowercase.
    ///
    /// ```
    /// let t = leasehold::Token::parse("00112233445566778899AABBCCDDEEFF")?;
    /// assert_eq!(t.as_str(), "00112233445566778899aabbccddeeff");
    /// assert!(leasehold::Token::parse("nope").is_err());
    /// # Ok::<(), leasehold::Error>(())
    /// ```
    pub fn parse(s: &str) -> crate::Result<Token> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 || !bytes.iter().all(u8::is_ascii_hexdigit) {
            return Err(crate::Error::invalid(
                "token",
                "a token is 32 hex digits, as printed by `leasehold acquire`",
            ));
        }
        let mut hex = [0u8; 32];
        for (d, s) in hex.iter_mut().zip(bytes) {
            *d = s.to_ascii_lowercase();
        }
        Ok(Token(hex))
    }

    /// The whole token. Treat it as a secret.
    ///
    /// ```
    /// let t = leasehold::Token::random();
    /// assert_eq!(leasehold::Token::parse(t.as_str())?, t);
    /// # Ok::<(), leasehold::Error>(())
    /// ```
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).expect("token is ASCII hex")
    }

    /// The first 8 hex digits: safe to log, enough to tell holders apart.
    ///
    /// ```
    /// let t = leasehold::Token::parse("00112233445566778899aabbccddeeff")?;
    /// assert_eq!(t.prefix(), "00112233");
    /// # Ok::<(), leasehold::Error>(())
    /// ```
    pub fn prefix(&self) -> &str {
        &self.as_str()[..8]
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", self.prefix())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}…)", self.prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_may_end_with_given_digits() {
        let a = Token::random_ending_with(b"0123456789abcdef");
        let b = Token::random_ending_with(b"0123456789abcdef");
        assert_ne!(a, b);
        assert!(a.as_str().ends_with("0123456789abcdef"));
        assert_eq!(Token::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn tokens_are_hex_and_distinct() {
        let a = Token::random();
        let b = Token::random();
        assert_ne!(a, b);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(!format!("{a:?}").contains(a.as_str()));
    }
}
