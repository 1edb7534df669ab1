//! Names: taken from the command line as bytes, shown to people escaped.
//!
//! A name is 1 to 1024 bytes, any bytes. The shell hands them over as they
//! are (`leasehold status "$(printf 'a\377')"`), or, with `--name-hex`, as
//! their hex digits: the form `--json` prints in `name_hex` for a name that
//! is not UTF-8 or holds a NUL byte (see [`crate::json`]), so that a script
//! can pass back any name it read.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use clap::error::ErrorKind;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// The NAME argument of `run`, `sem run`, `acquire`, `extend`, `release`
/// and `status`, with its `--name-hex` flag: the name's bytes, checked
/// (1 to 1024 bytes) as clap parses, before anything connects.
#[derive(Debug, Clone)]
pub struct Name(Vec<u8>);

impl Name {
    /// The name's bytes, as the library takes them.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The name as people read it, for messages.
    pub fn shown(&self) -> String {
        shown(&self.0)
    }
}

/// The name as people read it: invalid UTF-8 as U+FFFD, control
/// characters, quotes and backslashes escaped, cut after 80 characters
/// (as the library's [`leasehold::LeaseStatus::display`]). Never fed back
/// to leasehold: `--json` gives the name whole.
pub fn shown(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    let mut escaped = s.chars().flat_map(char::escape_debug);
    let mut out: String = escaped.by_ref().take(80).collect();
    if escaped.next().is_some() {
        out.push('…');
    }
    out
}

/// Lower-case hex digits, two per byte: `name_hex` in `--json`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of `--name-hex`'s digits (either case).
fn from_hex(digits: &[u8]) -> Option<Vec<u8>> {
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let digit = |d: u8| char::from(d).to_digit(16);
    digits
        .chunks(2)
        .map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

const NAME: &str = "name";
const HEX: &str = "name_hex";

impl clap::Args for Name {
    fn augment_args(cmd: Command) -> Command {
        cmd.arg(
            Arg::new(NAME)
                .value_name("NAME")
                .required(true)
                .value_parser(clap::value_parser!(OsString))
                .help("The name: 1 to 1024 bytes, any bytes")
                .long_help(
                    "The name: 1 to 1024 bytes, any bytes (with --name-hex, their hex digits).",
                ),
        )
        .arg(
            Arg::new(HEX)
                .long("name-hex")
                .action(ArgAction::SetTrue)
                .help("NAME is given as hex digits, two per byte (`name_hex` of --json)")
                .long_help(
                    "NAME is given as hex digits, two per byte: the form --json prints in \
                     `name_hex` for a name that is not UTF-8 or holds a NUL byte, so that a \
                     script can pass back any name it read. Example: --name-hex 6a6f62ff",
                ),
        )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for Name {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let raw = matches
            .get_one::<OsString>(NAME)
            .ok_or_else(|| clap::Error::raw(ErrorKind::MissingRequiredArgument, "no NAME"))?;
        let invalid = |why: &str| {
            clap::Error::raw(
                ErrorKind::ValueValidation,
                format!(
                    "invalid value '{}' for '<NAME>': {why}\n",
                    shown(raw.as_bytes())
                ),
            )
        };
        let bytes = if matches.get_flag(HEX) {
            from_hex(raw.as_bytes()).ok_or_else(|| {
                invalid("not hex: --name-hex takes two hex digits per byte of the name")
            })?
        } else {
            raw.as_bytes().to_vec()
        };
        match leasehold::Lease::check_name(&bytes) {
            Ok(()) => Ok(Name(bytes)),
            Err(e) => match e.kind() {
                leasehold::ErrorKind::InvalidArgument { why, .. } => Err(invalid(why)),
                _ => Err(invalid(&e.to_string())),
            },
        }
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{from_hex, shown, to_hex};

    #[test]
    fn hex_round_trips_any_bytes() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(to_hex(&all).as_bytes()), Some(all));
        assert_eq!(from_hex(b"6A6f"), Some(b"jo".to_vec()));
        for bad in [&b"6"[..], b"6g", b"0x6a", b" 6a"] {
            assert_eq!(from_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn shown_escapes_and_cuts() {
        assert_eq!(shown(b"a\nb\"c\\"), r#"a\nb\"c\\"#);
        assert_eq!(shown(b"a\xffb"), "a\u{fffd}b");
        let long = "x".repeat(81);
        assert_eq!(shown(long.as_bytes()), format!("{}…", &long[..80]));
        assert_eq!(shown(&long.as_bytes()[..80]), &long[..80]);
    }
}
